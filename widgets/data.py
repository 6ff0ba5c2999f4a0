"""The dashboard's queries: one `Snapshot` of an exchange account read from the store.

This is the only module of the dashboard that reads the store. It runs on a worker thread
(never the kernel's), and everything it returns is a plain value from `widgets.model`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from tradelib.config import RiskSettings, Settings
from tradelib.domain import Mode, Position
from tradelib.errors import ConfigError, DataError
from tradelib.operations import effective_limits, limits_key, mode_request, pause_state
from tradelib.operations.valuation import AccountValuation
from tradelib.orders.reconcile import halt_reason
from tradelib.risk import BreakerState, KillSwitchState
from tradelib.risk.control import BREAKERS_CONTROL, KILL_CONTROL
from tradelib.store import HeartbeatRecord, Liveness, Store
from widgets.aggregate import (
    FEED_KINDS,
    OPEN_STATUSES,
    alert_rows,
    balances_view,
    command_rows,
    daily_closes,
    engine_view,
    equity_points,
    history_page,
    order_row,
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
    HistoryView,
    Snapshot,
    StatusView,
)

DEFAULT_STALE_AFTER = 30.0  # seconds without a beat before an engine counts as stale


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


def choose_mode(beats: Sequence[EngineView], fallback: Mode) -> Mode:
    """The mode the account trades in: an alive engine's (LIVE first), else the last one's."""
    alive = [b for b in beats if b.liveness is Liveness.ALIVE]
    if alive:
        return Mode.LIVE if any(b.mode is Mode.LIVE for b in alive) else alive[0].mode
    if beats:
        return max(beats, key=lambda b: b.beat_at).mode
    return fallback


def _engine_clock(
    valuation: AccountValuation | None, beat: HeartbeatRecord | None, now: datetime
) -> datetime:
    """`now` on the engine's clock: its last valuation time plus the wall time since then.

    A replay runs on the data's clock; ages of its positions are measured on that clock.
    """
    if valuation is None or beat is None:
        return now
    published = beat.last_cycle_at or beat.beat_at
    return valuation.at + max(now - published, timedelta(0))


class DashboardSource:
    """Reads snapshots of one exchange account (its mode follows the running engine)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        exchange: str | None = None,
        mode: Mode | None = None,
        strategy: str | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
    ) -> None:
        self.store = store
        self.settings = settings
        self.exchange = exchange or settings.exchange.id
        self.fixed_mode = mode
        self.strategy = strategy
        self.stale_after = stale_after

    def read(self, wanted: HistoryFilter, samples: SampleBook, now: datetime) -> Snapshot:
        """One consistent view of the account at `now` (wall clock) plus the wanted history."""
        store, notes = self.store, []
        beats = [b for b in store.list_heartbeats() if b.exchange == self.exchange]
        engines = tuple(engine_view(b, now, self._stale_after(b)) for b in beats)
        mode = self.fixed_mode or choose_mode(engines, self.settings.mode)
        engine = next((e for e in engines if e.mode is mode), None)
        beat = next((b for b in beats if b.mode is mode), None)
        strategy = self.strategy or (beat.strategy if beat else None)
        account = Account(self.exchange, mode, strategy)

        valuation = None
        if beat is not None:
            try:
                valuation = AccountValuation.from_detail(beat.detail)
            except DataError as exc:
                notes.append(str(exc))
        samples.add(valuation)
        limits, limit_note = self._limits(mode)
        if limit_note:
            notes.append(limit_note)
        status = self._status(account, engine, engines, limits)

        clock = _engine_clock(valuation, beat, now)
        marks = dict(valuation.marks) if valuation else {}
        records = store.list_position_records(mode, exchange=self.exchange)
        positions = position_rows(records, marks, clock)
        for record in records:  # the store's last price where the engine published none
            if record.current_price is not None:
                marks.setdefault(record.position.symbol, record.current_price)

        state = store.load_execution_state(strategy, mode) if strategy else None
        metrics = strategy_metrics(state, valuation, self.settings.targets, limits)
        balances = self._balances(mode, valuation, marks, limits)
        cycles = [
            e
            for e in store.list_events(kind="cycle", limit=500)
            if e.payload.get("exchange", self.exchange) == self.exchange
            and e.payload.get("mode", mode.value) == mode.value
        ]
        points = equity_points(cycles, samples.points(), daily_closes(state))
        events = [
            *store.list_events(kind="alert", limit=60),
            *(e for e in store.list_events(limit=300) if e.kind in FEED_KINDS),
        ]
        open_orders = tuple(
            order_row(o)
            for o in store.list_orders(statuses=OPEN_STATUSES, mode=mode, exchange=self.exchange)
        )
        return Snapshot(
            at=now,
            status=status,
            positions=positions,
            metrics=metrics,
            balances=balances,
            pnl=pnl_view(points, valuation, limits),
            history=self._history(wanted),
            alerts=alert_rows(events, limit=60),
            commands=command_rows(store.list_commands(mode, self.exchange, limit=8)),
            open_orders=open_orders,
            valuation=valuation,
            notes=tuple(notes),
        )

    def _stale_after(self, beat: HeartbeatRecord) -> float:
        every = beat.detail.get("beat_every_s")
        try:
            return (
                max(self.stale_after, 3 * float(every)) if every is not None else self.stale_after
            )
        except (TypeError, ValueError):
            return self.stale_after

    def _limits(self, mode: Mode) -> tuple[RiskSettings, str | None]:
        try:
            return effective_limits(self.store, self.settings.risk, mode, self.exchange), None
        except ConfigError as exc:
            return (
                self.settings.risk,
                f"stored limit overrides are invalid, showing settings: {exc}",
            )

    def _status(
        self,
        account: Account,
        engine: EngineView | None,
        engines: tuple[EngineView, ...],
        limits: RiskSettings,
    ) -> StatusView:
        store, mode = self.store, account.mode
        kill = store.get_control(KILL_CONTROL)
        breakers = store.get_control(f"{BREAKERS_CONTROL}:{mode.value}:{self.exchange}")
        overrides = (store.get_control(limits_key(mode, self.exchange)) or {}).get("overrides")
        return StatusView(
            account=account,
            engine=engine,
            engines=engines,
            kill=KillSwitchState.from_dict(kill) if kill else KillSwitchState(),
            trips=BreakerState.from_dict(breakers).trips if breakers else (),
            halt=halt_reason(store),
            pause=pause_state(store, mode, self.exchange),
            mode_request=mode_request(store, self.exchange),
            limits=limits,
            overrides=tuple(sorted((overrides or {}).items())),
            live_capital_usd=self.settings.live_capital_usd,
        )

    def _balances(
        self,
        mode: Mode,
        valuation: AccountValuation | None,
        marks: dict[str, Decimal],
        limits: RiskSettings,
    ) -> BalancesView:
        stables = self.settings.stablecoins
        if valuation is not None and valuation.balances:
            prices = {**usd_prices(marks, stables), **valuation.prices_usd}
            return balances_view(
                valuation.balances, prices, stables, limits, "engine", valuation.at
            )
        stored = self.store.list_balances(mode, exchange=self.exchange)
        held = {a: (b.free, b.locked) for a, b in stored.items()}
        return balances_view(
            held, usd_prices(marks, stables), stables, limits, "store (last reconciliation)", None
        )

    def _history(self, wanted: HistoryFilter) -> HistoryPage:
        store = self.store
        if wanted.view is HistoryView.ORDERS:
            orders = store.list_orders(mode=wanted.mode, exchange=self.exchange)
            return history_page(orders, (), wanted)
        modes = [wanted.mode] if wanted.mode else [Mode.PAPER, Mode.LIVE]
        closed: list[Position] = []
        for mode in modes:
            closed.extend(
                p
                for p in store.list_positions(mode, include_closed=True, exchange=self.exchange)
                if p.closed_at is not None
            )
        return history_page((), closed, wanted)
