"""One reading of the store for an account, and the `Snapshot` it makes at a moment (pure).

The store is read again only when its change token moved (or the account or the filters
did); between reads the same `Reading` is judged again at each tick, because some of what
the dashboard says depends on the clock alone: an engine that stopped beating goes stale,
positions age.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from tradelib.config import RiskSettings, Settings
from tradelib.domain import Mode, Order
from tradelib.errors import DataError
from tradelib.operations import ModeRequest, PauseState
from tradelib.operations.valuation import AccountValuation
from tradelib.risk import KillSwitchState, Trip
from tradelib.store import (
    CommandRecord,
    EventRecord,
    ExecutionState,
    HeartbeatRecord,
    Liveness,
)
from tradelib.store.records import PositionRecord
from widgets.activity import alert_rows, command_rows, order_row
from widgets.aggregate import (
    balances_view,
    daily_closes,
    engine_view,
    equity_points,
    pnl_view,
    position_rows,
    strategy_metrics,
    usd_prices,
)
from widgets.model import (
    Account,
    BalancesView,
    EngineView,
    EquityPoint,
    HistoryFilter,
    HistoryPage,
    Snapshot,
    StatusView,
)

DEFAULT_STALE_AFTER = 30.0  # seconds without a beat before an engine counts as stale


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one pass over the store returned for an account and a history filter."""

    token: int
    exchange: str
    mode: Mode
    wanted: HistoryFilter
    beats: tuple[HeartbeatRecord, ...]
    kill: KillSwitchState
    trips: tuple[Trip, ...]
    halt: str | None
    pause: PauseState
    request: ModeRequest | None
    limits: RiskSettings
    overrides: tuple[tuple[str, str], ...]
    records: tuple[PositionRecord, ...]
    state: ExecutionState | None
    stored_balances: Mapping[str, tuple[Decimal, Decimal]]
    cycles: tuple[EventRecord, ...]
    events: tuple[EventRecord, ...]
    open_orders: tuple[Order, ...]
    commands: tuple[CommandRecord, ...]
    history: HistoryPage
    notes: tuple[str, ...] = ()


def sample(valuation: AccountValuation) -> EquityPoint:
    """The chart point an engine's valuation gives."""
    return EquityPoint(valuation.at, valuation.equity_usd, valuation.daily_pnl_usd)


class SampleBook:
    """The engine valuations seen while the dashboard is open: the chart's live points.

    The store keeps equity only for cycles that traded (and one close a day); the valuation
    each heartbeat carries fills the gaps while someone watches. Bounded, oldest dropped.
    """

    def __init__(self, limit: int = 5000) -> None:
        self._points: deque[EquityPoint] = deque(maxlen=limit)

    def add(self, valuation: AccountValuation | None) -> None:
        """Record the valuation unless it is the one seen last."""
        if valuation is None:
            return
        point = sample(valuation)
        if self._points and self._points[-1].at >= point.at:
            if self._points[-1].at == point.at:
                self._points[-1] = point
            return  # an engine restarted on an older clock (a new replay): keep one series
        self._points.append(point)

    def points(self) -> tuple[EquityPoint, ...]:
        """Every recorded point, oldest first."""
        return tuple(self._points)


def stale_after(beat: HeartbeatRecord, default: float) -> float:
    """Seconds of silence before `beat`'s engine counts as stale: what the engine announced
    (`stale_after_seconds`, else three of its `tick_seconds`), else `default`."""
    detail = beat.detail
    try:
        if detail.get("stale_after_seconds") is not None:
            return float(detail["stale_after_seconds"])
        every = detail.get("tick_seconds", detail.get("beat_every_s"))
        return max(default, 3 * float(every)) if every is not None else default
    except (TypeError, ValueError):
        return default


def engines(
    beats: Sequence[HeartbeatRecord], now: datetime, default_stale: float
) -> tuple[EngineView, ...]:
    """The heartbeats judged at `now`."""
    return tuple(engine_view(b, now, stale_after(b, default_stale)) for b in beats)


