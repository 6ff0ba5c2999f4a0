"""The kill switch against the Binance emulator through real ccxt, on both stores.

What is checked is the exchange's own view (the emulator's order list and balances), not what
tradelib believes: after a kill no order rests on the book, after a flatten the ARB balance is
back to 0 (below one lot step), and a strategy that was stuck while the kill ran can send
nothing once it wakes up. The switch lives in the store: another process engaging it (the real
`tradelib kill` CLI in a subprocess) is seen at once by this one.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyotp
import pytest
from emulator_fixtures import EMULATOR_BALANCES, EMULATOR_START, ccxt_client, running_emulator

from tradelib.audit import AuditLog
from tradelib.config import ExchangeSettings, Settings
from tradelib.control import RiskControl, enforce_kill, kill, kill_async
from tradelib.domain import (
    Mode,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StrategyId,
    TimeInForce,
)
from tradelib.errors import KillSwitchEngaged
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.orders import ExecutionRequest, OrderExecutor
from tradelib.position.exits import ExitRules
from tradelib.position.manager import PositionManager
from tradelib.risk import KillActionKind
from tradelib.secrets import (
    MASTER_KEY_ENV,
    TOTP_SECRET_ENV,
    Credentials,
    SecretBox,
    generate_master_key,
    master_key_from_env,
    save_credentials,
)
from tradelib.store import Store, open_store
from tradelib.testing.binance_emulator import BinanceEmulator

SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("runaway")
CLI = [sys.executable, "-c", "from tradelib.cli import app; app()"]  # the `tradelib` command
KILL_LIMIT_S = 60.0  # a safety net against hangs, not a timing assertion
_OPEN = [s for s in OrderStatus if not s.is_terminal]


def _now() -> datetime:
    return datetime.now(UTC)


def _live(store_url: str, base_url: str | None = None) -> Settings:
    return Settings(
        mode=Mode.LIVE, store_url=store_url, exchange=ExchangeSettings(base_url=base_url)
    )


@dataclass
class Trader:
    """What an engine holds: store, its exchange connection, positions, guarded executor."""

    store: Store
    exchange: CcxtExchange
    control: RiskControl
    positions: PositionManager
    executor: OrderExecutor


def _trader(store: Store, emu: BinanceEmulator, settings: Settings) -> Trader:
    store.ensure_strategy(STRATEGY, {})
    exchange = CcxtExchange(
        "binance",
        api_key=emu.api_key,
        api_secret=emu.api_secret,
        base_url=emu.base_url,
        rate_limit=False,
    )
    control = RiskControl(store, settings, mode=Mode.LIVE, exchange_id="binance", clock=_now)
    positions = PositionManager(
        store, mode=Mode.LIVE, exchange_id="binance", exit_rules=ExitRules(), clock=_now
    )
    executor = OrderExecutor(
        store, exchange, exchange_id="binance", mode=Mode.LIVE, clock=_now,
        on_fill=positions.on_fill, guard=control.guard,
    )  # fmt: skip
    return Trader(store, exchange, control, positions, executor)


def _request(side: Side, qty: str, key: str, price: str | None = None) -> ExecutionRequest:
    if price is None:
        return ExecutionRequest(STRATEGY, SYMBOL, side, Decimal(qty), key)
    return ExecutionRequest(
        STRATEGY, SYMBOL, side, Decimal(qty), key, type=OrderType.LIMIT, price=Decimal(price)
    )


async def _build_book(trader: Trader) -> None:
    """A position of ~500 ARB and two resting orders, all through the guarded executor."""
    bought = await trader.executor.submit(_request(Side.BUY, "500", "entry-1"))
    assert bought.status is OrderStatus.FILLED
    for request in (
        _request(Side.BUY, "100", "rest-buy", price="0.3"),
        _request(Side.SELL, "200", "rest-sell", price="3"),
    ):
        rested = await trader.executor.submit(request)
        assert rested.status is OrderStatus.OPEN


def _open_on_venue(emu: BinanceEmulator) -> list[Any]:
    return [o for o in emu.orders() if o.is_open]


def _arb(emu: BinanceEmulator) -> Decimal:
    balance = emu.balances().get("ARB")
    return Decimal(0) if balance is None else balance.total


async def _step(trader: Trader) -> Decimal:
    return (await trader.exchange.load_markets())[SYMBOL].amount_step


# -- 1. asyncio: the strategy task is parked on an Event that never fires -------------------


async def test_kill_empties_book_and_flattens_while_strategy_task_is_blocked(
    store_url: str,
) -> None:
    settings = _live(store_url)
    async with running_emulator(symbols=[SYMBOL]) as emu:
        store = open_store(store_url)
        trader = _trader(store, emu, settings)
        try:
            await _build_book(trader)
            async with ccxt_client(emu) as raw:  # an order the store never saw (placed by hand)
                await raw.load_markets()
                await raw.create_order(SYMBOL, "limit", "buy", 50, 0.31)
            assert len(_open_on_venue(emu)) == 3
            assert _arb(emu) > 400

            gate = asyncio.Event()  # never set until the kill is over

            async def strategy() -> Any:
                await gate.wait()
                return await trader.executor.submit(_request(Side.BUY, "100", "entry-2"))

            stuck = asyncio.create_task(strategy())
            await asyncio.sleep(0)
            kill_exchange = CcxtExchange(  # the kill's own connection, like the CLI's
                "binance", api_key=emu.api_key, api_secret=emu.api_secret,
                base_url=emu.base_url, rate_limit=False,
            )  # fmt: skip
            try:
                actions = await asyncio.wait_for(
                    kill_async(
                        flatten=True, reason="test: runaway strategy", by="ops",
                        settings=settings, store_url=store_url, exchange=kill_exchange,
                    ),
                    KILL_LIMIT_S,
                )  # fmt: skip
            finally:
                await kill_exchange.close()
            assert not stuck.done(), "the kill must not wait for the strategy"

            assert _open_on_venue(emu) == []
            assert _arb(emu) < await _step(trader), f"ARB left: {_arb(emu)}"
            kinds = [a.kind for a in actions]
            assert kinds.count(KillActionKind.CANCEL_ORDER) == 3
            assert kinds.count(KillActionKind.CLOSE_POSITION) == 1
            assert not [a for a in actions if "FAILED" in a.reason], actions
            assert store.list_orders(statuses=_OPEN, mode=Mode.LIVE) == []
            assert store.list_positions(Mode.LIVE) == []
            unknown = store.list_events(kind="kill_cancelled_unknown_order")
            assert len(unknown) == 1 and unknown[0].payload["symbol"] == SYMBOL
            enforced = store.list_events(kind="kill_enforced")
            assert len(enforced) == 1 and enforced[0].payload["problems"] == []  # incl. the sweep

            sent = len(emu.orders())
            gate.set()
            with pytest.raises(KillSwitchEngaged, match="new entries are refused"):
                await asyncio.wait_for(stuck, KILL_LIMIT_S)
            assert len(emu.orders()) == sent, "nothing new may reach the exchange"

            # A second enforcement finds nothing left and doubles nothing.
            assert (
                await enforce_kill(
                    trader.control,
                    trader.executor,
                    trader.exchange,
                    trader.positions.rebuild(),
                    [SYMBOL],
                )
                == []
            )
            assert len(emu.orders()) == sent
            actions_logged = {r.action for r in store.list_audit()}
            assert {"kill_switch_engage", "kill_switch_enforce", "order_refused"} <= actions_logged
            assert AuditLog(store).verify().ok
        finally:
            await trader.exchange.close()
            store.close()


# -- 2. threads: the engine's event loop is frozen by a busy loop -------------------------


class LoopThread:
    """An event loop on its own thread (the emulator, or an engine)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = KILL_LIMIT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def emulator_thread() -> Iterator[tuple[BinanceEmulator, LoopThread]]:
    runner = LoopThread()
    emu = BinanceEmulator(balances=dict(EMULATOR_BALANCES), start=EMULATOR_START, symbols=[SYMBOL])
    runner.run(emu.start())
    yield emu, runner
    runner.run(emu.stop())
    runner.stop()


