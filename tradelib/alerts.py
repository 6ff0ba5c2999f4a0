"""Alerts: rules produce `Alert`s, a router deduplicates and rate-limits them into sinks.

Sinks here: the log, memory (dashboard, notebooks) and the store's events table; webhooks
(Slack, Discord, Telegram) live in `tradelib.webhooks` and are configured in settings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from tradelib.domain import require_utc
from tradelib.logs import get_logger, redact

log = get_logger(__name__)


class Severity(StrEnum):
    """How urgently a person should look."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertKind(StrEnum):
    """The seed's alert list: immediate ones first, then the daily ones."""

    POSITION_OPENED = "position_opened"
    POSITION_CLOSED = "position_closed"
    DAILY_LOSS_WARNING = "daily_loss_warning"
    BREAKER_TRIPPED = "breaker_tripped"
    KILL_SWITCH = "kill_switch"
    EXCHANGE_ERROR = "exchange_error"
    ORDER_FAILED = "order_failed"
    RECONCILIATION = "reconciliation"
    ENGINE = "engine"
    SCHEDULED_RUN = "scheduled_run"
    AUDIT_FAILED = "audit_failed"
    DAILY_SUMMARY = "daily_summary"
    LOW_WIN_RATE = "low_win_rate"
    SHARPE_DROP = "sharpe_drop"
    UNUSUAL_VOLUME = "unusual_volume"


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing a person should know; `key` identifies repeats for deduplication."""

    kind: AlertKind
    severity: Severity
    message: str
    at: datetime
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_utc(self.at, "alert time"))
        object.__setattr__(self, "message", redact(self.message))
        if not self.key:
            object.__setattr__(self, "key", f"{self.kind}:{self.message}")


class Sink(Protocol):
    """Where alerts go: a log, the notebook/dashboard, a webhook, the store."""

    def send(self, alert: Alert) -> None:
        """Deliver one alert; raising is allowed, the router logs and carries on."""
        ...


class LogSink:
    """Writes alerts to the structured log."""

    def send(self, alert: Alert) -> None:
        """Log the alert at a level matching its severity."""
        level = {"info": "info", "warning": "warning", "critical": "error"}[alert.severity]
        getattr(log, level)("alert", kind=str(alert.kind), message=alert.message, **alert.data)


class MemorySink:
    """Keeps the latest alerts for the dashboard and notebooks to show."""

    def __init__(self, capacity: int = 200) -> None:
        self.alerts: deque[Alert] = deque(maxlen=capacity)

    def send(self, alert: Alert) -> None:
        """Remember the alert (oldest dropped beyond capacity)."""
        self.alerts.append(alert)


class StoreSink:
    """Records alerts as `events` rows so every process and report can see them."""

    def __init__(self, append_event: Callable[..., Any]) -> None:
        self._append = append_event

    def send(self, alert: Alert) -> None:
        """Append an `alert` event with the alert's fields."""
        payload = {
            "kind": str(alert.kind),
            "severity": str(alert.severity),
            "message": alert.message,
            "data": jsonable(alert.data),
        }
        self._append("alert", payload, alert.at, source="alerts")


def jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with Decimal and datetime values as strings (for JSON payloads)."""
    return {k: (str(v) if isinstance(v, Decimal | datetime) else v) for k, v in data.items()}


class AlertRouter:
    """Deduplicates (same key within `dedupe_window`) and rate-limits alerts to every sink.

    Critical alerts bypass the rate limit: a breaker trip must never be swallowed because a
    burst of API-error warnings came first.
    """

    def __init__(
        self,
        sinks: Iterable[Sink],
        dedupe_window: timedelta = timedelta(minutes=15),
        max_per_minute: int = 20,
    ) -> None:
        self.sinks = list(sinks)
        self.dedupe_window = dedupe_window
        self.max_per_minute = max_per_minute
        self._last_sent: dict[str, datetime] = {}
        self._recent: deque[datetime] = deque()
        self.suppressed = 0

    def emit(self, alert: Alert) -> bool:
        """Send `alert` unless it repeats within the window or the rate limit is reached."""
        last = self._last_sent.get(alert.key)
        if last is not None and alert.at - last < self.dedupe_window:
            self.suppressed += 1
            return False
        while self._recent and alert.at - self._recent[0] >= timedelta(minutes=1):
            self._recent.popleft()
        if alert.severity is not Severity.CRITICAL and len(self._recent) >= self.max_per_minute:
            self.suppressed += 1
            return False
        self._last_sent[alert.key] = alert.at
        self._recent.append(alert.at)
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:  # one broken sink must not silence the others
                log.warning("alert sink failed", sink=type(sink).__name__, error=str(exc))
        return True


@dataclass(frozen=True, slots=True)
class DailyStats:
    """What the daily rules look at."""

    day: str
    pnl: Decimal
    pnl_pct: Decimal
    trades: int
    win_rate: Decimal | None
    sharpe: Decimal | None
    previous_sharpe: Decimal | None
    volume_ratio: dict[str, Decimal] = field(default_factory=dict)


def daily_alerts(
    stats: DailyStats,
    now: datetime,
    min_win_rate: Decimal = Decimal("0.35"),
    sharpe_drop: Decimal = Decimal("0.5"),
    unusual_volume: Decimal = Decimal(3),
) -> list[Alert]:
    """The seed's daily alerts: P&L summary, win rate < 35 %, Sharpe dropping, unusual volume."""
    alerts = [
        Alert(
            AlertKind.DAILY_SUMMARY,
            Severity.INFO,
            f"{stats.day}: P&L {stats.pnl:.2f} USD ({stats.pnl_pct:.2f} %), {stats.trades} trades",
            now,
            key=f"daily_summary:{stats.day}",
        )
    ]
    if stats.win_rate is not None and stats.trades > 0 and stats.win_rate < min_win_rate:
        alerts.append(
            Alert(
                AlertKind.LOW_WIN_RATE,
                Severity.WARNING,
                f"win rate {stats.win_rate:.0%} is below {min_win_rate:.0%}",
                now,
                key=f"low_win_rate:{stats.day}",
            )
        )
    if (
        stats.sharpe is not None
        and stats.previous_sharpe is not None
        and stats.previous_sharpe - stats.sharpe > sharpe_drop
    ):
        alerts.append(
            Alert(
                AlertKind.SHARPE_DROP,
                Severity.WARNING,
                f"Sharpe fell from {stats.previous_sharpe:.2f} to {stats.sharpe:.2f}",
                now,
                key=f"sharpe_drop:{stats.day}",
            )
        )
    for symbol, ratio in sorted(stats.volume_ratio.items()):
        if ratio >= unusual_volume:
            alerts.append(
                Alert(
                    AlertKind.UNUSUAL_VOLUME,
                    Severity.INFO,
                    f"{symbol} volume is {ratio:.1f}x its 30-day average",
                    now,
                    key=f"unusual_volume:{stats.day}:{symbol}",
                )
            )
    return alerts
