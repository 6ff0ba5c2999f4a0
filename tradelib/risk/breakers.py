"""Circuit breakers: a pure state machine fed with observations, returning events as data.

Breakers: daily loss (realised + unrealised since the UTC day start, with an alert at
`daily_loss_alert_fraction` of the limit), consecutive losing trades, drawdown from peak,
repeated exchange/API errors, stale market data and an exchange ban (HTTP 418).

A tripped breaker stays tripped until `reset` names it, who and why — there is no automatic
reset, not even for the daily loss breaker at UTC midnight: a day that ended in a loss-limit
trip deserves a person's look. What does roll at midnight is the daily counter: the alert
flag and the post-reset baseline start afresh each UTC day (the daily P&L itself is counted by
`tradelib.position.DayMark`).

A reset must let trading resume, so it moves the reference the breaker measures from:
resetting the daily breaker accepts the loss so far today (it trips again only after a
further full limit of loss that day), resetting drawdown makes the current equity the new
peak, resetting losses or API errors clears their counters.

State is a frozen dataclass of plain values; `to_dict` / `from_dict` give a JSON-ready form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradelib.config import RiskSettings
from tradelib.domain import ZERO, require_utc, stamped_in_future
from tradelib.errors import DataError

HUNDRED = Decimal(100)


class Breaker(StrEnum):
    """The circuit breakers."""

    DAILY_LOSS = "daily_loss"
    CONSECUTIVE_LOSSES = "consecutive_losses"
    DRAWDOWN = "drawdown"
    API_ERRORS = "api_errors"
    STALE_DATA = "stale_data"
    EXCHANGE_BAN = "exchange_ban"


class EventKind(StrEnum):
    """What happened to a breaker."""

    TRIPPED = "tripped"
    ALERT = "alert"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class Trip:
    """Why and when a breaker tripped."""

    breaker: Breaker
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A trip, a warning or a reset, for alerts and the audit log."""

    kind: EventKind
    breaker: Breaker
    at: datetime
    message: str


@dataclass(frozen=True, slots=True)
class BreakerState:
    """Every breaker's trip (if any) and the counters they are measured with."""

    trips: tuple[Trip, ...] = ()
    day: date | None = None
    daily_alerted: bool = False
    daily_baseline: Decimal = ZERO
    last_daily_pnl: Decimal = ZERO
    consecutive_losses: int = 0
    api_errors: tuple[datetime, ...] = ()
    peak_equity: Decimal | None = None
    last_equity: Decimal | None = None

    @property
    def tripped(self) -> dict[Breaker, Trip]:
        """Tripped breakers and their trip records."""
        return {trip.breaker: trip for trip in self.trips}

    def is_tripped(self, breaker: Breaker) -> bool:
        """True when `breaker` is tripped."""
        return any(trip.breaker is breaker for trip in self.trips)

    @property
    def any_tripped(self) -> bool:
        """True when at least one breaker is tripped (entries must stop)."""
        return bool(self.trips)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: Decimals as strings, times as ISO 8601."""
        return {
            "trips": [
                {"breaker": t.breaker.value, "at": t.at.isoformat(), "reason": t.reason}
                for t in self.trips
            ],
            "day": self.day.isoformat() if self.day else None,
            "daily_alerted": self.daily_alerted,
            "daily_baseline": str(self.daily_baseline),
            "last_daily_pnl": str(self.last_daily_pnl),
            "consecutive_losses": self.consecutive_losses,
            "api_errors": [t.isoformat() for t in self.api_errors],
            "peak_equity": None if self.peak_equity is None else str(self.peak_equity),
            "last_equity": None if self.last_equity is None else str(self.last_equity),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerState:
        """Inverse of `to_dict`."""

        def when(text: str) -> datetime:
            return require_utc(datetime.fromisoformat(text), "breaker time")

        def dec(text: str | None) -> Decimal | None:
            return None if text is None else Decimal(text)

        return cls(
            trips=tuple(
                Trip(Breaker(t["breaker"]), when(t["at"]), t["reason"]) for t in data["trips"]
            ),
            day=date.fromisoformat(data["day"]) if data.get("day") else None,
            daily_alerted=bool(data["daily_alerted"]),
            daily_baseline=Decimal(data["daily_baseline"]),
            last_daily_pnl=Decimal(data["last_daily_pnl"]),
            consecutive_losses=int(data["consecutive_losses"]),
            api_errors=tuple(when(t) for t in data["api_errors"]),
            peak_equity=dec(data.get("peak_equity")),
            last_equity=dec(data.get("last_equity")),
        )


@dataclass(frozen=True, slots=True)
class PortfolioObservation:
    """Equity now and the day's P&L (realised + unrealised since the UTC day start), in USD."""

    equity: Decimal
    daily_pnl: Decimal
    day_start_equity: Decimal


