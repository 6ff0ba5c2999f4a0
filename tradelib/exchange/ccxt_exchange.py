"""`CcxtExchange`: the Exchange protocol over ccxt.async_support (REST) and ccxt.pro (streams).

Binance spot first; Kraken and Coinbase through the same code, their differences read from
`tradelib.exchange.venues`. Orders are rounded and checked against the market's rules before
they leave; a create whose answer is lost is resolved by its client order id, never resent
blindly (see `create_order`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from tradelib.domain import (
    Balance,
    Candle,
    ClientOrderId,
    Fill,
    Market,
    Mode,
    Order,
    OrderType,
    Side,
    to_ms,
)
from tradelib.errors import (
    ExchangeBanned,
    OrderNotFound,
    OrderUnknown,
    Temporary,
    TradelibError,
    UnknownSymbol,
)
from tradelib.exchange import ccxt_parse as cp
from tradelib.exchange.base import BookSnapshot, OrderRequest, Ticker
from tradelib.exchange.ccxt_errors import clean_message, is_lost_answer, translate
from tradelib.exchange.ccxt_streams import StreamMixin
from tradelib.exchange.precheck import (
    check_request,
    duplicate_id_error,
    refuse_if_invalid,
    rounded,
)
from tradelib.exchange.ratelimit import (
    RateGuard,
    RetryPolicy,
    limits_from_exchange_info,
    retry_idempotent,
)
from tradelib.exchange.venues import Lookup, Venue, venue_for
from tradelib.logs import get_logger, register_secret

log = get_logger(__name__)
T = TypeVar("T")


def point_urls_at(urls: Any, base_url: str) -> Any:
    """Copy of a ccxt `urls['api']` tree with every host replaced by `base_url`'s host.

    Paths and queries are kept (`/api/v3`, `/ws-api/v3`); http(s) URLs take `base_url`'s
    scheme, ws(s) URLs the matching ws scheme, so one local server (the emulator) answers REST
    and streams. ccxt.pro tells Binance's spot stream client apart by '/stream' in its URL (the
    real host is stream.binance.com), so a bare `/ws` on a `stream.` host becomes `/stream/ws`.
    """
    target = urlsplit(base_url.rstrip("/"))
    secure = target.scheme == "https"
    if isinstance(urls, dict):
        return {key: point_urls_at(value, base_url) for key, value in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        path = target.path + parts.path
        if parts.scheme.startswith("ws"):
            scheme = "wss" if secure else "ws"
            if parts.netloc.startswith("stream.") and parts.path == "/ws":
                path = target.path + "/stream/ws"
        else:
            scheme = target.scheme
        return urlunsplit((scheme, target.netloc, path, parts.query, parts.fragment))
    return urls


class CcxtExchange(StreamMixin):
    """A live venue through ccxt: rounding, pre-send checks, error mapping, lost-answer safety."""

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
        timeout_ms: int = 10_000,
        retry_policy: RetryPolicy | None = None,
        lookup_attempts: int = 3,
        lookup_delay: float = 0.2,
        late_arrival_seconds: float | None = None,
        options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.venue: Venue = venue_for(exchange_id)
        self.id = exchange_id
        self.base_url = base_url
        self.retry_policy = retry_policy or RetryPolicy(sleep=sleep)
        self.lookup_attempts = max(1, lookup_attempts)
        self.lookup_delay = lookup_delay
        self._clock = clock
        self._sleep = sleep
        register_secret(api_key)
        register_secret(api_secret)
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": {**self.venue.ccxt_options, **(options or {})},
        }
        if api_key:
            config["apiKey"] = api_key
        if api_secret:
            config["secret"] = api_secret
        self._rest: Any = getattr(ccxt_async, exchange_id)(dict(config))
        self._ws: Any = getattr(ccxt_pro, exchange_id)(dict(config))
        if base_url:
            for client in (self._rest, self._ws):
                client.urls["api"] = point_urls_at(client.urls["api"], base_url)
        self._authenticated = bool(api_key and api_secret)
        self.guard = RateGuard(
            exchange_id,
            weight_header=self.venue.weight_header,
            order_count_prefix=self.venue.order_count_header_prefix,
            clock=clock,
            sleep=sleep,
        )
        self._install_hooks()
        if late_arrival_seconds is None:
            late_arrival_seconds = self.venue.late_arrival_seconds
        if late_arrival_seconds is None:
            late_arrival_seconds = float(self._rest.options.get("recvWindow", 10_000)) / 1000
        self.late_arrival_seconds = late_arrival_seconds
        self._markets: dict[str, Market] = {}
        self._cid_by_order_id: dict[str, str] = {}
        self._live: dict[str, Order] = {}  # last state of every order not yet terminal
        self._markets_lock = asyncio.Lock()

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"CcxtExchange(id={self.id!r}{where}, authenticated={self._authenticated})"

    # --- plumbing -------------------------------------------------------------------------

    def _install_hooks(self) -> None:
        """Pace every REST request through the guard and let it see every response."""
        rest = self._rest
        self.transport = rest.fetch  # ccxt's own HTTP call; tests swap in a recorded one
        original_on_response = rest.on_rest_response
        guard = self.guard

        async def guarded_fetch(
            url: str, method: str = "GET", headers: Any = None, body: Any = None
        ) -> Any:
            is_order = method.upper() == "POST" and "order" in url.lower()
            await guard.before_request(is_order=is_order)
            return await self.transport(url, method, headers, body)

        def observe(
            code: int, reason: str, url: str, method: str, headers: Any, body: Any, *rest_: Any
        ) -> Any:
            guard.observe(int(code), headers or {})
            return original_on_response(code, reason, url, method, headers, body, *rest_)

        rest.fetch = guarded_fetch
        rest.on_rest_response = observe

    def _translate(self, exc: Exception, action: str) -> TradelibError:
        limited = isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded)
        status = self.guard.last_status if limited else None
        retry_after = self.guard.last_retry_after if limited else None
        if status == 418 and retry_after is None:
            retry_after = self.guard.ban_remaining() or None
        return translate(
            exc, exchange_id=self.id, action=action, status=status, retry_after=retry_after
        )

    async def _call(self, action: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except ccxt.BaseError as exc:
            raise self._translate(exc, action) from None

    def _market(self, symbol: str) -> Market:
        market = self._markets.get(symbol)
        if market is None:
            sample = ", ".join(sorted(self._markets)[:8])
            raise UnknownSymbol(
                f"{symbol!r} is not a spot market on {self.id} (symbols look like "
                f"'BTC/USDT'; e.g. {sample})"
            )
        return market

    async def _ensure_markets(self) -> None:
        if not self._markets:
            await self.load_markets()

    def _remember(self, order: Order) -> Order:
        if order.exchange_order_id:
            self._cid_by_order_id[order.exchange_order_id] = order.client_order_id
        if order.status.is_terminal:
            self._live.pop(order.client_order_id, None)
        else:
            self._live[order.client_order_id] = order
        return order

    def _order(self, raw: Mapping[str, Any], cid: str | None = None) -> Order:
        return cp.parse_order(raw, self.id, fallback_client_id=cid, mode=Mode.LIVE)

    # --- reference data -------------------------------------------------------------------

    @retry_idempotent
    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        """Spot markets by symbol with tick, step, minimums, maxima and fees as Decimal."""
        async with self._markets_lock:
            if self._markets and not reload:
                return dict(self._markets)
            raw = await self._call("load_markets", lambda: self._rest.load_markets(reload))
            info = self._rest.last_json_response
            if isinstance(info, dict) and "rateLimits" in info:
                self.guard.configure(limits_from_exchange_info(info))
            return self._adopt(raw)

    def _adopt(self, raw: Mapping[str, Any]) -> dict[str, Market]:
        mode = int(self._rest.precisionMode)
        self._markets = {
            symbol: cp.parse_market(m, mode)
            for symbol, m in raw.items()
            if m.get("spot") and m.get("precision", {}).get("price") is not None
        }
        self._ws.set_markets(self._rest.markets, self._rest.currencies)
        return dict(self._markets)

    def use_markets(self, ccxt_markets: list[dict[str, Any]]) -> dict[str, Market]:
        """Adopt ccxt market structures fetched earlier (a cache), without a request."""
        self._rest.set_markets(ccxt_markets)
        return self._adopt(self._rest.markets)

    @retry_idempotent
    async def fetch_balances(self) -> dict[str, Balance]:
        """Balances by asset, free and locked."""
        raw = await self._call("fetch_balances", lambda: self._rest.fetch_balance())
        return cp.parse_balances(raw, self.id)

    @retry_idempotent
    async def fetch_ticker(self, symbol: str) -> Ticker:
        """Best bid/ask and last price."""
        await self._ensure_markets()
        self._market(symbol)
        raw = await self._call(f"fetch_ticker {symbol}", lambda: self._rest.fetch_ticker(symbol))
        return cp.parse_ticker(symbol, raw)

    @retry_idempotent
    async def fetch_order_book(self, symbol: str, limit: int = 100) -> BookSnapshot:
        """Order book snapshot, best levels first."""
        await self._ensure_markets()
        self._market(symbol)
        raw = await self._call(
            f"fetch_order_book {symbol}", lambda: self._rest.fetch_order_book(symbol, limit)
        )
        return cp.parse_book(symbol, raw)

    @retry_idempotent
    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1h",
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Candle]:
        """Candles oldest first; the last one is marked open when its interval has not ended."""
        await self._ensure_markets()
        self._market(symbol)
        since_ms = to_ms(since) if since else None
        rows = await self._call(
            f"fetch_ohlcv {symbol} {timeframe}",
            lambda: self._rest.fetch_ohlcv(symbol, timeframe, since_ms, limit),
        )
        return self._candles(symbol, timeframe, rows)

    def _candles(self, symbol: str, timeframe: str, rows: list[list[Any]]) -> list[Candle]:
        span_ms = int(self._rest.parse_timeframe(timeframe) * 1000)
        now_ms = int(self._clock() * 1000)
        return [
            cp.parse_candle(symbol, timeframe, row, closed=int(row[0]) + span_ms <= now_ms)
            for row in rows
        ]

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
        params: dict[str, Any] = {self.venue.create_client_id_param: cid}
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
                return await self._resolve_lost_create(request, send, sent_at, exc)
            raise self._order_error(exc, request) from None
        return self._remember(self._order(raw, cid))

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
        return self._remember(self._order(raw, cid))

    async def _lookup_bounded(self, cid: str, symbol: str) -> Order | None:
        """The order with client id `cid`, None when the exchange says it does not exist."""
        last: Exception | None = None
        for attempt in range(self.lookup_attempts):
            try:
                return await self._lookup(cid, symbol)
            except Temporary as exc:
                last = exc
            except ExchangeBanned as exc:
                last = exc
                break
            await self._sleep(self.lookup_delay * 2**attempt)
        raise OrderUnknown(
            f"order {cid} on {self.id} was sent but its outcome is unknown after "
            f"{self.lookup_attempts} lookups ({last}); keep it pending and reconcile"
        )

    async def _lookup(self, cid: str, symbol: str) -> Order | None:
        await self._ensure_markets()
        self._market(symbol)
        action = f"fetch_order {cid}"
        try:
            if self.venue.lookup is Lookup.PARAM:
                param = self.venue.lookup_param or "clientOrderId"
                raw = await self._rest.fetch_order(None, symbol, {param: cid})
                return await self._complete(self._order(raw, cid))
            for fetch in (self._rest.fetch_open_orders, self._rest.fetch_closed_orders):
                for raw in await fetch(symbol):
                    if raw.get("clientOrderId") == cid:
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
                raw = await self._rest.cancel_order(None, symbol, {param: cid})
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

    async def _client_id_of(self, order_id: str, symbol: str) -> str:
        cid = self._cid_by_order_id.get(order_id)
        if cid is None:
            raw = await self._call(
                f"fetch_order #{order_id}", lambda: self._rest.fetch_order(order_id, symbol)
            )
            cid = raw.get("clientOrderId") or f"exchange-{order_id}"
            self._cid_by_order_id[order_id] = cid
        return cid

    # --- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the REST and the streaming client."""
        for client in (self._rest, self._ws):
            try:
                await client.close()
            except Exception as exc:  # closing must not hide the caller's own error
                log.warning("closing ccxt client failed", exchange=self.id, error=str(exc))

    async def __aenter__(self) -> CcxtExchange:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
