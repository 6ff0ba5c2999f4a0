"""Reconciliation: make the store agree with the exchange, or halt trading with the reason.

Runs on every start and on demand. It finishes orders whose outcome was unknown, adopts
orders the store lost track of, records fills it missed and refreshes balances. It never sends
an order. If it cannot finish, it fails closed: the `trading_halt` control is set (seen by
every process sharing the store) and trading stays halted until a reconciliation succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradelib.domain import Balance, Order, OrderStatus, StrategyId
from tradelib.errors import ExchangeError, ReconciliationError, StoreError, TradelibError
from tradelib.logs import get_logger
from tradelib.orders.executor import OrderExecutor

if TYPE_CHECKING:
    from tradelib.store import Store

log = get_logger(__name__)

HALT_CONTROL = "trading_halt"
ADOPTED_STRATEGY = StrategyId("adopted")


@dataclass
class ReconcileReport:
    """What reconciliation changed, for the log, the events table and the dashboard."""

    resolved: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    fills_recorded: int = 0
    balances: int = 0

    def as_json(self) -> dict[str, Any]:
        """The report as an event payload."""
        return {
            "resolved": self.resolved,
            "expired": self.expired,
            "rejected": self.rejected,
            "adopted": self.adopted,
            "fills_recorded": self.fills_recorded,
            "balances": self.balances,
        }


def halt_reason(store: Store) -> str | None:
    """Why trading is halted, or None when it is not."""
    return halt_from(store.get_control(HALT_CONTROL))


def halt_from(value: dict[str, Any] | None) -> str | None:
    """Why trading is halted, from the stored HALT_CONTROL value (None: not halted)."""
    if value and value.get("halted"):
        return str(value.get("reason", "halted"))
    return None


def set_halt(store: Store, reason: str | None, at: datetime, by: str) -> None:
    """Halt trading with `reason`, or lift the halt when `reason` is None."""
    store.set_control(HALT_CONTROL, {"halted": reason is not None, "reason": reason}, at, by)


class Reconciler:
    """Compares store and exchange for one (exchange, mode) and repairs the store."""

    def __init__(self, executor: OrderExecutor, symbols: Callable[[], Iterable[str]]) -> None:
        self.executor = executor
        self.store = executor.store
        self.exchange = executor.exchange
        self.symbols = symbols

    async def run(self) -> ReconcileReport:
        """Reconcile everything; on failure halt trading and raise ReconciliationError."""
        now = self.executor.clock()
        report = ReconcileReport()
        try:
            await self._orders(report)
            await self._adopt(report)
            await self._balances(report)
        except (TradelibError, AssertionError) as exc:
            reason = f"reconciliation failed: {exc}"
            set_halt(self.store, reason, now, "reconciler")
            self.store.append_event("reconcile_failed", {"error": str(exc)}, now, "reconciler")
            log.error("reconciliation failed: trading halted", error=str(exc))
            raise ReconciliationError(
                f"{reason}. Trading stays halted; fix the cause and run `tradelib reconcile`"
            ) from exc
        set_halt(self.store, None, now, "reconciler")
        self.store.append_event("reconciled", report.as_json(), now, "reconciler")
        return report

    def _open_in_store(self) -> list[Order]:
        live = [s for s in OrderStatus if not s.is_terminal]
        return self.store.list_orders(
            statuses=live, mode=self.executor.mode, exchange=self.executor.exchange_id
        )

    async def _orders(self, report: ReconcileReport) -> None:
        for order in self._open_in_store():
            before = (order.status, order.filled_quantity)
            fills_before = len(self.store.list_fills(client_order_id=order.client_order_id))
            try:
                after = await self.executor.sync(order.client_order_id)
            except ExchangeError as exc:
                raise ReconciliationError(
                    f"order {order.client_order_id} ({order.symbol}, {order.status}) could not "
                    f"be resolved: {exc}"
                ) from exc
            fills_after = len(self.store.list_fills(client_order_id=order.client_order_id))
            report.fills_recorded += fills_after - fills_before
            if after.status is OrderStatus.EXPIRED and before[0] is OrderStatus.PENDING:
                report.expired.append(order.client_order_id)
            elif after.status is OrderStatus.REJECTED and before[0] is OrderStatus.PENDING:
                report.rejected.append(order.client_order_id)
            elif (after.status, after.filled_quantity) != before:
                report.resolved.append(order.client_order_id)

    async def _adopt(self, report: ReconcileReport) -> None:
        """Orders open on the exchange that the store never saw (placed by hand, lost rows)."""
        # Per symbol: Binance charges 80 weight for the all-symbols query, 6 for one symbol.
        # A symbol the venue does not list has no open orders there (a mistyped one, say).
        listed = await self.exchange.load_markets()
        symbols = sorted(s for s in set(self.symbols()) if s in listed)
        remote = [o for s in symbols for o in await self.exchange.fetch_open_orders(s)]
        for order in remote:
            if self.store.get_order(order.client_order_id) is not None:
                continue
            self.store.ensure_strategy(ADOPTED_STRATEGY, {}, "orders found on the exchange")
            adopted = replace(
                order,
                strategy_id=ADOPTED_STRATEGY,
                mode=self.executor.mode,
                exchange=self.executor.exchange_id,
                status=OrderStatus.PENDING,
                filled_quantity=Decimal(0),
                average_price=None,
                fee=Decimal(0),
                reason="adopted by reconciliation",
            )
            try:
                with self.store.transaction():
                    self.store.insert_order(adopted, intent={"adopted": True})
                    self.store.append_event(
                        "order_adopted",
                        {"client_order_id": order.client_order_id, "symbol": order.symbol},
                        self.executor.clock(),
                        "reconciler",
                    )
            except StoreError as exc:
                raise ReconciliationError(f"cannot adopt {order.client_order_id}: {exc}") from exc
            await self.executor.absorb(order)
            report.adopted.append(order.client_order_id)

    async def _balances(self, report: ReconcileReport) -> None:
        report.balances = await self.sync_balances()

    async def sync_balances(self) -> int:
        """Write the exchange's balances to the store; returns how many assets it reported."""
        balances = await self.exchange.fetch_balances()
        mode, venue = self.executor.mode, self.executor.exchange_id
        stored = self.store.list_balances(mode, exchange=venue)
        with self.store.transaction():
            for balance in balances.values():
                self.store.upsert_balance(balance, mode)
            # Exchanges leave empty assets out of their answer: an asset the store still holds
            # but the exchange no longer lists is zero now, not unchanged.
            for asset in stored.keys() - balances.keys():
                self.store.upsert_balance(Balance(venue, asset, Decimal(0)), mode)
        return len(balances)
