"""Alert routing: deduplication, rate limits, critical bypass, sinks, daily rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradelib.alerts import (
    Alert,
    AlertKind,
    AlertRouter,
    DailyStats,
    MemorySink,
    Severity,
    daily_alerts,
)
from tradelib.logs import register_secret

T0 = datetime(2024, 3, 16, 12, tzinfo=UTC)


def _warn(i: int, at: datetime) -> Alert:
    return Alert(AlertKind.EXCHANGE_ERROR, Severity.WARNING, f"timeout #{i}", at)


def test_same_key_is_sent_once_per_window() -> None:
    sink = MemorySink()
    router = AlertRouter([sink], dedupe_window=timedelta(minutes=15))
    alert = Alert(AlertKind.BREAKER_TRIPPED, Severity.CRITICAL, "daily loss -5.1%", T0)
    assert router.emit(alert)
    assert not router.emit(
        Alert(alert.kind, alert.severity, alert.message, T0 + timedelta(minutes=5))
    )
    assert router.emit(Alert(alert.kind, alert.severity, alert.message, T0 + timedelta(minutes=15)))
    assert len(sink.alerts) == 2
    assert router.suppressed == 1


def test_rate_limit_drops_warnings_but_never_criticals() -> None:
    sink = MemorySink()
    router = AlertRouter([sink], max_per_minute=3)
    sent = [router.emit(_warn(i, T0 + timedelta(seconds=i))) for i in range(5)]
    assert sent == [True, True, True, False, False]
    critical = Alert(AlertKind.KILL_SWITCH, Severity.CRITICAL, "kill switch engaged", T0)
    assert router.emit(critical)
    # a minute later the window has room again
    assert router.emit(_warn(99, T0 + timedelta(seconds=70)))
    assert [a.message for a in sink.alerts][-2:] == ["kill switch engaged", "timeout #99"]


def test_a_broken_sink_does_not_silence_the_others() -> None:
    class Broken:
        def send(self, alert: Alert) -> None:
            raise OSError("webhook down")

    sink = MemorySink()
    router = AlertRouter([Broken(), sink])
    assert router.emit(_warn(1, T0))
    assert len(sink.alerts) == 1


def test_secrets_are_redacted_from_alert_messages() -> None:
    register_secret("hunter2-very-secret")
    alert = Alert(
        AlertKind.ORDER_FAILED, Severity.WARNING, "auth failed for hunter2-very-secret", T0
    )
    assert "hunter2" not in alert.message


def test_daily_rules() -> None:
    stats = DailyStats(
        day="2024-03-16",
        pnl=Decimal("-12.5"),
        pnl_pct=Decimal("-1.25"),
        trades=4,
        win_rate=Decimal("0.25"),
        sharpe=Decimal("0.4"),
        previous_sharpe=Decimal("1.2"),
        volume_ratio={"ARB/USDT": Decimal("4.2"), "OP/USDT": Decimal("1.1")},
    )
    kinds = [a.kind for a in daily_alerts(stats, T0)]
    assert kinds == [
        AlertKind.DAILY_SUMMARY,
        AlertKind.LOW_WIN_RATE,
        AlertKind.SHARPE_DROP,
        AlertKind.UNUSUAL_VOLUME,
    ]
    calm = DailyStats(
        "2024-03-17", Decimal(5), Decimal("0.5"), 2, Decimal("0.5"), Decimal(1), Decimal("1.1")
    )
    assert [a.kind for a in daily_alerts(calm, T0)] == [AlertKind.DAILY_SUMMARY]
