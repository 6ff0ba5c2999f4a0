"""`Engine`: strategy + risk + orders + positions + market data, one cycle at a time.

`run_once()` is one full cycle — reconcile, refresh data, evaluate exits and entries, place
orders, persist, alert — and is what a scheduled papermill run calls; `run_forever()` repeats
it as candles close and follows the exchange's order stream in between. The engine does not
know whether it trades paper or live: that is the exchange it is given.

One order path: every order, entry or exit, is an `OrderIntent` checked by the `RiskManager`
(exits against the order book's side they would take from), recorded as a "risk_decision"
event, and sent as the request that decision allows (`ExecutionRequest.from_decision`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradelib.alerts import Alert, AlertKind, AlertRouter, LogSink, MemorySink, Severity, StoreSink
from tradelib.config import Settings
from tradelib.control import KILL_CONTROL, RiskControl, enforce_kill
from tradelib.control.risk_control import kill_from
from tradelib.domain import (
    ZERO,
    ClientOrderId,
    Market,
    Mode,
    OrderStatus,
    Position,
    Side,
    Signal,
    SignalKind,
    StrategyId,
    split_symbol,
)
from tradelib.engine.candlebook import CandleBook
from tradelib.engine.performance import new_state, record_equity, record_trade
from tradelib.errors import (
    ExchangeBanned,
    ExchangeError,
    OrderRejected,
    ReconciliationError,
    RiskRejected,
    Temporary,
    TradelibError,
    UnknownSymbol,
)
from tradelib.exchange.base import Exchange
from tradelib.logs import get_logger
from tradelib.operations.steering import (
    PauseState,
    limits_from,
    limits_key,
    pause_from,
    pause_key,
)
from tradelib.operations.valuation import AccountValuation
from tradelib.orders import ExecutionRequest, OrderExecutor, Reconciler
from tradelib.orders.reconcile import HALT_CONTROL, halt_from
from tradelib.position.exits import ExitRules
from tradelib.position.manager import PositionManager
from tradelib.position.portfolio import (
    DayMark,
    PortfolioSnapshot,
    add_realised,
    build_snapshot,
    roll_day,
)
from tradelib.risk import (
    ApiError,
    ExchangeBan,
    MarketDataAge,
    Observation,
    OrderIntent,
    PortfolioObservation,
    ReferencePrice,
    RiskDecision,
    RiskManager,
    TradeClosed,
    exit_intent,
)
from tradelib.risk.killswitch import KillAction
from tradelib.risk.slippage import Level
from tradelib.strategy.base import Strategy
from tradelib.webhooks import webhook_sinks

if TYPE_CHECKING:
    from tradelib.store import Store

log = get_logger(__name__)


@dataclass
class CycleReport:
    """What one cycle saw and did, for the notebook, the run record and the logs."""

    at: datetime
    candles_added: dict[str, int] = field(default_factory=dict)
    signals: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    halted: str | None = None
    equity_usd: Decimal | None = None
    open_positions: int = 0

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {
            "at": self.at.isoformat(),
            "candles_added": self.candles_added,
            "signals": self.signals,
            "orders": self.orders,
            "rejected": self.rejected,
            "exits": self.exits,
            "halted": self.halted,
            "equity_usd": None if self.equity_usd is None else str(self.equity_usd),
            "open_positions": self.open_positions,
        }


class Engine:
    """Runs one strategy on one exchange in one mode, durably."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        exchange: Exchange,
        strategy: Strategy,
        *,
        symbols: list[str],
        clock: Callable[[], datetime],
        alerts: AlertRouter | None = None,
        history: int = 24 * 30,
    ) -> None:
        self.settings = settings
        self.store = store
        self.exchange = exchange
        self.strategy = strategy
        self.symbols = symbols
        self.clock = clock
        self.mode: Mode = settings.mode
        self.exchange_id = exchange.id
        self.memory = MemorySink()
        self.alerts = alerts or AlertRouter(
            [LogSink(), self.memory, StoreSink(store.append_event), *webhook_sinks(settings.alerts)]
        )
        self.candles = CandleBook(symbols, strategy.timeframe, window=history)
        self.positions = PositionManager(
            store,
            mode=self.mode,
            exchange_id=self.exchange_id,
            exit_rules=ExitRules.from_settings(settings.risk),
            clock=clock,
        )
        self.control = RiskControl(
            store, settings, mode=self.mode, exchange_id=self.exchange_id, clock=clock,
            alerts=self.alerts,
        )  # fmt: skip
        self.executor = OrderExecutor(
            store,
            exchange,
            exchange_id=self.exchange_id,
            mode=self.mode,
            clock=clock,
            on_fill=self.positions.on_fill,
            guard=self.control.guard,
        )
        self.risk = RiskManager(settings.risk, self.mode, settings.live_capital_usd)
        self.reconciler = Reconciler(self.executor, lambda: self.symbols)
        self.markets: dict[str, Market] = {}
        self.base_risk = settings.risk  # overrides from other processes apply on top
        self.paused: PauseState = PauseState()
        self.hold: PauseState | None = None  # entries held by the process running the engine
        self.valuation: AccountValuation | None = None  # the last snapshot, for the heartbeat
        self._started = False
        self._open: set[str] = set()
        self._day: DayMark | None = None
        store.ensure_strategy(strategy.strategy_id, _jsonable(strategy.params))
        self.state = store.load_execution_state(strategy.strategy_id, self.mode) or new_state(
            strategy.strategy_id, self.mode
        )

    # -- the cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load markets, rebuild positions from the store and reconcile (fail closed)."""
        self.markets = await self.exchange.load_markets()
        unknown = [s for s in self.symbols if s not in self.markets]
        if unknown:
            raise ExchangeError(f"{self.exchange_id} does not list {unknown}")
        self.positions.rebuild()
        await self.reconciler.run()
        live = [s for s in OrderStatus if not s.is_terminal]
        self._open = {
            o.client_order_id
            for o in self.store.list_orders(
                statuses=live, mode=self.mode, exchange=self.exchange_id
            )
        }
        self._started = True

    async def run_once(self) -> CycleReport:
        """One full cycle; trading errors become report entries, never half-done state."""
        now = self.clock()
        report = CycleReport(at=now)
        try:
            started = self._started
            if not started:
                await self.start()
            # Kill switch, halt, pause and limits in one read of the store: every cycle still
            # sees what any process set, for a fraction of one round trip per control.
            controls = self._controls()
            if started and halt_from(controls.get(HALT_CONTROL)):
                await self.reconciler.run()  # a successful reconciliation lifts the halt
                controls = self._controls()
        except (ReconciliationError, ExchangeError) as exc:
            report.halted = str(exc)
            self._alert(AlertKind.RECONCILIATION, Severity.CRITICAL, str(exc), now)
            return report
        if kill_from(controls.get(KILL_CONTROL)).engaged:
            report.halted = "kill switch engaged"
            actions = await self.enforce_kill_switch()
            report.orders.extend(f"kill switch: {action.reason}" for action in actions)
            return report
        self.apply_steering(controls)
        try:
            report.candles_added = await self.candles.refresh(self.exchange, now)
            await self._sync_open_orders()
            await self._exits(now, report)
            await self._signals(now, report)
            snapshot = await self._snapshot(now)
        except ExchangeBanned as exc:
            self.control.observe(ExchangeBan(str(exc)), now)
            report.halted = str(exc)
            return report
        except Temporary as exc:
            self.control.observe(ApiError(str(exc)), now)
            report.halted = f"exchange unavailable: {exc}"
            return report
        except TradelibError as exc:
            # Bad data or a refused write: stop this cycle, say why; the next one starts clean.
            report.halted = f"cycle stopped: {exc}"
            self._alert(AlertKind.EXCHANGE_ERROR, Severity.WARNING, report.halted, now)
            return report
        self._position_alerts()
        self._observe(snapshot, now)
        report.equity_usd = snapshot.equity_usd
        report.open_positions = snapshot.open_positions
        if report.signals or report.orders or report.exits or report.rejected:
            # Quiet cycles leave no row: an hourly engine would otherwise write 8,760 a year
            # that say nothing; the execution state still records the last run.
            self.store.append_event("cycle", report.as_json(), now, source="engine")
        self._persist(now, changed=bool(report.orders or report.exits))
        return report

    async def run_forever(self, stop: asyncio.Event, interval: timedelta | None = None) -> None:
        """Run cycles until `stop` is set, following the order stream in between."""
        period = (interval or self.candles.bar).total_seconds()
        follower = asyncio.create_task(self.executor.follow())
        try:
            while not stop.is_set():
                await self.run_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=period)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower

    def apply_steering(self, controls: dict[str, dict[str, Any]] | None = None) -> None:
        """Apply the account's pause switch and limit overrides (set from any process), read
        now or taken from `controls` (every control by key, read this cycle)."""
        if controls is None:
            controls = self._controls()
        limits = limits_from(self.base_risk, controls.get(limits_key(self.mode, self.exchange_id)))
        if limits != self.settings.risk:
            self.settings = self.settings.model_copy(update={"risk": limits})
            self.risk = RiskManager(limits, self.mode, self.settings.live_capital_usd)
            self.control.settings = self.settings
            rules = ExitRules.from_settings(limits)  # new positions; open ones keep their levels
            self.positions.exit_rules = self.positions.ledger.exit_rules = rules
        self.paused = self.hold or pause_from(controls.get(pause_key(self.mode, self.exchange_id)))

    def _controls(self) -> dict[str, dict[str, Any]]:
        """Every control in the store now (kill switch, halt, breakers, steering), by key."""
        return {record.key: record.value for record in self.store.list_controls()}

    async def enforce_kill_switch(self) -> list[KillAction]:
        """While the kill switch is engaged: cancel this account's orders (and flatten)."""
        return await enforce_kill(
            self.control, self.executor, self.exchange, self.positions.positions(), self.symbols
        )

    async def close_position(self, symbol: str, tag: str, reason: str) -> CycleReport:
        """Close this strategy's `symbol` position now, through risk like any exit (a person's
        command); `tag` starts the order's intent key."""
        now = self.clock()
        report = CycleReport(at=now)
        held = self._position(symbol)
        if held is not None:
            price = self.candles.last_close(symbol)
            intent = OrderIntent(
                StrategyId(self.strategy.strategy_id), symbol, held.side.opposite,
                SignalKind.EXIT, reference_price=_dec(price) if price else None,
                exchange=self.exchange_id, reason=reason,
            )  # fmt: skip
            await self._close(intent, tag, now, report)
        return report

    def flush_events(self) -> None:
        """Record and alert positions opened or closed since the last cycle (between cycles)."""
        before = self.state
        self._position_alerts()
        if self.state is not before:  # a trade closed: its statistics must survive a crash
            self.store.save_execution_state(self.state)

    # -- steps ------------------------------------------------------------------------------

    def fresh_at(self, symbol: str, now: datetime) -> datetime | None:
        """When `symbol`'s candles were last known complete, for staleness checks.

        Candles arrive once per bar: holding the newest candle that can have closed by `now`
        means the data is current (fresh at `now`); otherwise it has been stale since the
        moment the next candle was due.
        """
        closed_at = self.candles.last_update.get(symbol)
        if closed_at is None or closed_at > now:  # ahead of the clock: the checks refuse it
            return closed_at
        due = closed_at + self.candles.bar
        return now if now < due else due

    def open_orders(self) -> set[str]:
        """Client order ids this engine has not seen reach a final state."""
        return set(self._open)

    async def _sync_open_orders(self) -> None:
        for coid in sorted(self._open):
            order = await self.executor.sync(ClientOrderId(coid))
            if order.status.is_terminal:
                self._open.discard(coid)

    async def _exits(self, now: datetime, report: CycleReport) -> None:
        for symbol in self.symbols:
            price = self.candles.last_close(symbol)
            if price is None:
                continue
            for decision in self.positions.mark(symbol, _dec(price), now):
                report.exits.append(decision.explanation)
                tag = f"exit:{decision.reason}"
                await self._close(exit_intent(decision), tag, now, report)

    async def _signals(self, now: datetime, report: CycleReport) -> None:
        signals: list[Signal] = []
        for symbol in self.symbols:
            frame = self.candles.frame(symbol)
            if not frame.empty:
                signals.extend(self.strategy.on_candle(symbol, frame, now))
        signals.extend(self.strategy.on_timer(now))
        for signal in signals:
            report.signals.append(f"{signal.kind} {signal.side} {signal.symbol}: {signal.reason}")
            if signal.kind is SignalKind.EXIT:
                held = self._position(signal.symbol)
                if held is not None and held.side is not signal.side:
                    intent = OrderIntent(
                        StrategyId(self.strategy.strategy_id), signal.symbol, signal.side,
                        SignalKind.EXIT, reference_price=signal.reference_price,
                        exchange=self.exchange_id, reason=signal.reason,
                    )  # fmt: skip
                    await self._close(intent, "signal-exit", now, report)
            else:
                await self._enter(signal, now, report)

    async def _enter(self, signal: Signal, now: datetime, report: CycleReport) -> None:
        if self._position(signal.symbol) is not None:
            return  # one position per symbol and strategy
        if self.paused.paused:
            report.rejected.append(f"{signal.symbol}: entries paused by {self.paused.by}: "
                                   f"{self.paused.reason}")  # fmt: skip
            return
        if signal.side is Side.SELL:
            report.rejected.append(
                f"{signal.symbol}: short entries need a venue that can short (perpetual "
                f"futures); {self.exchange_id} spot cannot — use the strategy's spot variant"
            )
            return
        price = signal.reference_price or _dec(self.candles.last_close(signal.symbol) or 0)
        snapshot = await self._snapshot(now)
        equity = self.risk.limit_equity(snapshot)
        intent = OrderIntent(
            strategy_id=StrategyId(self.strategy.strategy_id),
            symbol=signal.symbol,
            side=signal.side,
            kind=SignalKind.ENTRY,
            notional=equity * self.settings.risk.max_position_pct / 100,
            reference_price=price,
            exchange=self.exchange_id,
            reason=signal.reason,
        )
        decision = self._check(intent, snapshot, price, now)
        if decision.approved:
            key = f"entry:{signal.symbol}:{signal.at.isoformat()}"
            await self._submit(ExecutionRequest.from_decision(decision, key), report)
        else:
            report.rejected.append(f"{signal.symbol}: " + "; ".join(decision.reasons))

    async def _close(
        self, intent: OrderIntent, tag: str, now: datetime, report: CycleReport
    ) -> None:
        """Exit through risk: capped at the position, held to the band against the book."""
        symbol = intent.symbol
        held = self._position(symbol)
        if held is None:
            return
        price = _dec(self.candles.last_close(symbol) or 0)
        book = await self._book_side(symbol, intent.side)
        decision = self._check(intent, await self._snapshot(now), price, now, book)
        if not decision.approved:
            # Refused (the book would fill it outside the band, or below the market minimum):
            # the position stays open and its levels keep triggering until an exit fits.
            report.rejected.append(f"{symbol} exit: " + "; ".join(decision.reasons))
            return
        # The held quantity is part of the key: after a partial or reduced exit fills, the rest
        # gets a new order; a restart with nothing filled finds the order it already wrote.
        key = f"{tag}:{symbol}:{held.opened_at.isoformat()}:{held.quantity.normalize():f}"
        await self._submit(ExecutionRequest.from_decision(decision, key), report)

    def _check(
        self,
        intent: OrderIntent,
        snapshot: PortfolioSnapshot,
        price: Decimal,
        now: datetime,
        book: list[Level] | None = None,
    ) -> RiskDecision:
        """The risk manager's decision on `intent`, recorded as a "risk_decision" event."""
        seen = self.fresh_at(intent.symbol, now) or now
        decision = self.risk.check(
            intent, snapshot, self.markets[intent.symbol], now, ReferencePrice(price, seen),
            self.control.breaker_state(), self.control.kill_state(), book=book,
        )  # fmt: skip
        self.store.append_event("risk_decision", decision.as_json(), now, source="risk")
        return decision

    async def _book_side(self, symbol: str, side: Side) -> list[Level] | None:
        """The book levels an order on `side` would take, best first; None if unreadable."""
        try:
            book = await self.exchange.fetch_order_book(symbol)
        except ExchangeBanned:
            raise
        except ExchangeError as exc:
            # An exit must not wait for a book: without one the IOC limit alone bounds it.
            log.warning("order book unavailable for an exit", symbol=symbol, error=str(exc))
            return None
        return book.asks if side is Side.BUY else book.bids

    async def _submit(self, request: ExecutionRequest, report: CycleReport) -> None:
        try:
            order = await self.executor.submit(request)
        except RiskRejected as exc:
            report.rejected.append(f"{request.symbol}: {exc}")
            return
        except (OrderRejected, UnknownSymbol) as exc:
            # Refused before it was written, or given up after repeated refusals: this order
            # only — the cycle goes on for every other symbol.
            report.rejected.append(f"{request.symbol}: {exc}")
            self._alert(AlertKind.ORDER_FAILED, Severity.WARNING, str(exc), self.clock())
            return
        report.orders.append(f"{order.side} {order.quantity} {order.symbol} -> {order.status}")
        if not order.status.is_terminal:
            self._open.add(order.client_order_id)
        if order.status is OrderStatus.REJECTED:
            text = f"order {order.client_order_id} rejected: {order.reason}"
            self._alert(AlertKind.ORDER_FAILED, Severity.WARNING, text, self.clock())
        self._position_alerts()

    # -- portfolio, breakers, persistence ---------------------------------------------------

    async def _snapshot(self, now: datetime) -> PortfolioSnapshot:
        balances = list((await self.exchange.fetch_balances()).values())
        marks: dict[str, Decimal] = {}
        prices_usd: dict[str, Decimal] = {}
        for symbol in self.symbols:
            close = self.candles.last_close(symbol)
            if close is not None:
                marks[symbol] = _dec(close)
                prices_usd[split_symbol(symbol)[0]] = _dec(close)
        positions = self.positions.positions()
        unrealised = sum(
            (p.unrealized_pnl(marks[p.symbol]) for p in positions if p.symbol in marks), ZERO
        )
        # A new UTC day starts at this cycle's equity, known only once the snapshot is built.
        day = roll_day(self._day, now, ZERO, unrealised)
        snapshot = build_snapshot(
            positions, balances, marks, prices_usd, day, self.state.peak_equity or ZERO, now,
            self.settings.quote_currency, self.settings.stablecoins,
        )  # fmt: skip
        if day is not self._day:
            day = replace(day, start_equity=snapshot.equity_usd)
            snapshot = replace(snapshot, day=day)
        self._day = day
        self.valuation = AccountValuation.from_snapshot(snapshot, balances, marks, prices_usd)
        return snapshot

    def _observe(self, snapshot: PortfolioSnapshot, now: datetime) -> None:
        start = self._day.start_equity if self._day else snapshot.equity_usd
        observations: list[Observation] = [
            PortfolioObservation(snapshot.equity_usd, snapshot.equity_usd - start, start)
        ]
        for symbol in self.symbols:
            seen = self.fresh_at(symbol, now)
            if seen is not None:
                observations.append(MarketDataAge(symbol, seen))
        self.control.observe_all(observations, now)  # one transaction for the cycle's readings
        self.state = record_equity(self.state, snapshot.equity_usd, now)

    def _position_alerts(self) -> None:
        now = self.clock()
        for kind, position in self.positions.drain_events():
            if kind == "position_closed":
                self.state = record_trade(self.state, position.realized_pnl)
                if self._day is not None and self._day.day == now.date():
                    self._day = add_realised(self._day, position.realized_pnl, now)
                self.control.observe(TradeClosed(position.realized_pnl, position.symbol), now)
                text = (f"closed {position.symbol}: realised {position.realized_pnl:.2f} "
                        f"{self.settings.quote_currency}")  # fmt: skip
                self._alert(AlertKind.POSITION_CLOSED, Severity.INFO, text, now)
            else:
                text = (f"opened {position.side} {position.quantity} {position.symbol} "
                        f"@ {position.average_entry}")  # fmt: skip
                self._alert(AlertKind.POSITION_OPENED, Severity.INFO, text, now)

    def _persist(self, now: datetime, changed: bool) -> None:
        previous = self.state.last_execution
        self.state = replace(self.state, is_running=True, last_execution=now, updated_at=now)
        if changed or previous is None or previous.date() != now.date():
            self.store.save_execution_state(self.state)

    def _position(self, symbol: str) -> Position | None:
        for position in self.positions.positions():
            if position.symbol == symbol and position.strategy_id == self.strategy.strategy_id:
                return position
        return None

    def _alert(self, kind: AlertKind, severity: Severity, text: str, at: datetime) -> None:
        self.alerts.emit(Alert(kind, severity, text, at))


def _dec(value: float | int) -> Decimal:
    return Decimal(repr(float(value)))


def _jsonable(params: Any) -> dict[str, Any]:
    if hasattr(params, "to_dict"):
        return dict(params.to_dict())
    return dict(params or {})
