"""`PositionManager`: the pure ledger, kept in step with the store.

Positions are rebuilt on start by replaying the stored fills through the ledger (exact, and
the same arithmetic that produced them), then the exit levels that moved since entry
(trailing stop, high-water mark) are restored from `live_positions`. Every fill updates the
position row inside the fill's own transaction (see `OrderExecutor.apply`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradelib.domain import Fill, Mode, Order, Position, PositionStatus
from tradelib.logs import get_logger
from tradelib.position.exits import ExitDecision, ExitRules, step_exits
from tradelib.position.ledger import FillResult, PositionKey, PositionLedger

if TYPE_CHECKING:
    from tradelib.store import Store

log = get_logger(__name__)


class PositionManager:
    """Positions of one (mode, exchange), persisted on every change."""

    def __init__(
        self,
        store: Store,
        *,
        mode: Mode,
        exchange_id: str,
        exit_rules: ExitRules,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.mode = mode
        self.exchange_id = exchange_id
        self.exit_rules = exit_rules
        self.clock = clock
        self.ledger = PositionLedger(mode=mode, exit_rules=exit_rules)
        self.events: list[tuple[str, Position]] = []

    def rebuild(self) -> list[Position]:
        """Replay every stored fill, restore moved exit levels; returns the open positions."""
        self.ledger = PositionLedger(mode=self.mode, exit_rules=self.exit_rules)
        orders = {
            o.client_order_id: o
            for o in self.store.list_orders(mode=self.mode, exchange=self.exchange_id)
        }
        for fill in self.store.list_fills(mode=self.mode, exchange=self.exchange_id):
            order = orders.get(fill.client_order_id)
            if order is None:
                log.warning("fill of an unknown order skipped", trade_id=fill.trade_id)
                continue
            self._apply(order, fill)
        stored = {
            PositionKey(p.strategy_id, p.exchange, p.symbol): p
            for p in self.store.list_positions(self.mode, exchange=self.exchange_id)
        }
        for key, holding in self.ledger.holdings().items():
            saved = stored.get(key)
            if saved is None or holding.position.quantity == 0:
                continue
            if saved.quantity == holding.position.quantity:
                self.ledger.replace_position(
                    _with_levels(holding.position, saved)  # levels moved after the last fill
                )
        self.events.clear()
        return self.ledger.open_positions()

    def _apply(self, order: Order, fill: Fill) -> FillResult:
        return self.ledger.apply(
            fill,
            order.strategy_id,
            self.exchange_id,
            entry_target=None if order.reduce_only else order.quantity,
            stop_price=order.stop_price,
        )

    def on_fill(self, order: Order, fill: Fill) -> None:
        """FillHandler for the executor: apply and persist, inside the fill's transaction."""
        result = self._apply(order, fill)
        if result.duplicate:
            return
        at = self.clock()
        if result.closed is not None:
            self.store.upsert_position(result.closed, at=at)
            self.events.append(("position_closed", result.closed))
        position = result.holding.position
        if position.quantity > 0 or result.closed is None:
            self.store.upsert_position(position, current_price=fill.price, at=at)
        if result.opened:
            self.events.append(("position_opened", position))

    def positions(self) -> list[Position]:
        """Open positions, oldest first."""
        return self.ledger.open_positions()

    def mark(self, symbol: str, price: Decimal, now: datetime) -> list[ExitDecision]:
        """Feed a price: move trailing stops and high-water marks, return the exits it triggers."""
        decisions: list[ExitDecision] = []
        for position in self.ledger.open_positions():
            if position.symbol != symbol:
                continue
            moved, decision = step_exits(position, price, now, self.exit_rules)
            if moved != position:
                self.ledger.replace_position(moved)
                self.store.upsert_position(moved, current_price=price, at=now)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def drain_events(self) -> list[tuple[str, Position]]:
        """Position opened/closed events since the last call (for alerts)."""
        events, self.events = self.events, []
        return events


def _with_levels(position: Position, saved: Position) -> Position:
    if position.status is PositionStatus.CLOSED:
        return position
    return replace(
        position,
        stop_loss=saved.stop_loss or position.stop_loss,
        take_profit=saved.take_profit or position.take_profit,
        trailing_stop=saved.trailing_stop,
        high_water=saved.high_water,
    )
