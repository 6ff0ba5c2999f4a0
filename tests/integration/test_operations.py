"""Heartbeats, the engine command queue and steering controls, on both store backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyotp
import pytest

from tradelib.audit import AuditLog
from tradelib.config import RiskSettings
from tradelib.domain import Mode
from tradelib.errors import ConfigError, DataError, SecretError, StoreError
from tradelib.operations import (
    change_limits,
    consume_live_grant,
    effective_limits,
    mode_request,
    pause_state,
    request_live,
    request_paper,
    send_command,
    set_paused,
)
from tradelib.secrets import TOTP_SECRET_ENV
from tradelib.store import (
    CommandKind,
    CommandStatus,
    EngineState,
    HeartbeatRecord,
    Liveness,
    Store,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _beat(
    at: datetime, state: EngineState = EngineState.RUNNING, cycles: int = 1
) -> HeartbeatRecord:
    return HeartbeatRecord(
        mode=Mode.PAPER, exchange="binance", strategy="token_unlock", state=state, pid=4242,
        host="box", started_at=T0, beat_at=at, last_cycle_at=at, cycles=cycles,
        detail={"equity_usd": Decimal("10000.5")},
    )  # fmt: skip


def test_heartbeat_is_one_row_per_account_and_says_alive_stale_or_stopped(store: Store) -> None:
    store.beat(_beat(T0))
    store.beat(_beat(T0 + timedelta(seconds=10), cycles=2))
    beat = store.get_heartbeat(Mode.PAPER, "binance")
    assert beat is not None
    assert beat.cycles == 2 and beat.beat_at == T0 + timedelta(seconds=10)
    assert beat.detail == {"equity_usd": "10000.5"}
    assert [b.exchange for b in store.list_heartbeats()] == ["binance"]
    assert beat.liveness(T0 + timedelta(seconds=20), stale_after=30) is Liveness.ALIVE
    assert beat.liveness(T0 + timedelta(seconds=60), stale_after=30) is Liveness.STALE
    # A beat from a machine whose clock runs minutes ahead is no proof of life.
    assert beat.liveness(T0 - timedelta(minutes=5), stale_after=30) is Liveness.STALE
    store.beat(_beat(T0 + timedelta(seconds=20), EngineState.STOPPED))
    stopped = store.get_heartbeat("paper", "binance")
    assert stopped is not None
    assert stopped.liveness(T0 + timedelta(seconds=21), 30) is Liveness.STOPPED
    assert store.get_heartbeat(Mode.LIVE, "binance") is None


def test_commands_are_claimed_once_expire_and_end_once(store: Store) -> None:
    first = send_command(store, Mode.PAPER, "binance", CommandKind.CANCEL_ORDER,
                         {"client_order_id": "tl-1"}, "dashboard", "stale order", T0)  # fmt: skip
    late = send_command(store, Mode.PAPER, "binance", "close_position",
                        {"symbol": "ARB/USDT", "strategy_id": "s"}, "dashboard", "news", T0,
                        ttl=timedelta(seconds=5))  # fmt: skip
    other = send_command(store, Mode.LIVE, "binance", CommandKind.CANCEL_ORDER,
                         {"client_order_id": "tl-2"}, "cli", "other account", T0)  # fmt: skip
    claimed = store.claim_commands(Mode.PAPER, "binance", "engine-a", T0 + timedelta(seconds=10))
    assert [c.id for c in claimed] == [first]
    assert claimed[0].status is CommandStatus.RUNNING and claimed[0].claimed_by == "engine-a"
    expired = store.get_command(late)
    assert expired is not None and expired.status is CommandStatus.EXPIRED
    assert store.claim_commands(Mode.PAPER, "binance", "engine-a", T0 + timedelta(seconds=11)) == []
    # An engine that died holding a command: its successor takes it over.
    again = store.claim_commands(Mode.PAPER, "binance", "engine-b", T0 + timedelta(seconds=12))
    assert [c.id for c in again] == [first]
    done = store.finish_command(first, CommandStatus.DONE, {"order": "cancelled"}, T0)
    assert done.status is CommandStatus.DONE and done.result == {"order": "cancelled"}
    with pytest.raises(StoreError, match="already ended as done"):
        store.finish_command(first, CommandStatus.FAILED, {}, T0)
    with pytest.raises(DataError, match="final status"):
        store.finish_command(other, CommandStatus.RUNNING, {}, T0)
    assert [c.id for c in store.list_commands(mode=Mode.LIVE)] == [other]
    sent = [e for e in store.list_events(kind="command_sent")]
    assert len(sent) == 3


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("launch_rocket", {}, "unknown engine command"),
        (CommandKind.CLOSE_POSITION, {"symbol": "ARB/USDT"}, "needs strategy_id"),
        (CommandKind.CANCEL_ORDER, {"client_order_id": " "}, "needs client_order_id"),
    ],
)
def test_malformed_commands_are_refused_and_leave_nothing(
    store: Store, kind: str, payload: dict[str, str], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        send_command(store, Mode.PAPER, "binance", kind, payload, "dashboard", "why", T0)
    assert store.list_commands() == []
    assert store.list_events(kind="command_sent") == []


def test_pause_and_resume_are_audited_per_account(store: Store) -> None:
    assert not pause_state(store, Mode.PAPER, "binance").paused
    state = set_paused(store, Mode.PAPER, "binance", True, "alice", "CPI print", T0)
    assert state.paused and state.by == "alice" and state.since == T0
    assert not pause_state(store, Mode.LIVE, "binance").paused  # another account
    set_paused(store, Mode.PAPER, "binance", False, "bob", "print is out", T0 + timedelta(1))
    assert not pause_state(store, Mode.PAPER, "binance").paused
    actions = [(r.actor, r.action) for r in store.list_audit()]
    assert actions == [("alice", "strategy_paused"), ("bob", "strategy_resumed")]
    assert AuditLog(store).verify().ok
    with pytest.raises(DataError, match="reason"):
        set_paused(store, Mode.PAPER, "binance", True, "alice", " ", T0)


def test_tightening_a_limit_needs_no_code_loosening_needs_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    base = RiskSettings()
    now = datetime.now(UTC)  # TOTP codes are about real time
    plan = change_limits(store, base, Mode.LIVE, "binance", {"max_position_pct": "10"},
                         "alice", "smaller sizes this week", now)  # fmt: skip
    assert not plan.loosens
    assert effective_limits(store, base, Mode.LIVE, "binance").max_position_pct == Decimal(10)
    # Back up to 15 % loosens the limit in force (10 %): refused without a code, audited.
    with pytest.raises(SecretError, match="needs a TOTP code"):
        change_limits(store, base, Mode.LIVE, "binance", {"max_position_pct": "15"},
                      "alice", "back to normal", now)  # fmt: skip
    assert effective_limits(store, base, Mode.LIVE, "binance").max_position_pct == Decimal(10)
    assert store.list_audit()[-1].action == "limits_change_refused"
    code = pyotp.TOTP(secret).at(now)
    plan = change_limits(store, base, Mode.LIVE, "binance", {"max_position_pct": "15"},
                         "alice", "back to normal", now, totp_code=code)  # fmt: skip
    assert plan.loosens and [c.name for c in plan.changes] == ["max_position_pct"]
    assert effective_limits(store, base, Mode.LIVE, "binance").max_position_pct == Decimal(15)
    assert effective_limits(store, base, Mode.PAPER, "binance") == base
    assert AuditLog(store).verify().ok


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ({"max_position_pct": "150"}, "outside the allowed range"),
        ({"max_position_pct": "NaN"}, "not a finite number"),
        ({"max_position_pct": 0.1}, "not 0.1"),
        ({"max_open_positions": "2.5"}, "whole number"),
        ({"api_key": "x"}, "cannot be adjusted"),
    ],
)
def test_limit_changes_outside_the_ranges_change_nothing(
    store: Store, requested: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        change_limits(store, RiskSettings(), Mode.PAPER, "binance", requested, "alice", "try", T0)
    assert store.get_control("limits:paper:binance") is None
    assert store.list_audit() == []


def test_going_live_needs_every_check_and_its_grant_is_used_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    now = datetime.now(UTC)
    terms = {"capital_usd": Decimal(300), "limits": {"max_position_pct": Decimal(20)}}
    with pytest.raises(SecretError, match="needs a TOTP code"):
        request_live(store, "binance", by="alice", reason="go", now=now, totp_code=None,
                     key_problems=[], **terms)  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(SecretError, match="withdrawals are enabled"):
        request_live(store, "binance", by="alice", reason="go", now=now,
                     totp_code=pyotp.TOTP(secret).at(now),
                     key_problems=["withdrawals are enabled"], **terms)  # type: ignore[arg-type]  # fmt: skip
    assert mode_request(store, "binance") is None  # refusals change nothing ...
    assert [r.action for r in store.list_audit()] == ["go_live_refused"] * 2  # ... but are audited
    granted = request_live(store, "binance", by="alice", reason="go", now=now,
                           totp_code=pyotp.TOTP(secret).at(now), key_problems=[],
                           **terms)  # type: ignore[arg-type]  # fmt: skip
    assert granted.mode is Mode.LIVE and granted.grant_usable(now)
    used = consume_live_grant(store, "binance", by="service", now=now)
    assert used.consumed_by == "service" and not used.grant_usable(now)
    with pytest.raises(SecretError, match="already used"):
        consume_live_grant(store, "binance", by="service", now=now)
    back = request_paper(store, "binance", by="bob", reason="done for today", now=now)
    assert back.mode is Mode.PAPER
    with pytest.raises(SecretError, match="nobody asked to go live"):
        consume_live_grant(store, "binance", by="service", now=now)
    assert AuditLog(store).verify().ok


def test_an_unused_live_grant_expires(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    now = datetime.now(UTC)
    request_live(store, "binance", by="alice", reason="go", now=now,
                 totp_code=pyotp.TOTP(secret).at(now), capital_usd=Decimal(300), limits={},
                 key_problems=[])  # fmt: skip
    with pytest.raises(SecretError, match="has expired"):
        consume_live_grant(store, "binance", by="service", now=now + timedelta(minutes=6))
