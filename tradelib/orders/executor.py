"""`OrderExecutor`: write the order, then send it, then move it only forward.

The order row (status pending, deterministic client order id, the intent beside it) is
committed before anything leaves the process, so a crash at any instruction leaves either no
order (nothing was decided) or a pending row that reconciliation resolves by its client order
id. Fills are the source of truth for quantities and prices: each is recorded once, applied
to the order and handed to the position manager in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from tradelib.domain import (
    ClientOrderId,
    Fill,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Side,
    client_order_id,
    round_down,
    round_up,
)
from tradelib.errors import (
    AuthenticationError,
    DuplicateOrder,
    ExchangeBanned,
    InvalidOrder,
    OrderNotFound,
    OrderRejected,
    StoreError,
    Temporary,
    UnknownSymbol,
)
from tradelib.exchange.base import Exchange, OrderRequest, OrderUpdate
from tradelib.exchange.matching import filter_failure
from tradelib.logs import get_logger
from tradelib.orders.request import ExecutionRequest

if TYPE_CHECKING:
    from tradelib.store import Store

log = get_logger(__name__)

MAX_ATTEMPTS = 3
MAX_UNSENT = 20
_RETRYABLE = frozenset({OrderStatus.REJECTED, OrderStatus.EXPIRED})


class FillHandler(Protocol):
    """Called inside the fill's store transaction (the position manager)."""

    def __call__(self, order: Order, fill: Fill) -> None:
        """Apply `fill` of `order` to positions; raising rolls the fill back."""
        ...