def test_kill_from_another_thread_while_the_engine_loop_spins(
    store_url: str,
    emulator_thread: tuple[BinanceEmulator, LoopThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu, venue = emulator_thread
    monkeypatch.setenv(MASTER_KEY_ENV, generate_master_key())
    settings = _live(store_url, base_url=emu.base_url)
    store = open_store(store_url)
    # kill() opens its own exchange connection with the key pair from the secrets store.
    save_credentials(
        store,
        SecretBox(master_key_from_env()),
        Credentials("binance", "main", emu.api_key, emu.api_secret),
    )
    engine = LoopThread()
    trader = _trader(store, emu, settings)
    spinning, wake = threading.Event(), threading.Event()

    async def stuck_strategy() -> Any:
        spinning.set()
        while not wake.is_set():  # never awaits: nothing else runs on the engine's loop
            pass
        return await trader.executor.submit(_request(Side.BUY, "100", "entry-2"))

    try:
        engine.run(_build_book(trader))
        step = engine.run(_step(trader))
        assert len(venue.run(_call(emu.orders))) == 3
        stuck = asyncio.run_coroutine_threadsafe(stuck_strategy(), engine.loop)
        assert spinning.wait(KILL_LIMIT_S)

        actions = kill(flatten=True, reason="test: engine frozen", by="ops", settings=settings)

        assert not stuck.done()
        assert [o for o in venue.run(_call(emu.orders)) if o.is_open] == []
        arb = venue.run(_call(emu.balances)).get("ARB")
        assert arb is None or arb.total < step, arb
        assert not [a for a in actions if "FAILED" in a.reason], actions
        sent = len(venue.run(_call(emu.orders)))
        wake.set()
        with pytest.raises(KillSwitchEngaged):
            stuck.result(KILL_LIMIT_S)
        assert len(venue.run(_call(emu.orders))) == sent
    finally:
        wake.set()
        engine.run(trader.exchange.close())
        engine.stop()
        store.close()


async def _call(fn: Any) -> Any:
    return fn()


# -- 3. two processes on PostgreSQL: the real CLI engages, this process sees it -------------


@pytest.mark.postgres
async def test_cli_kill_in_another_process_is_seen_at_once(
    pg_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = generate_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, master)
    async with running_emulator(symbols=[SYMBOL]) as emu:
        settings = _live(pg_store_url, base_url=emu.base_url)
        store = open_store(pg_store_url)
        box = SecretBox(master_key_from_env())
        save_credentials(store, box, Credentials("binance", "main", emu.api_key, emu.api_secret))
        trader = _trader(store, emu, settings)
        try:
            rest = await trader.executor.submit(_request(Side.BUY, "100", "rest", price="0.3"))
            assert rest.status is OrderStatus.OPEN
            assert not trader.control.kill_state().engaged
            trader.control.guard(_request(Side.BUY, "10", "probe"))  # entries pass before

            env = {
                **os.environ,
                "TRADELIB_MODE": "live",
                "TRADELIB_EXCHANGE__BASE_URL": emu.base_url,
                MASTER_KEY_ENV: master,
            }
            proc = await asyncio.create_subprocess_exec(
                *CLI, "kill", "--reason", "desk says stop",
                "--by", "process-A", "--store", pg_store_url,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            text = out.decode()
            assert proc.returncode == 0, text
            assert "KILL SWITCH ENGAGED" in text

            state = trader.control.kill_state()  # the same object, read again: no caching
            assert state.engaged and state.by == "process-A" and state.reason == "desk says stop"
            with pytest.raises(KillSwitchEngaged, match="desk says stop"):
                await trader.executor.submit(_request(Side.BUY, "10", "entry-after"))
            assert _open_on_venue(emu) == []  # process A cancelled this process's order
            cancelled = store.get_order(rest.client_order_id)
            assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED
            assert len(emu.orders()) == 1
            assert text.count("cancel_order") == 1
            assert master not in text and emu.api_secret not in text
        finally:
            await trader.exchange.close()
            store.close()


# -- 4. release needs a valid TOTP code; every attempt is audited ---------------------------


def test_release_needs_a_valid_totp_code_and_is_audited(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    control = RiskControl(store, Settings(), mode=Mode.PAPER, exchange_id="binance", clock=_now)
    engaged = control.engage_kill("ops", "incident 42", flatten=True)
    assert engaged.accepted and control.kill_state().flatten

    refused = control.release_kill("ops", "looks fine", totp_code=None)
    assert not refused.accepted and "needs a TOTP code" in refused.reason
    totp = pyotp.TOTP(secret)
    now = _now()
    valid = {totp.at(now + timedelta(seconds=s)) for s in (-60, -30, 0, 30, 60)}
    wrong = next(c for c in ("135790", "246801", "975310", "864209") if c not in valid)
    assert not control.release_kill("ops", "looks fine", totp_code=wrong).accepted
    assert control.kill_state().engaged

    code = totp.now()
    released = control.release_kill("ops", "incident 42 resolved", totp_code=code)
    assert released.accepted and not control.kill_state().engaged
    control.guard(_request(Side.BUY, "10", "after-release"))

    audit = store.list_audit()
    assert [r.action for r in audit] == [
        "kill_switch_engage",
        "kill_switch_release_refused",
        "totp_refused",  # the wrong code counts towards the second factor's rate limit
        "kill_switch_release_refused",
        "kill_switch_release",
    ]
    assert [r.actor for r in audit] == ["ops"] * 5
    everything = " ".join(r.payload_json for r in audit)
    assert secret not in everything and code not in everything and wrong not in everything
    assert AuditLog(store).verify().ok


# -- 5. what the guard lets through while the switch is engaged ----------------------------


def test_guard_allows_only_non_resting_exits_of_open_positions(store: Store) -> None:
    store.ensure_strategy(STRATEGY, {})
    store.ensure_strategy(StrategyId("other"), {})
    store.upsert_position(
        Position(
            strategy_id=STRATEGY, exchange="binance", symbol=SYMBOL, side=Side.BUY,
            quantity=Decimal(100), average_entry=Decimal("0.6"), opened_at=_now(),
            mode=Mode.LIVE,
        )
    )  # fmt: skip
    control = RiskControl(store, Settings(), mode=Mode.LIVE, exchange_id="binance", clock=_now)
    control.engage_kill("ops", "stop everything")

    def exit_(qty: str, strategy: StrategyId = STRATEGY, **kw: Any) -> ExecutionRequest:
        return ExecutionRequest(
            strategy, SYMBOL, Side.SELL, Decimal(qty), f"x-{qty}-{kw}", reduce_only=True, **kw
        )

    control.guard(exit_("100"))  # market exit of the whole position
    control.guard(
        exit_("40", type=OrderType.LIMIT, price=Decimal("0.5"), time_in_force=TimeInForce.IOC)
    )
    refusals = [
        (_request(Side.BUY, "10", "entry"), "new entries are refused"),
        (exit_("40", type=OrderType.LIMIT, price=Decimal("0.9")), "resting exit"),
        (exit_("150"), "holds 100 to close"),
        (exit_("10", strategy=StrategyId("other")), "holds 0 to close"),
    ]
    for request, why in refusals:
        with pytest.raises(KillSwitchEngaged, match=why):
            control.guard(request)
    refused = store.list_events(kind="order_refused")
    assert len(refused) == len(refusals)


# -- 6. paper mode on the DuckDB default: the engine is stopped, the store is the paper state --


async def test_paper_kill_from_a_notebook_cell_acts_on_the_stores_paper_state(
    duckdb_store_url: str,
) -> None:
    from tradelib.exchange.paper import PaperExchange
    from tradelib.exchange.paper_data import ReplayMarketData
    from tradelib.exchange.replay import ReplayMarket

    settings = Settings(mode=Mode.PAPER, store_url=duckdb_store_url)
    replay = ReplayMarket.from_data_dir(
        settings.data_dir, start=datetime(2024, 3, 10, tzinfo=UTC), symbols=[SYMBOL]
    )
    venue = PaperExchange(ReplayMarketData(replay), balances={"USDT": Decimal(10_000)})
    store = open_store(duckdb_store_url)
    store.ensure_strategy(STRATEGY, {})
    clock = venue.source.now
    positions = PositionManager(
        store, mode=Mode.PAPER, exchange_id="binance", exit_rules=ExitRules(), clock=clock
    )
    executor = OrderExecutor(
        store, venue, exchange_id="binance", mode=Mode.PAPER, clock=clock,
        on_fill=positions.on_fill,
    )  # fmt: skip
    bought = await executor.submit(_request(Side.BUY, "500", "entry-1"))
    assert bought.status is OrderStatus.FILLED
    rest = await executor.submit(_request(Side.BUY, "100", "rest", price="0.3"))
    assert rest.status is OrderStatus.OPEN
    await venue.close()  # the engine (and its in-memory paper venue) stops
    store.close()

    # A notebook cell runs inside a live event loop: kill() must not need that loop.
    actions = kill(flatten=True, reason="paper drill", by="notebook", settings=settings)

    assert [a.kind for a in actions] == [KillActionKind.CANCEL_ORDER, KillActionKind.CLOSE_POSITION]
    assert "cancelled in the store (paper)" in actions[0].reason
    assert re.search(r"-> order \S+ filled, filled 500", actions[1].reason), actions
    with open_store(duckdb_store_url) as after:
        assert after.list_orders(statuses=_OPEN, mode=Mode.PAPER) == []
        assert after.list_positions(Mode.PAPER) == []
        state = RiskControl(
            after, settings, mode=Mode.PAPER, exchange_id="binance", clock=_now
        ).kill_state()
        assert state.engaged and state.flatten and state.by == "notebook"


def test_cli_release_refuses_without_code_and_releases_with_it(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tradelib.cli import app

    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    runner = CliRunner()
    RiskControl(store, Settings(), mode=Mode.PAPER, exchange_id="binance", clock=_now).engage_kill(
        "ops", "drill"
    )
    args = ["release", "--reason", "drill over", "--by", "desk", "--store", store_url]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "needs a TOTP code" in refused.output
    status = runner.invoke(app, ["status", "--store", store_url])
    assert "ENGAGED" in status.output and "drill" in status.output
    code = pyotp.TOTP(secret).now()
    released = runner.invoke(app, [*args, "--code", code])
    assert released.exit_code == 0, released.output
    assert "released by desk" in released.output
    assert [r.action for r in store.list_audit()][-2:] == [
        "kill_switch_release_refused",
        "kill_switch_release",
    ]