@dataclass(frozen=True, slots=True)
class TradeClosed:
    """A round trip finished with `pnl` (net of fees); below zero counts as a loss."""

    pnl: Decimal
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class ApiError:
    """The exchange or its API failed a call (5xx, timeout, 429...)."""

    message: str


@dataclass(frozen=True, slots=True)
class MarketDataAge:
    """When market data for `symbol` was last received."""

    symbol: str
    last_update: datetime


@dataclass(frozen=True, slots=True)
class ExchangeBan:
    """The exchange answered 418: the IP is banned, for `retry_after_seconds` if known."""

    message: str
    retry_after_seconds: int | None = None


Observation = PortfolioObservation | TradeClosed | ApiError | MarketDataAge | ExchangeBan


def _trip(
    state: BreakerState, breaker: Breaker, now: datetime, reason: str, events: list[BreakerEvent]
) -> BreakerState:
    if state.is_tripped(breaker):
        return state
    events.append(BreakerEvent(EventKind.TRIPPED, breaker, now, reason))
    return replace(state, trips=(*state.trips, Trip(breaker, now, reason)))


def _roll_day(state: BreakerState, today: date) -> BreakerState:
    if state.day == today:
        return state
    return replace(state, day=today, daily_alerted=False, daily_baseline=ZERO, last_daily_pnl=ZERO)


def _portfolio(
    state: BreakerState,
    obs: PortfolioObservation,
    now: datetime,
    settings: RiskSettings,
    events: list[BreakerEvent],
) -> BreakerState:
    state = replace(state, last_daily_pnl=obs.daily_pnl, last_equity=obs.equity)
    if obs.day_start_equity > 0:
        limit = -settings.daily_loss_limit_pct / HUNDRED * obs.day_start_equity
        alert_at = limit * settings.daily_loss_alert_fraction
        loss = obs.daily_pnl - state.daily_baseline
        described = (
            f"daily P&L {obs.daily_pnl:.2f} USD"
            + (f" ({loss:.2f} since the reset)" if state.daily_baseline else "")
            + f" on day-start equity {obs.day_start_equity:.2f}"
        )
        if loss <= alert_at and not state.daily_alerted:
            events.append(
                BreakerEvent(
                    EventKind.ALERT,
                    Breaker.DAILY_LOSS,
                    now,
                    f"{described} reached {settings.daily_loss_alert_fraction * HUNDRED:.0f}% "
                    f"of the daily loss limit ({alert_at:.2f} of {limit:.2f} USD)",
                )
            )
            state = replace(state, daily_alerted=True)
        if loss <= limit:
            reason = (
                f"{described} is at or below the -{settings.daily_loss_limit_pct}% daily loss "
                f"limit ({limit:.2f} USD)"
            )
            state = _trip(state, Breaker.DAILY_LOSS, now, reason, events)
    peak = obs.equity if state.peak_equity is None else max(state.peak_equity, obs.equity)
    state = replace(state, peak_equity=peak)
    if peak > 0:
        drawdown = (peak - obs.equity) / peak * HUNDRED
        if drawdown >= settings.drawdown_pause_pct:
            reason = (
                f"equity {obs.equity:.2f} USD is {drawdown:.2f}% below the peak {peak:.2f} "
                f"(pause at {settings.drawdown_pause_pct}%)"
            )
            state = _trip(state, Breaker.DRAWDOWN, now, reason, events)
    return state


_MONEY_FIELDS: dict[type, tuple[str, ...]] = {
    PortfolioObservation: ("equity", "daily_pnl", "day_start_equity"),
    TradeClosed: ("pnl",),
}


