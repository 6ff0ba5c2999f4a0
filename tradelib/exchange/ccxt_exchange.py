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
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from tradelib.domain import (
    ApiKeyRestrictions,
    Balance,
    Candle,
    Fill,
    Market,
    Order,
    from_ms,
    to_ms,
)
from tradelib.errors import (
    NoApiKey,
    TradelibError,
    UnknownSymbol,
)
from tradelib.exchange import ccxt_parse as cp
from tradelib.exchange.base import BookSnapshot, Ticker
from tradelib.exchange.ccxt_errors import translate
from tradelib.exchange.ccxt_orders import OrderMixin
from tradelib.exchange.ccxt_streams import StreamMixin
from tradelib.exchange.key_restrictions import not_reported, parse_restrictions
from tradelib.exchange.ratelimit import (
    RateGuard,
    RetryPolicy,
    limits_from_exchange_info,
    retry_idempotent,
)
from tradelib.exchange.venues import Venue, venue_for
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


class CcxtExchange(OrderMixin, StreamMixin):
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
        rate_limit: bool = True,
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
            "enableRateLimit": rate_limit,  # ccxt's own spacing by its cost table
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
        self._final_fills: dict[str, list[Fill]] = {}  # fills a create answer carried in full
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

    @retry_idempotent
    async def fetch_api_restrictions(self) -> ApiKeyRestrictions:
        """What this connection's API key may do, as the exchange reports it (read-only call)."""
        if not self._authenticated:
            raise NoApiKey(
                f"this {self.id} connection has no API key: there are no key permissions to "
                "read; pass api_key and api_secret (from `tradelib secrets`)"
            )
        at = from_ms(int(self._clock() * 1000))
        call, fmt = self.venue.restrictions_call, self.venue.restrictions_format
        if call is None or fmt is None:
            return not_reported(self.id, at)
        raw = await self._call("fetch_api_restrictions", lambda: getattr(self._rest, call)())
        return parse_restrictions(fmt, self.id, raw, at)

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
