"""RiskControl's circuit breakers and halt guard on both stores (DuckDB file, PostgreSQL schema).

Each breaker is tripped by the observations that trip it in production, seen by a second
RiskControl on a second store handle (the state lives in the store, not in the object), refuses
entries with its reason while exits pass, and resets — without a code in paper, only with a
valid TOTP code in live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyotp
import pytest

from tradelib.alerts import AlertKind, AlertRouter, MemorySink, Severity
from tradelib.audit import AuditLog
from tradelib.audit_anchor import AUDIT_KEY_ENV, generate_audit_key
from tradelib.config import Settings
from tradelib.control import RiskControl
from tradelib.domain import Mode, OrderType, Side, StrategyId, TimeInForce
from tradelib.errors import AuditError, BreakerTripped, KillSwitchEngaged, RiskRejected, SecretError
from tradelib.orders import ExecutionRequest, set_halt
from tradelib.risk import (
    ApiError,
    Breaker,
    EventKind,
    ExchangeBan,
    MarketDataAge,
    Observation,
    PortfolioObservation,
    TradeClosed,
    capital_base,
)
from tradelib.secrets import TOTP_SECRET_ENV
from tradelib.store import Store, open_store

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("token_unlock")


class Clock:
    """A settable clock: tests move time on purpose, never wait for it."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _control(
    store: Store, mode: Mode = Mode.PAPER, clock: Callable[[], datetime] | None = None
) -> tuple[RiskControl, MemorySink]:
    sink = MemorySink()
    control = RiskControl(
        store,
        Settings(mode=mode),
        mode=mode,
        exchange_id="binance",
        clock=clock or Clock(),
        alerts=AlertRouter([sink]),
    )
    return control, sink


def _entry(key: str = "entry-1") -> ExecutionRequest:
    return ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, Decimal(100), key)


def _exit(key: str = "exit-1") -> ExecutionRequest:
    return ExecutionRequest(
        STRATEGY, SYMBOL, Side.SELL, Decimal(100), key, type=OrderType.LIMIT,
        price=Decimal("0.5"), time_in_force=TimeInForce.IOC, reduce_only=True,
    )  # fmt: skip


def _trip_sequence(breaker: Breaker) -> list[Observation]:
    """Observations that trip exactly `breaker` under the seed settings."""
    if breaker is Breaker.DAILY_LOSS:  # -600 on 10,000 is beyond the -5 % limit (-500)
        return [PortfolioObservation(Decimal(9400), Decimal(-600), Decimal(10_000))]
    if breaker is Breaker.CONSECUTIVE_LOSSES:
        return [TradeClosed(Decimal(-12), SYMBOL) for _ in range(3)]
    if breaker is Breaker.DRAWDOWN:  # 11 % below the 10,000 peak, the day itself flat
        return [
            PortfolioObservation(Decimal(10_000), Decimal(0), Decimal(10_000)),
            PortfolioObservation(Decimal(8900), Decimal(0), Decimal(8900)),
        ]
    if breaker is Breaker.API_ERRORS:
        return [ApiError(f"HTTP 503 #{i}") for i in range(5)]
    if breaker is Breaker.STALE_DATA:
        return [MarketDataAge(SYMBOL, T0 - timedelta(seconds=300))]
    return [ExchangeBan("HTTP 418 from /api/v3/order", retry_after_seconds=120)]


@pytest.fixture
def second(store_url: str, store: Store) -> Iterator[Store]:
    """A second handle on the same store, as another process (or the dashboard) would hold."""
    other = open_store(store_url)
    yield other
    other.close()


@pytest.mark.parametrize("breaker", list(Breaker))
def test_breaker_trips_persists_refuses_entries_and_resets(
    store: Store, second: Store, breaker: Breaker
) -> None:
    clock = Clock()
    control, sink = _control(store, clock=clock)
    events = []
    for observation in _trip_sequence(breaker):
        clock.at += timedelta(seconds=1)
        events += control.observe(observation)
    trips = [e for e in events if e.kind is EventKind.TRIPPED]
    assert [e.breaker for e in trips] == [breaker], events

    # Another RiskControl on another store handle sees the trip: it lives in the store.
    other, _ = _control(second, clock=clock)
    state = other.breaker_state()
    assert state.tripped.keys() == {breaker}
    reason = state.tripped[breaker].reason
    with pytest.raises(BreakerTripped) as refused:
        other.guard(_entry())
    assert any(reason in r for r in refused.value.reasons)
    assert breaker.value in str(refused.value)
    other.guard(_exit())  # exits keep working while tripped

    alerts = [a for a in sink.alerts if a.kind is AlertKind.BREAKER_TRIPPED]
    assert len(alerts) == 1 and reason in alerts[0].message

    # Paper: a reset needs no second factor.
    clock.at += timedelta(minutes=5)
    after = other.reset_breaker(breaker, "ops", "checked the cause", totp_code=None)
    assert not after.any_tripped
    assert not control.breaker_state().any_tripped
    control.guard(_entry())  # entries flow again

    actions = [(r.actor, r.action) for r in store.list_audit()]
    assert ("engine", "breaker_tripped") in actions
    assert ("ops", "breaker_reset") in actions
    assert {"breaker_tripped", "breaker_reset", "order_refused"} <= {
        e.kind for e in store.list_events(limit=1000)
    }
    assert AuditLog(store).verify().ok


