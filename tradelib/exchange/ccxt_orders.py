"""Orders through ccxt: pre-send rounding and checks, lost-answer resolution, cancels, fills.

Mixed into `CcxtExchange`; the rules for a create whose answer is lost are in `create_order`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import ccxt

from tradelib.domain import ClientOrderId, Fill, Market, Mode, Order, OrderType, Side, to_ms
from tradelib.errors import (
    ExchangeBanned,
    OrderNotFound,
    OrderUnknown,
    Temporary,
    TradelibError,
)
from tradelib.exchange import ccxt_parse as cp
from tradelib.exchange.base import OrderRequest, Ticker
from tradelib.exchange.ccxt_errors import clean_message, is_lost_answer
from tradelib.exchange.precheck import (
    check_request,
    duplicate_id_error,
    refuse_if_invalid,
    rounded,
)
from tradelib.exchange.ratelimit import RetryPolicy, retry_idempotent
from tradelib.exchange.venues import Lookup, Venue, from_wire, to_wire
from tradelib.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")


class OrderMixin:
    """create/cancel/fetch of orders and own trades; the host provides the ccxt client."""

    # provided by CcxtExchange
    id: str
    venue: Venue
    retry_policy: RetryPolicy
    lookup_attempts: int
    lookup_delay: float
    late_arrival_seconds: float
    _rest: Any
    _cid_by_order_id: dict[str, str]
    _final_fills: dict[str, list[Fill]]
    _clock: Callable[[], float]
    _sleep: Callable[[float], Awaitable[None]]
    _translate: Callable[[Exception, str], TradelibError]
    _ensure_markets: Callable[[], Awaitable[None]]
    _market: Callable[[str], Market]
    _remember: Callable[[Order], Order]
    _call: Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
    fetch_ticker: Callable[[str], Awaitable[Ticker]]

    def _order(self, raw: Mapping[str, Any], cid: str | None = None) -> Order:
        wire = raw.get("clientOrderId")
        if wire:
            raw = {**raw, "clientOrderId": from_wire(self.venue, str(wire))}
        return cp.parse_order(raw, self.id, fallback_client_id=cid, mode=Mode.LIVE)

    # --- orders ---------------------------------------------------------------------------

    async def _reference_price(self, symbol: str, side: Side) -> Decimal | None:
        ticker = await self.fetch_ticker(symbol)
        best = ticker.ask if side is Side.BUY else ticker.bid
        return best or ticker.last

    async def prepare_order(self, request: OrderRequest) -> tuple[Decimal, Decimal | None]:
        """Round quantity/price to the market's precision and refuse what breaks its rules."""
        await self._ensure_markets()
        market = self._market(request.symbol)
        check_request(request, self.venue, self.id)
        quantity, price = rounded(request, market)
        reference = price
        if request.type is OrderType.MARKET and (
            market.min_notional > 0 or self.venue.market_buy_needs_price
        ):
            reference = await self._reference_price(request.symbol, request.side)
        refuse_if_invalid(request, market, quantity, price, reference, self.id)
        if self.venue.market_buy_needs_price and request.type is OrderType.MARKET:
            price = reference
        return quantity, price

    async def create_order(self, request: OrderRequest) -> Order:
        """Send an order; on a lost answer resolve it by client order id, never resend blindly.

        Lost answer (timeout, 5xx, disconnect): look the client order id up (bounded attempts).
        Found -> that order. Not found -> wait until the lost request can no longer be accepted
        (the venue's receive window), look once more, then resend ONCE with the SAME client
        order id (a duplicate open id is refused by the exchange, so this cannot double).
        Still unknown -> OrderUnknown: keep the order pending and let reconciliation decide.
        """
        quantity, price = await self.prepare_order(request)
        cid = request.client_order_id
        params: dict[str, Any] = {self.venue.create_client_id_param: to_wire(self.venue, cid)}
        if request.type is OrderType.LIMIT:
            params["timeInForce"] = request.time_in_force.value

        async def send() -> Any:
            return await self._rest.create_order(
                request.symbol,
                request.type.value,
                request.side.value,
                float(quantity),
                float(price) if price is not None else None,
                dict(params),
            )

        sent_at = self._clock()
        try:
            raw = await send()
        except ccxt.BaseError as exc:
            if is_lost_answer(exc):
                return await self._resolve_lost_create(request, quantity, price, send, sent_at, exc)
            raise self._order_error(exc, request) from None
        order = self._remember(self._order(self._with_request(raw, request, quantity, price), cid))
        self._keep_answered_fills(order, raw, request)
        return order

    def _keep_answered_fills(
        self, order: Order, raw: Mapping[str, Any], request: OrderRequest
    ) -> None:
        """Keep the fills a full create answer carries when they are the order's last ones.

        Binance answers a market or IOC order with its fills (newOrderRespType FULL); when
        the order is final and they add up, `fetch_order_fills` need not spend 25 request
        weight on two more calls. Anything less than that goes the long way.
        """
        trades = raw.get("trades") or []
        if not order.status.is_terminal or not trades:
            return
        fills = []
        for t in trades:
            if t.get("id") is None or t.get("amount") is None or t.get("price") is None:
                return
            fee = t.get("fee") or {}
            fills.append(
                Fill(
                    trade_id=str(t["id"]),
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    side=request.side,
                    quantity=cp.dec(t["amount"], "trade amount", Decimal(0)) or Decimal(0),
                    price=cp.dec(t["price"], "trade price", Decimal(0)) or Decimal(0),
                    fee=cp.dec(fee.get("cost"), "trade fee", Decimal(0)) or Decimal(0),
                    fee_currency=str(fee.get("currency") or ""),
                    timestamp=order.updated_at or order.created_at,
                )
            )
        if sum((f.quantity for f in fills), Decimal(0)) == order.filled_quantity:
            self._final_fills[order.client_order_id] = fills

    @staticmethod
    def _with_request(
        raw: Mapping[str, Any], request: OrderRequest, quantity: Decimal, price: Decimal | None
    ) -> dict[str, Any]:
        """Fill what a terse create answer (Coinbase, Kraken) leaves out from what was sent."""
        sent = {
            "symbol": request.symbol,
            "type": request.type.value,
            "side": request.side.value,
            "amount": str(quantity),
            "price": str(price) if price is not None else None,
            "clientOrderId": request.client_order_id,
            "timeInForce": request.time_in_force.value,
        }
        return {**sent, **{k: v for k, v in raw.items() if v is not None}}

    def _is_duplicate(self, exc: BaseException) -> bool:
        text = str(exc)
        return any(marker in text for marker in self.venue.duplicate_id_markers)

    def _order_error(self, exc: Exception, request: OrderRequest) -> TradelibError:
        if self._is_duplicate(exc):
            return duplicate_id_error(request.client_order_id, self.id, clean_message(str(exc)))
        return self._translate(exc, f"create_order {request.client_order_id}")

    async def _resolve_lost_create(
        self,
        request: OrderRequest,
        quantity: Decimal,
        price: Decimal | None,
        send: Callable[[], Awaitable[Any]],
        sent_at: float,
        first: Exception,
    ) -> Order:
        cid, symbol = request.client_order_id, request.symbol
        log.warning(
            "create_order answer lost; resolving by client order id",
            exchange=self.id,
            client_order_id=cid,
            error=clean_message(str(first)),
        )
        found = await self._lookup_bounded(cid, symbol)
        if found is not None:
            return self._remember(found)
        wait = sent_at + self.late_arrival_seconds - self._clock()
        if wait > 0:
            await self._sleep(wait)
            found = await self._lookup_bounded(cid, symbol)
            if found is not None:
                return self._remember(found)
        log.warning("order not placed; resending once", exchange=self.id, client_order_id=cid)
        try:
            raw = await send()
        except ccxt.BaseError as exc:
            if self._is_duplicate(exc) or is_lost_answer(exc):
                found = await self._lookup_bounded(cid, symbol)
                if found is not None:
                    return self._remember(found)
                raise OrderUnknown(
                    f"order {cid} on {self.id}: the answer to its resend was lost too "
                    f"({clean_message(str(exc))}); keep it pending and reconcile"
                ) from None
            raise self._order_error(exc, request) from None
        except ExchangeBanned as exc:
            raise OrderUnknown(f"order {cid} on {self.id}: not resent, {exc}") from None
        order = self._remember(self._order(self._with_request(raw, request, quantity, price), cid))
        self._keep_answered_fills(order, raw, request)
        return order

    async def _lookup_bounded(self, cid: str, symbol: str) -> Order | None:
        """The order with client id `cid`, None when the exchange says it does not exist."""
        last: Exception | None = None
        for attempt in range(self.lookup_attempts):
            try:
                return await self._lookup(cid, symbol)
            except Temporary as exc:
                last = exc
            except TradelibError as exc:  # banned, key revoked…: no answer about this order
                last = exc
                break
            await self._sleep(self.lookup_delay * 2**attempt)
        raise OrderUnknown(
            f"order {cid} on {self.id} was sent but its outcome is unknown: looking it up "
            f"failed ({last}); keep it pending and reconcile"
        )

    async def _lookup(self, cid: str, symbol: str) -> Order | None:
        await self._ensure_markets()
        self._market(symbol)
        action = f"fetch_order {cid}"
        try:
            if self.venue.lookup is Lookup.PARAM:
                param = self.venue.lookup_param or "clientOrderId"
                raw = await self._rest.fetch_order(None, symbol, {param: to_wire(self.venue, cid)})
                return await self._complete(self._order(raw, cid))
            for fetch in (self._rest.fetch_open_orders, self._rest.fetch_closed_orders):
                for raw in await fetch(symbol):
                    if from_wire(self.venue, str(raw.get("clientOrderId"))) == cid:
                        return await self._complete(self._order(raw, cid))
            return None
        except ccxt.OrderNotFound:
            return None
        except ccxt.BaseError as exc:
            raise self._translate(exc, action) from None

    async def _complete(self, order: Order) -> Order:
        """Add the fee from our trades when the order's own answer does not carry it."""
        if order.filled_quantity <= 0 or order.fee_currency is not None:
            return order
        if not order.exchange_order_id:
            return order
        fills = await self._fills_of(order.symbol, order.exchange_order_id, order.client_order_id)
        if not fills:
            return order
        currency = fills[0].fee_currency
        fee = sum((f.fee for f in fills if f.fee_currency == currency), Decimal(0))
        return replace(order, fee=fee, fee_currency=currency or None)

    async def _fills_of(self, symbol: str, order_id: str, cid: str) -> list[Fill]:
        param = self.venue.trades_by_order_param
        params = {param: order_id} if param else {}
        try:
            raw = await self._rest.fetch_my_trades(symbol, None, None, params)
        except ccxt.BaseError as exc:
            raise self._translate(exc, f"fetch_my_trades {symbol}") from None
        return [cp.parse_fill(t, cid) for t in raw if str(t.get("order")) == order_id]

    @retry_idempotent
    async def fetch_order(self, client_order_id: ClientOrderId, symbol: str) -> Order:
        """Current state of one order, looked up by client order id."""
        order = await self._lookup(client_order_id, symbol)
        if order is None:
            raise OrderNotFound(
                f"{self.id} has no order with client order id {client_order_id} on {symbol}"
            )
        return self._remember(order)

    @retry_idempotent
    async def cancel_order(self, client_order_id: ClientOrderId, symbol: str) -> Order:
        """Cancel an open order; returns its final state (also when it ended meanwhile).

        Safe to retry: when a retry (after a lost answer) is told the order is unknown, the
        order is looked up, and a cancelled or filled order is returned as the final state.
        """
        await self._ensure_markets()
        self._market(symbol)
        cid = client_order_id
        param = self.venue.cancel_by_client_id_param
        try:
            if param:
                raw = await self._rest.cancel_order(None, symbol, {param: to_wire(self.venue, cid)})
            else:
                known = await self._lookup(cid, symbol)
                if known is None or not known.exchange_order_id:
                    raise OrderNotFound(f"{self.id} has no order {cid} on {symbol} to cancel")
                if known.status.is_terminal:
                    return self._remember(known)
                raw = await self._rest.cancel_order(known.exchange_order_id, symbol)
        except (ccxt.OrderNotFound, ccxt.OperationRejected, ccxt.InvalidOrder) as exc:
            found = await self._lookup(cid, symbol)
            if found is not None and found.status.is_terminal:
                return self._remember(found)
            error = self._translate(exc, f"cancel_order {cid}")
            if found is None:
                raise OrderNotFound(f"{self.id} has no order {cid} on {symbol} to cancel") from None
            raise error from None
        except ccxt.BaseError as exc:
            raise self._translate(exc, f"cancel_order {cid}") from None
        if raw.get("amount") is None or raw.get("status") is None:
            # a terse answer ({"count": 1} on Kraken): read the final state back
            found = await self._lookup(cid, symbol)
            if found is None:
                raise OrderNotFound(f"{self.id} lost order {cid} on {symbol} after cancelling")
            return self._remember(found)
        order = self._order(raw, cid)
        order = replace(order, client_order_id=ClientOrderId(cid))  # answer may carry cancel id
        return self._remember(await self._complete(order))

    @retry_idempotent
    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders still resting on the book (all symbols when `symbol` is None)."""
        await self._ensure_markets()
        if symbol is not None:
            self._market(symbol)
        raw = await self._call("fetch_open_orders", lambda: self._rest.fetch_open_orders(symbol))
        orders = [await self._complete(self._order(o)) for o in raw]
        return [self._remember(o) for o in orders]

    @retry_idempotent
    async def fetch_my_trades(
        self, symbol: str, since: datetime | None = None, limit: int | None = None
    ) -> list[Fill]:
        """Own executions of `symbol` since `since`, oldest first, with fee and fee currency."""
        await self._ensure_markets()
        self._market(symbol)
        since_ms = to_ms(since) if since else None
        raw = await self._call(
            f"fetch_my_trades {symbol}",
            lambda: self._rest.fetch_my_trades(symbol, since_ms, limit),
        )
        fills = []
        for t in raw:
            cid = await self._client_id_of(str(t.get("order")), symbol)
            fills.append(cp.parse_fill(t, cid))
        return sorted(fills, key=lambda f: (f.timestamp, f.trade_id))

    @retry_idempotent
    async def fetch_order_fills(self, client_order_id: ClientOrderId, symbol: str) -> list[Fill]:
        """Own executions of one order (looked up by its exchange id), oldest first."""
        answered = self._final_fills.get(client_order_id)
        if answered is not None:
            return list(answered)
        order = await self.fetch_order(client_order_id, symbol)
        if not order.exchange_order_id or order.filled_quantity <= 0:
            return []
        fills = await self._fills_of(symbol, order.exchange_order_id, client_order_id)
        return sorted(fills, key=lambda f: (f.timestamp, f.trade_id))

    async def _client_id_of(self, order_id: str, symbol: str) -> str:
        cid = self._cid_by_order_id.get(order_id)
        if cid is None:
            raw = await self._call(
                f"fetch_order #{order_id}", lambda: self._rest.fetch_order(order_id, symbol)
            )
            cid = raw.get("clientOrderId") or f"exchange-{order_id}"
            self._cid_by_order_id[order_id] = cid
        return cid