def _require_finite(observation: Observation) -> None:
    for name in _MONEY_FIELDS.get(type(observation), ()):
        value = getattr(observation, name)
        if isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite()):
            continue
        raise DataError(
            f"breaker observation {type(observation).__name__}.{name} is {value!r}, not a finite "
            "Decimal: it was computed from a missing or non-numeric price or balance; fix that "
            "input. The breakers were left unchanged"
        )


def update(
    state: BreakerState,
    observation: Observation,
    now: datetime,
    settings: RiskSettings | None = None,
) -> tuple[BreakerState, list[BreakerEvent]]:
    """Feed one observation; return the new state and the events it caused (trips, alerts)."""
    settings = settings or RiskSettings()
    now = require_utc(now, "breaker time")
    _require_finite(observation)
    state = _roll_day(state, now.date())
    events: list[BreakerEvent] = []
    if isinstance(observation, PortfolioObservation):
        state = _portfolio(state, observation, now, settings, events)
    elif isinstance(observation, TradeClosed):
        count = state.consecutive_losses + 1 if observation.pnl < 0 else 0
        state = replace(state, consecutive_losses=count)
        if count >= settings.max_consecutive_losses:
            reason = (
                f"{count} losing trades in a row (limit {settings.max_consecutive_losses}); "
                f"last {observation.symbol} {observation.pnl:.2f}"
            )
            state = _trip(state, Breaker.CONSECUTIVE_LOSSES, now, reason, events)
    elif isinstance(observation, ApiError):
        window = timedelta(seconds=settings.api_error_window_seconds)
        recent = (*(t for t in state.api_errors if now - t <= window), now)
        state = replace(state, api_errors=recent)
        if len(recent) >= settings.max_api_errors:
            reason = (
                f"{len(recent)} exchange/API errors within {settings.api_error_window_seconds}s "
                f"(limit {settings.max_api_errors}); last: {observation.message}"
            )
            state = _trip(state, Breaker.API_ERRORS, now, reason, events)
    elif isinstance(observation, MarketDataAge):
        age = (now - require_utc(observation.last_update, "market data time")).total_seconds()
        if stamped_in_future(observation.last_update, now):
            reason = (
                f"{observation.symbol} market data is stamped {-age:.0f}s in the future "
                f"({observation.last_update.isoformat()}): the data or the clock is wrong, so "
                "it is not fresh"
            )
            state = _trip(state, Breaker.STALE_DATA, now, reason, events)
        elif age > settings.stale_data_seconds:
            reason = (
                f"{observation.symbol} market data is {age:.0f}s old "
                f"(limit {settings.stale_data_seconds}s)"
            )
            state = _trip(state, Breaker.STALE_DATA, now, reason, events)
    elif isinstance(observation, ExchangeBan):
        until = (
            f"for {observation.retry_after_seconds}s"
            if observation.retry_after_seconds is not None
            else "for an unknown time"
        )
        reason = f"exchange banned this IP (418) {until}: {observation.message}"
        state = _trip(state, Breaker.EXCHANGE_BAN, now, reason, events)
    else:
        raise DataError(f"unknown breaker observation {observation!r}")
    return state, events


def reset(
    state: BreakerState, breaker: Breaker, by: str, now: datetime, reason: str
) -> tuple[BreakerState, list[BreakerEvent]]:
    """Reset one tripped breaker (a person's decision); no event when it was not tripped."""
    if not by.strip() or not reason.strip():
        raise DataError("a breaker reset needs who resets it and why")
    now = require_utc(now, "breaker reset time")
    state = _roll_day(state, now.date())
    if not state.is_tripped(breaker):
        return state, []
    trip = state.tripped[breaker]
    state = replace(state, trips=tuple(t for t in state.trips if t.breaker is not breaker))
    if breaker is Breaker.DAILY_LOSS:
        state = replace(state, daily_baseline=state.last_daily_pnl)
    elif breaker is Breaker.DRAWDOWN:
        state = replace(state, peak_equity=state.last_equity)
    elif breaker is Breaker.CONSECUTIVE_LOSSES:
        state = replace(state, consecutive_losses=0)
    elif breaker is Breaker.API_ERRORS:
        state = replace(state, api_errors=())
    message = (
        f"{breaker.value} breaker reset by {by}: {reason} "
        f"(tripped {trip.at.isoformat()}: {trip.reason})"
    )
    return state, [BreakerEvent(EventKind.RESET, breaker, now, message)]