def choose_mode(beats: Sequence[EngineView], fallback: Mode) -> Mode:
    """The mode the account trades in: an alive engine's (LIVE first), else the last one's."""
    alive = [b for b in beats if b.liveness is Liveness.ALIVE]
    if alive:
        return Mode.LIVE if any(b.mode is Mode.LIVE for b in alive) else alive[0].mode
    if beats:
        return max(beats, key=lambda b: b.beat_at).mode
    return fallback


def engine_clock(
    valuation: AccountValuation | None, beat: HeartbeatRecord | None, now: datetime
) -> datetime:
    """`now` on the engine's clock: its last valuation (or the market time it beat with)
    plus the wall time since then.

    A rehearsal runs on the data's clock; ages of its positions are measured on that clock.
    """
    if beat is None:
        return now
    if valuation is not None:
        return valuation.at + max(now - (beat.last_cycle_at or beat.beat_at), timedelta(0))
    try:
        market = datetime.fromisoformat(str(beat.detail["market_time"]))
    except (KeyError, ValueError):
        return now
    if market.tzinfo is None:
        return now
    return market + max(now - beat.beat_at, timedelta(0))


def build(
    reading: Reading,
    views: tuple[EngineView, ...],
    settings: Settings,
    strategy: str | None,
    samples: SampleBook,
    now: datetime,
) -> Snapshot:
    """The snapshot `reading` makes at `now`, with `views` (its heartbeats judged at `now`)."""
    mode, notes = reading.mode, list(reading.notes)
    engine = next((e for e in views if e.mode is mode), None)
    beat = next((b for b in reading.beats if b.mode is mode), None)
    account = Account(reading.exchange, mode, strategy or (beat.strategy if beat else None))
    valuation = None
    if beat is not None:
        try:
            valuation = AccountValuation.from_detail(beat.detail)
        except DataError as exc:
            notes.append(str(exc))
        for key in ("halted", "winding_down", "stopped_because"):
            if beat.detail.get(key):
                notes.append(f"engine {key.replace('_', ' ')}: {beat.detail[key]}")
    samples.add(valuation)
    marks = dict(valuation.marks) if valuation else {}
    positions = position_rows(reading.records, marks, engine_clock(valuation, beat, now))
    for record in reading.records:  # the store's last price where the engine published none
        if record.current_price is not None:
            marks.setdefault(record.position.symbol, record.current_price)
    limits = reading.limits
    points = equity_points(reading.cycles, samples.points(), daily_closes(reading.state))
    status = StatusView(
        account=account, engine=engine, engines=views, kill=reading.kill, trips=reading.trips,
        halt=reading.halt, pause=reading.pause, mode_request=reading.request, limits=limits,
        overrides=reading.overrides, live_capital_usd=settings.live_capital_usd,
    )  # fmt: skip
    return Snapshot(
        at=now,
        status=status,
        positions=positions,
        metrics=strategy_metrics(reading.state, valuation, settings.targets, limits),
        balances=_balances(reading, valuation, marks, settings),
        pnl=pnl_view(points, valuation, limits),
        history=reading.history,
        alerts=alert_rows(reading.events, limit=60),
        commands=command_rows(reading.commands),
        open_orders=tuple(order_row(o) for o in reading.open_orders),
        valuation=valuation,
        notes=tuple(notes),
    )


def _balances(
    reading: Reading,
    valuation: AccountValuation | None,
    marks: Mapping[str, Decimal],
    settings: Settings,
) -> BalancesView:
    stables = settings.stablecoins
    if valuation is not None and valuation.balances:
        prices = {**usd_prices(marks, stables), **valuation.prices_usd}
        return balances_view(
            valuation.balances, prices, stables, reading.limits, "engine", valuation.at
        )
    return balances_view(
        reading.stored_balances, usd_prices(marks, stables), stables, reading.limits,
        "store (last reconciliation)", None,
    )  # fmt: skip