class OrderExecutor:
    """Turns approved requests into exchange orders, durably and exactly once."""

    def __init__(
        self,
        store: Store,
        exchange: Exchange,
        *,
        exchange_id: str,
        mode: Mode,
        clock: Callable[[], datetime],
        on_fill: FillHandler | None = None,
        guard: Callable[[ExecutionRequest], None] | None = None,
    ) -> None:
        self.store = store
        self.exchange = exchange
        self.exchange_id = exchange_id
        self.mode = mode
        self.clock = clock
        self.on_fill = on_fill
        self.guard = guard

    # -- submitting -------------------------------------------------------------------------

    async def submit(self, request: ExecutionRequest) -> Order:
        """Write and send one order; an intent already written is never sent again.

        Nothing is written for a request the venue can never take (an unknown symbol, a
        quantity or price its rules refuse): a pending row for it would be an order nobody
        can resolve, and reconciliation would halt trading on it.
        """
        if self.guard is not None:
            self.guard(request)  # kill switch / risk: raises before anything is written
        await self._check_market(request)
        order, fresh = self._claim(request)
        if not fresh:
            log.info("intent already has an order", coid=order.client_order_id, status=order.status)
            return order
        return await self._send(order, request)

    async def _check_market(self, request: ExecutionRequest) -> None:
        """UnknownSymbol or InvalidOrder when `request` breaks the venue's listing or rules."""
        markets = await self.exchange.load_markets()
        market = markets.get(request.symbol)
        if market is None:
            sample = ", ".join(sorted(markets)[:6])
            raise UnknownSymbol(
                f"{request.symbol!r} is not listed on {self.exchange_id} (e.g. {sample}): "
                f"intent {request.intent_key} was not written or sent; fix the symbol"
            )
        if request.type is OrderType.MARKET:
            # A market order's notional is checked by the venue at the price it meets.
            market = replace(market, min_notional=Decimal(0))
        price = request.price
        if price is not None:
            toward_passive = round_down if request.side is Side.BUY else round_up
            price = toward_passive(price, market.price_tick)
        quantity = round_down(request.quantity, market.amount_step)
        failure = filter_failure(market, request.side, request.type, quantity, price, price)
        if failure is not None:
            raise InvalidOrder(
                f"{request.symbol} intent {request.intent_key} refused before it was written "
                f"({failure.filter}): {failure.message} (asked quantity {request.quantity}, "
                f"price {request.price})"
            )

    def _claim(self, request: ExecutionRequest) -> tuple[Order, bool]:
        """The order for this intent: an existing live one, or a new pending row.

        Attempts the exchange refused count against MAX_ATTEMPTS (the same refusal would
        follow); attempts it never saw — written, then the process died before sending —
        moved no money and are retried, up to MAX_UNSENT so a crash loop cannot spin forever.
        """
        refused = unsent = 0
        attempt = 0
        while refused < MAX_ATTEMPTS and unsent < MAX_UNSENT:
            # Mode and venue are part of the identity: the same decision in paper and in live
            # (or on two venues) are two different orders.
            scope = f"{self.mode.value}/{self.exchange_id}/{request.intent_key}"
            coid = client_order_id(request.strategy_id, request.symbol, scope, attempt)
            existing = self.store.get_order(coid)
            if existing is None:
                order = self._new_order(coid, request)
                try:
                    self.store.insert_order(order, intent=request.as_json())
                except DuplicateOrder:  # another process claimed it between get and insert
                    raced = self.store.get_order(coid)
                    assert raced is not None
                    return raced, False
                return order, True
            # Only an attempt the exchange refused or never saw (no fill) is retried under a
            # new id; a cancel was somebody's decision and stands.
            if existing.filled_quantity != 0 or existing.status not in _RETRYABLE:
                return existing, False
            if existing.status is OrderStatus.EXPIRED and existing.exchange_order_id is None:
                unsent += 1  # expired by reconciliation: the exchange never acknowledged it
            else:
                refused += 1  # rejected, or expired by the exchange (an IOC found no price)
            attempt += 1
        raise OrderRejected(
            f"{request.symbol} intent {request.intent_key}: {refused} attempt(s) refused by the "
            f"exchange and {unsent} never sent; not trying again (see the orders' reasons)"
        )

    def _new_order(self, coid: ClientOrderId, request: ExecutionRequest) -> Order:
        return Order(
            client_order_id=coid,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            quantity=request.quantity,
            price=request.price,
            created_at=self.clock(),
            time_in_force=request.time_in_force,
            strategy_id=request.strategy_id,
            exchange=self.exchange_id,
            mode=self.mode,
            reduce_only=request.reduce_only,
            reason=request.reason or None,
            stop_price=request.stop_price,
        )

    async def _send(self, order: Order, request: ExecutionRequest) -> Order:
        wire = OrderRequest(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            quantity=order.quantity,
            price=order.price,
            time_in_force=order.time_in_force,
            reduce_only=order.reduce_only,
        )
        try:
            remote = await self.exchange.create_order(wire)
        except (OrderRejected, UnknownSymbol, AuthenticationError) as exc:
            # Refused before it reached the book: no money moved, the row ends here.
            return self._finish(order.client_order_id, OrderStatus.REJECTED, str(exc))
        except ExchangeBanned:
            log.error("exchange ban: order left pending", coid=order.client_order_id)
            raise
        except Temporary as exc:
            # The answer is unknown: the row stays pending and reconciliation resolves it by
            # its client order id. Sending again here is exactly how peers double orders.
            log.warning("order outcome unknown", coid=order.client_order_id, error=str(exc))
            self.store.append_event(
                "order_outcome_unknown",
                {"client_order_id": order.client_order_id, "error": str(exc)},
                self.clock(),
                source="executor",
            )
            return order
        return await self.absorb(remote)

    # -- applying what the exchange says ----------------------------------------------------

    async def absorb(self, remote: Order, fills: Iterable[Fill] = ()) -> Order:
        """Bring the stored order in line with the exchange's view of it (and its fills)."""
        stored = self.store.get_order(remote.client_order_id)
        if stored is None:
            raise StoreError(
                f"exchange reported order {remote.client_order_id} that the store does not know; "
                "reconciliation adopts such orders"
            )
        known = list(fills)
        have = stored.filled_quantity + sum((f.quantity for f in known), Decimal(0))
        if remote.filled_quantity > have:
            known.extend(
                await self.exchange.fetch_order_fills(remote.client_order_id, remote.symbol)
            )
        return self.apply(remote, known)

    def apply(self, remote: Order, fills: Iterable[Fill]) -> Order:
        """One transaction: record new fills, apply them, then any status they do not imply."""
        coid = remote.client_order_id
        with self.store.transaction():
            order = self.store.get_order(coid, for_update=True)
            if order is None:
                raise StoreError(f"order {coid} is not in the store")
            if remote.exchange_order_id and not order.exchange_order_id:
                order = replace(order, exchange_order_id=remote.exchange_order_id)
            for fill in sorted(fills, key=lambda f: (f.timestamp, f.trade_id)):
                if fill.client_order_id != coid:
                    continue
                if not self.store.record_fill(fill, self.exchange_id, self.mode):
                    continue  # seen before: a replayed stream event or a second lookup
                order = order.apply_fill(fill)
                if self.on_fill is not None:
                    self.on_fill(order, fill)
            order = self._status_from_exchange(order, remote)
            self.store.update_order(order)
        return order

    def _status_from_exchange(self, order: Order, remote: Order) -> Order:
        now = self.clock()
        target = remote.status
        if target is OrderStatus.OPEN and order.status is OrderStatus.PENDING:
            return order.transition(OrderStatus.OPEN, now)
        # A terminal status is taken only once every fill is in: a fill arriving after a
        # cancel would otherwise have no legal place to go.
        if (
            target in (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)
            and order.filled_quantity >= remote.filled_quantity
            and order.status.can_become(target)
        ):
            return order.transition(target, now, remote.reason)
        return order

    def _finish(self, coid: ClientOrderId, status: OrderStatus, reason: str) -> Order:
        with self.store.transaction():
            order = self.store.get_order(coid, for_update=True)
            assert order is not None
            done = order.transition(status, self.clock(), reason)
            self.store.update_order(done)
            self.store.append_event(
                f"order_{status.value}",
                {"client_order_id": coid, "symbol": order.symbol, "reason": reason},
                self.clock(),
                source="executor",
            )
        log.warning("order finished without fill", coid=coid, status=status, reason=reason)
        return done

    # -- cancel, replace, sync --------------------------------------------------------------

    async def cancel(self, coid: ClientOrderId) -> Order:
        """Cancel an order and record its final state (fills before the cancel included)."""
        order = self._stored(coid)
        if order.status.is_terminal:
            return order
        try:
            remote = await self.exchange.cancel_order(coid, order.symbol)
        except OrderNotFound:
            return await self.sync(coid)
        return await self.absorb(remote)

    async def replace(
        self, coid: ClientOrderId, price: Decimal, quantity: Decimal | None = None
    ) -> Order | None:
        """Cancel `coid` and send its unfilled rest at `price`; None if nothing was left."""
        cancelled = await self.cancel(coid)
        if cancelled.status is not OrderStatus.CANCELLED:
            return None
        remaining = quantity if quantity is not None else cancelled.remaining
        intent = self.store.get_order_intent(coid) or {}
        if remaining <= 0:
            return None
        request = ExecutionRequest(
            strategy_id=cancelled.strategy_id,
            symbol=cancelled.symbol,
            side=cancelled.side,
            quantity=remaining,
            intent_key=f"{intent.get('intent_key', coid)}/replace@{price}",
            type=OrderType.LIMIT,
            price=price,
            time_in_force=cancelled.time_in_force,
            reduce_only=cancelled.reduce_only,
            reason=f"replaces {coid}",
        )
        return await self.submit(request)

    async def sync(self, coid: ClientOrderId) -> Order:
        """Ask the exchange about one order; a pending order it never saw is expired."""
        order = self._stored(coid)
        try:
            remote = await self.exchange.fetch_order(coid, order.symbol)
        except OrderNotFound:
            if order.status is OrderStatus.PENDING:
                return self._finish(
                    coid, OrderStatus.EXPIRED, "never reached the exchange (not found by its id)"
                )
            raise
        except UnknownSymbol as exc:
            if order.status is OrderStatus.PENDING:
                # The venue does not list the symbol: it can never have taken this order.
                return self._finish(coid, OrderStatus.REJECTED, f"never sendable: {exc}")
            raise
        return await self.absorb(remote)

    async def follow(self) -> None:
        """Apply the exchange's order stream until cancelled (user data stream)."""
        async for updates in self.exchange.watch_orders():
            for update in updates:
                await self.on_update(update)

    async def on_update(self, update: OrderUpdate) -> None:
        """Apply one stream event; orders this store does not know are left to reconcile."""
        if self.store.get_order(update.order.client_order_id) is None:
            log.warning("update for unknown order", coid=update.order.client_order_id)
            return
        await self.absorb(update.order, update.fills)

    def _stored(self, coid: ClientOrderId) -> Order:
        order = self.store.get_order(coid)
        if order is None:
            raise StoreError(f"order {coid} is not in the store")
        return order