def test_daily_loss_warning_fires_once_across_processes(store: Store, second: Store) -> None:
    clock = Clock()
    control, sink = _control(store, clock=clock)
    start = Decimal(10_000)
    # 80 % of the -500 limit is -400: -420 warns, -450 and -480 do not warn again.
    for pnl in (Decimal(-100), Decimal(-420), Decimal(-450)):
        clock.at += timedelta(minutes=1)
        control.observe(PortfolioObservation(start + pnl, pnl, start))
    other, other_sink = _control(second, clock=clock)  # a fresh router: no in-memory dedupe
    clock.at += timedelta(minutes=1)
    other.observe(PortfolioObservation(start - 480, Decimal(-480), start))
    warnings = [
        a for a in [*sink.alerts, *other_sink.alerts] if a.kind is AlertKind.DAILY_LOSS_WARNING
    ]
    assert len(warnings) == 1, warnings
    assert "-420.00" in warnings[0].message and "-400.00 of -500.00" in warnings[0].message
    assert not control.breaker_state().any_tripped
    # The next UTC day warns afresh.
    clock.at = T0 + timedelta(days=1)
    other.observe(PortfolioObservation(start - 410, Decimal(-410), start))
    assert [a.kind for a in other_sink.alerts].count(AlertKind.DAILY_LOSS_WARNING) == 1


