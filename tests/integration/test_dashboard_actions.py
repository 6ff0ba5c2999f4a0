"""What each dashboard control does to the store and the exchange, on both store backends.

Refused actions are checked to leave the controls as they were (only the audit record of the
refusal, where the operations layer keeps one); accepted ones to say who and why. The
emergency stop is checked on the emulator's own order book, with the store's orders.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyotp
import pytest
from emulator_fixtures import running_emulator

from tradelib.config import ExchangeSettings, Settings
from tradelib.control import KILL_CONTROL, RiskControl
from tradelib.domain import Mode, OrderStatus, OrderType, Side, StrategyId
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.operations import effective_limits, mode_request, pause_state
from tradelib.orders import ExecutionRequest, OrderExecutor
from tradelib.position.exits import ExitRules
from tradelib.position.manager import PositionManager
from tradelib.secrets import (
    MASTER_KEY_ENV,
    TOTP_SECRET_ENV,
    Credentials,
    SecretBox,
    generate_master_key,
    master_key_from_env,
    save_credentials,
)
from tradelib.store import (
    CommandKind,
    CommandStatus,
    EngineState,
    HeartbeatRecord,
    Store,
    open_store,
)
from widgets.actions import Actions, LiveTerms
from widgets.model import OrderRow, PositionRow
from widgets.venue import stored_key_venue

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("dash_test")
_OPEN = [s for s in OrderStatus if not s.is_terminal]


@pytest.fixture
def totp(monkeypatch: pytest.MonkeyPatch) -> pyotp.TOTP:
    """A TOTP second factor enrolled for this test."""
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    return pyotp.TOTP(secret)


def _actions(store: Store, url: str, **kwargs: Any) -> Actions:
    settings = Settings(store_url=url)
    options: dict[str, Any] = {"clock": lambda: NOW, **kwargs}
    return Actions(store, url, settings, exchange="binance", operator="ann", **options)


def _controls(store: Store) -> dict[str, object]:
    return {c.key: c.value for c in store.list_controls()}


def _position_row(symbol: str = SYMBOL) -> PositionRow:
    return PositionRow(STRATEGY, symbol, Side.BUY, Decimal(10), Decimal(1), None, None, None,
                       None, None, None, NOW, timedelta(0))  # fmt: skip


def _beat(store: Store, at: datetime) -> None:
    store.beat(HeartbeatRecord(
        mode=Mode.PAPER, exchange="binance", strategy=STRATEGY, state=EngineState.RUNNING,
        pid=1, host="h", started_at=at, beat_at=at, last_cycle_at=at,
    ))  # fmt: skip


# -- paper / live ------------------------------------------------------------------------------


def _terms(store: Store, problems: tuple[str, ...] = ()) -> LiveTerms:
    limits = effective_limits(store, Settings().risk, Mode.LIVE, "binance")
    return LiveTerms("binance", "main", "emulator", Decimal(300), limits, problems)


def test_going_live_needs_confirmation_reason_code_and_key_check(
    store: Store, store_url: str, totp: pyotp.TOTP
) -> None:
    actions = _actions(store, store_url)
    code = totp.at(NOW)
    before = _controls(store)

    unconfirmed = actions.go_live(_terms(store), confirmed=False, code=code, reason="ready")
    assert not unconfirmed.ok and "confirmation" in unconfirmed.message
    no_reason = actions.go_live(_terms(store), confirmed=True, code=code, reason="  ")
    assert not no_reason.ok
    assert store.list_events(kind="go_live_refused") == []  # refused before anything is written

    wrong = actions.go_live(_terms(store), True, f"{(int(code) + 1) % 10**6:06d}", "ready")
    bad_key = actions.go_live(_terms(store, ("withdrawals are enabled",)), True, code, "ready")
    assert not wrong.ok and "TOTP" in wrong.message
    assert not bad_key.ok and "withdrawals are enabled" in bad_key.message
    assert _controls(store) == before  # refused: the account did not move
    refusals = store.list_events(kind="go_live_refused")
    assert [e.payload["by"] for e in refusals] == ["ann", "ann"]  # audited, with who

    granted = actions.go_live(_terms(store), True, code, "paper run reviewed")
    assert granted.ok and "LIVE granted" in granted.message
    request = mode_request(store, "binance")
    assert request is not None and request.mode is Mode.LIVE and request.by == "ann"
    assert request.reason == "paper run reviewed" and request.capital_usd == Decimal(300)
    assert request.limits["max_position_pct"] == "20"  # what the person saw is on record

    back = actions.go_paper("  ")
    assert not back.ok  # a reason is still needed, though no code is
    assert actions.go_paper("drawdown").ok
    paper = mode_request(store, "binance")
    assert paper is not None and paper.mode is Mode.PAPER and paper.by == "ann"


def test_a_code_works_once(store: Store, store_url: str, totp: pyotp.TOTP) -> None:
    actions = _actions(store, store_url)
    code = totp.at(NOW)
    assert actions.go_live(_terms(store), True, code, "ready").ok
    replayed = actions.change_limit(Mode.LIVE, "max_position_pct", "25", "bigger", code)
    assert not replayed.ok and "already used" in replayed.message
    assert effective_limits(store, Settings().risk, Mode.LIVE, "binance").max_position_pct == 20


def test_the_key_check_fails_closed(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = stored_key_venue(lambda: store, Settings(store_url=store_url))
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    no_master = _actions(store, store_url, live_venue=venue).live_terms()
    assert (
        len(no_master.problems) == 1 and "TRADELIB_MASTER_KEY is not set" in no_master.problems[0]
    )
    monkeypatch.setenv(MASTER_KEY_ENV, generate_master_key())
    no_key = _actions(store, store_url, live_venue=venue).live_terms()
    assert no_key.problems == (
        "no API key stored for binance/main: add one with "
        "`tradelib secrets set-key --exchange binance --label main`",
    )
    assert no_key.capital_usd == Settings().live_capital_usd
    unchecked = _actions(store, store_url).live_terms()
    assert unchecked.problems == ("no live venue configured for the key check",)


async def test_the_live_terms_carry_the_exchanges_verdict_on_the_key(
    store_url: str, totp: pyotp.TOTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, generate_master_key())
    async with running_emulator(symbols=[SYMBOL]) as emu:
        store = open_store(store_url)
        settings = Settings(store_url=store_url, exchange=ExchangeSettings(base_url=emu.base_url))
        key = Credentials("binance", "main", emu.api_key, emu.api_secret)
        save_credentials(store, SecretBox(master_key_from_env()), key)
        actions = Actions(
            store, store_url, settings, exchange="binance", operator="ann",
            live_venue=stored_key_venue(lambda: store, settings),
        )  # fmt: skip
        try:
            # Blocking, as on the dashboard's worker thread; this loop keeps serving the venue.
            safe = await asyncio.to_thread(actions.live_terms)
            assert safe.problems == () and safe.venue == emu.base_url
            emu.set_key_permissions(enableWithdrawals=True)
            unsafe = await asyncio.to_thread(actions.live_terms)
            assert len(unsafe.problems) == 1 and "withdraw" in unsafe.problems[0].lower()
            refused = await asyncio.to_thread(
                actions.go_live, unsafe, True, totp.now(), "the key looked fine"
            )
            assert not refused.ok and "key check failed" in refused.message
            assert mode_request(store, "binance") is None
            granted = await asyncio.to_thread(actions.go_live, safe, True, totp.now(), "ok")
            assert granted.ok  # the terms the person saw when the key was safe
        finally:
            store.close()


# -- steering ----------------------------------------------------------------------------------


def test_pause_and_resume_say_who_and_why(store: Store, store_url: str) -> None:
    actions = _actions(store, store_url)
    assert not actions.set_paused(Mode.PAPER, True, "").ok
    assert _controls(store) == {}
    assert actions.set_paused(Mode.PAPER, True, "CPI print at 14:30").ok
    state = pause_state(store, Mode.PAPER, "binance")
    assert state.paused and state.by == "ann" and state.reason == "CPI print at 14:30"
    assert actions.set_paused(Mode.PAPER, False, "print is out").ok
    assert not pause_state(store, Mode.PAPER, "binance").paused
    kinds = [e.kind for e in store.list_events() if e.kind.startswith("strategy_")]
    assert kinds == ["strategy_paused", "strategy_resumed"]


def test_limits_tighten_freely_loosen_with_a_code_and_stay_in_range(
    store: Store, store_url: str, totp: pyotp.TOTP
) -> None:
    actions = _actions(store, store_url)
    assert actions.limit_loosens(Mode.PAPER, "max_position_pct", "10") is False
    assert actions.limit_loosens(Mode.PAPER, "max_position_pct", "30") is True
    assert actions.limit_loosens(Mode.PAPER, "max_position_pct", "abc") is None
    assert not actions.change_limit(Mode.PAPER, "max_position_pct", "10", "", "").ok
    tightened = actions.change_limit(Mode.PAPER, "max_position_pct", "10", "smaller bets", "")
    assert tightened.ok and "20 → 10" in tightened.message
    limits = effective_limits(store, Settings().risk, Mode.PAPER, "binance")
    assert limits.max_position_pct == Decimal(10)

    before = _controls(store)
    refused = actions.change_limit(Mode.PAPER, "max_position_pct", "25", "bigger", "")
    out_of_range = actions.change_limit(Mode.PAPER, "max_position_pct", "150", "x", "")
    not_adjustable = actions.change_limit(Mode.PAPER, "stale_data_seconds", "5", "x", "")
    assert not refused.ok and "TOTP" in refused.message
    assert not out_of_range.ok and not not_adjustable.ok
    assert _controls(store) == before  # refused: the limits did not move

    loosened = actions.change_limit(Mode.PAPER, "max_position_pct", "25", "bigger",
                                    totp.at(NOW))  # fmt: skip
    assert loosened.ok
    limits = effective_limits(store, Settings().risk, Mode.PAPER, "binance")
    assert limits.max_position_pct == Decimal(25)


# -- commands ----------------------------------------------------------------------------------


def test_commands_need_a_running_engine_and_a_reason(store: Store, store_url: str) -> None:
    actions = _actions(store, store_url)
    order = OrderRow("tl-abc", NOW, Mode.PAPER, STRATEGY, SYMBOL, Side.BUY, OrderType.LIMIT,
                     Decimal(1), Decimal(1), Decimal(0), None, Decimal(0), None,
                     OrderStatus.OPEN, False, None)  # fmt: skip
    nobody = actions.close_position(Mode.PAPER, _position_row(), "take profit", 30)
    assert not nobody.ok and "no engine has ever run" in nobody.message
    _beat(store, NOW - timedelta(minutes=5))
    stale = actions.cancel_order(Mode.PAPER, order, "stale bid", 30)
    assert not stale.ok and "not running" in stale.message
    assert store.list_commands() == []  # nothing queued for an engine that would never come

    _beat(store, NOW - timedelta(seconds=2))
    assert not actions.close_position(Mode.PAPER, _position_row(), " ", 30).ok
    closed = actions.close_position(Mode.PAPER, _position_row(), "take profit", 30)
    cancelled = actions.cancel_order(Mode.PAPER, order, "stale bid", 30)
    assert closed.ok and cancelled.ok
    commands = sorted(store.list_commands(Mode.PAPER, "binance"), key=lambda c: c.id)
    assert [(c.kind, c.status) for c in commands] == [
        (CommandKind.CLOSE_POSITION, CommandStatus.PENDING),
        (CommandKind.CANCEL_ORDER, CommandStatus.PENDING),
    ]
    assert commands[0].payload == {"symbol": SYMBOL, "strategy_id": STRATEGY}
    assert commands[1].payload["client_order_id"] == "tl-abc"
    assert {(c.requested_by, c.reason) for c in commands} == {
        ("ann", "take profit"), ("ann", "stale bid"),
    }  # fmt: skip


# -- the emergency stop, on the exchange -------------------------------------------------------


async def test_emergency_stop_cancels_the_paper_book_on_its_venue_and_flattens(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, generate_master_key())
    async with running_emulator(symbols=[SYMBOL]) as emu:
        store = open_store(store_url)
        settings = Settings(store_url=store_url, exchange=ExchangeSettings(base_url=emu.base_url))
        save_credentials(store, SecretBox(master_key_from_env()),
                         Credentials("binance", "main", emu.api_key, emu.api_secret))  # fmt: skip
        store.ensure_strategy(STRATEGY, {})
        venue = CcxtExchange("binance", api_key=emu.api_key, api_secret=emu.api_secret,
                             base_url=emu.base_url, rate_limit=False)  # fmt: skip
        now = lambda: datetime.now(UTC)  # noqa: E731
        control = RiskControl(store, settings, mode=Mode.PAPER, exchange_id="binance", clock=now)
        positions = PositionManager(store, mode=Mode.PAPER, exchange_id="binance",
                                    exit_rules=ExitRules(), clock=now)  # fmt: skip
        executor = OrderExecutor(store, venue, exchange_id="binance", mode=Mode.PAPER, clock=now,
                                 on_fill=positions.on_fill, guard=control.guard)  # fmt: skip
        try:
            bought = await executor.submit(
                ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, Decimal(500), "entry")
            )
            assert bought.status is OrderStatus.FILLED
            for key, price in (("bid-1", "0.3"), ("bid-2", "0.31")):
                rested = await executor.submit(ExecutionRequest(
                    STRATEGY, SYMBOL, Side.BUY, Decimal(100), key, type=OrderType.LIMIT,
                    price=Decimal(price),
                ))  # fmt: skip
                assert rested.status is OrderStatus.OPEN
            assert len([o for o in emu.orders() if o.is_open]) == 2

            actions = Actions(
                store, store_url, settings, exchange="binance", operator="ann",
                stop_venues={Mode.PAPER: stored_key_venue(lambda: store, settings)},
            )  # fmt: skip
            # Blocking, as on the dashboard's worker thread; this loop keeps serving the venue.
            report = await asyncio.to_thread(actions.emergency_stop, Mode.PAPER, True, "")
            assert report.error is None and not report.failed, report.summary()
            assert "2 order(s) cancelled, 1 position(s) closed" in report.summary()
            assert [o for o in emu.orders() if o.is_open] == []  # the venue's own book
            assert emu.balances()["ARB"].total < 1  # flattened on the venue
            kill = store.get_control(KILL_CONTROL)
            assert kill is not None and kill["engaged"] and kill["by"] == "ann"
            assert kill["reason"] == "emergency stop from the dashboard" and kill["flatten"]
            assert store.list_orders(statuses=_OPEN, mode=Mode.PAPER) == []
            assert store.list_positions(Mode.PAPER) == []
        finally:
            await venue.close()
            store.close()


def test_the_stop_says_when_the_running_paper_engine_enforces_it(
    store: Store, store_url: str
) -> None:
    actions = _actions(store, store_url, clock=lambda: datetime.now(UTC))
    quiet = actions.emergency_stop(Mode.PAPER, False, "drill")
    assert quiet.error is None and quiet.actions == () and quiet.note is None
    assert "0 order(s) cancelled" in quiet.summary()
    _beat(store, datetime.now(UTC))
    report = actions.emergency_stop(Mode.PAPER, False, "drill")
    assert report.note is not None and "paper engine cancels its own" in report.summary()
    assert (store.get_control(KILL_CONTROL) or {}).get("engaged") is True