def test_live_reset_needs_a_valid_totp_code(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    clock = Clock(datetime.now(UTC))  # TOTP codes are about real time
    control, _ = _control(store, mode=Mode.LIVE, clock=clock)
    for _ in range(3):
        control.observe(TradeClosed(Decimal(-5), SYMBOL))
    assert control.breaker_state().is_tripped(Breaker.CONSECUTIVE_LOSSES)

    with pytest.raises(SecretError, match="needs a TOTP code"):
        control.reset_breaker(Breaker.CONSECUTIVE_LOSSES, "ops", "looked at it", totp_code=None)
    totp = pyotp.TOTP(secret)
    valid = {totp.at(clock.at + timedelta(seconds=s)) for s in (-30, 0, 30)}
    wrong = next(c for c in ("135790", "246801", "975310", "864209") if c not in valid)
    with pytest.raises(SecretError, match="wrong or expired"):
        control.reset_breaker(Breaker.CONSECUTIVE_LOSSES, "ops", "looked at it", totp_code=wrong)
    assert control.breaker_state().is_tripped(Breaker.CONSECUTIVE_LOSSES)
    with pytest.raises(BreakerTripped):
        control.guard(_entry())

    after = control.reset_breaker(
        Breaker.CONSECUTIVE_LOSSES, "ops", "looked at it", totp_code=totp.at(clock.at)
    )
    assert not after.any_tripped
    assert after.consecutive_losses == 0
    control.guard(_entry())

    audit = store.list_audit()
    assert [r.action for r in audit if r.action.startswith("breaker_reset")] == [
        "breaker_reset_refused",
        "breaker_reset_refused",
        "breaker_reset",
    ]
    everything = " ".join(r.payload_json for r in audit)
    assert secret not in everything and wrong not in everything


def test_paper_reset_needs_no_code_even_without_a_totp_secret(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOTP_SECRET_ENV, raising=False)
    control, _ = _control(store)
    control.observe(ExchangeBan("418", 60))
    assert not control.reset_breaker("exchange_ban", "ops", "ban over", None).any_tripped


def test_reconciliation_halt_refuses_entries_not_exits(store: Store) -> None:
    control, _ = _control(store)
    control.guard(_entry())
    set_halt(store, "reconciliation failed: order tl-x unknown", T0, "reconciler")
    with pytest.raises(RiskRejected, match="order tl-x unknown") as refused:
        control.guard(_entry("entry-2"))
    assert type(refused.value) is RiskRejected  # neither a breaker nor the kill switch
    control.guard(_exit())
    set_halt(store, None, T0, "reconciler")
    control.guard(_entry("entry-3"))


def test_capital_base_caps_live_equity_only() -> None:
    settings = Settings(live_capital_usd=Decimal(500))
    assert capital_base(Mode.LIVE, Decimal(12_000), settings) == Decimal(500)
    assert capital_base(Mode.LIVE, Decimal(300), settings) == Decimal(300)
    assert capital_base(Mode.PAPER, Decimal(12_000), settings) == Decimal(12_000)


def test_cli_status_and_breakers_reset(store: Store, store_url: str) -> None:
    from typer.testing import CliRunner

    from tradelib.cli import app

    runner = CliRunner()
    control, _ = _control(store)
    control.observe(TradeClosed(Decimal(-3), SYMBOL))
    control.observe(TradeClosed(Decimal(-4), SYMBOL))
    control.observe(TradeClosed(Decimal(-5), SYMBOL))
    set_halt(store, "reconciliation failed: lost answer", T0, "reconciler")

    status = runner.invoke(app, ["status", "--store", store_url])
    assert status.exit_code == 0, status.output
    lines = {line.split()[0] + " " + line.split()[1]: line for line in status.output.splitlines()}
    assert "TRIPPED" in lines["breaker consecutive_losses"]
    assert "3 losing trades in a row" in lines["breaker consecutive_losses"]
    assert "ok" in lines["breaker drawdown"]
    assert "HALTED" in status.output and "lost answer" in status.output
    assert "kill switch" in status.output and "off" in lines["kill switch"]

    unknown = runner.invoke(
        app, ["breakers", "reset", "nope", "--reason", "x", "--store", store_url]
    )
    assert unknown.exit_code == 2 and "consecutive_losses" in unknown.output
    reset = runner.invoke(
        app,
        ["breakers", "reset", "consecutive_losses", "--reason", "reviewed", "--by", "desk",
         "--store", store_url],
    )  # fmt: skip
    assert reset.exit_code == 0, reset.output
    assert "consecutive_losses breaker reset" in reset.output
    assert not control.breaker_state().any_tripped
    assert store.list_audit()[-1].actor == "desk"


def test_nan_equity_is_refused_and_leaves_the_store_unchanged(store: Store) -> None:
    from tradelib.errors import DataError

    control, sink = _control(store)
    control.observe(TradeClosed(Decimal(-5), SYMBOL))  # some state to keep
    tables = ("controls", "events", "audit_log")
    before = {t: store._query(f"SELECT * FROM {t} ORDER BY 1") for t in tables}
    nan = PortfolioObservation(Decimal("NaN"), Decimal(0), Decimal(10_000))
    with pytest.raises(DataError, match=r"PortfolioObservation\.equity is Decimal\('NaN'\)"):
        control.observe(nan)
    assert {t: store._query(f"SELECT * FROM {t} ORDER BY 1") for t in tables} == before
    assert not any(a.kind is AlertKind.BREAKER_TRIPPED for a in sink.alerts)


def test_safety_actions_hold_when_the_audit_log_cannot_be_written(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chain was started under one audit key; this machine now has another (a foreign key is
    # refused by the audit log): engaging the switch, tripping a breaker and refusing an order
    # must still take effect, with the failure recorded and alerted.
    monkeypatch.setenv(AUDIT_KEY_ENV, generate_audit_key())
    control, sink = _control(store)
    control.engage_kill("ops", "drill", flatten=False)
    control.release_kill("ops", "drill over", totp_code=None)  # refused: no code, audited
    monkeypatch.setenv(AUDIT_KEY_ENV, generate_audit_key())
    with pytest.raises(AuditError):
        AuditLog(store).record("probe", "probe", {}, T0)
    before = len(store.list_audit())
    control, sink = _control(store)  # a process started with the other key

    control.observe(TradeClosed(Decimal(-12), SYMBOL), T0)
    control.observe(TradeClosed(Decimal(-12), SYMBOL), T0)
    control.observe(TradeClosed(Decimal(-12), SYMBOL), T0)
    assert control.breaker_state().any_tripped
    with pytest.raises(KillSwitchEngaged):
        control.guard(_entry("after-audit-failure"))
    assert control.kill_state().engaged
    control.engage_kill("ops", "again, flatten this time", flatten=True)
    assert control.kill_state().flatten

    assert len(store.list_audit()) == before  # nothing written under the foreign key
    failed = [e.payload["action"] for e in store.list_events(kind="audit_failed")]
    assert failed == ["breaker_tripped", "order_refused", "kill_switch_engage"]
    alerted = [a for a in sink.alerts if a.kind is AlertKind.AUDIT_FAILED]
    assert len(alerted) == 3 and all(a.severity is Severity.CRITICAL for a in alerted)
