"""ccxt.pro streams of `CcxtExchange` as async iterators of domain values.

A dropped connection is a normal event (Binance cuts every stream at 24 h): the next watch call
reconnects and resubscribes. After a reconnect of the user stream, every order this client knows
to be live is re-read over REST, so an update missed during the gap is still delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import ccxt

from tradelib.domain import ZERO, Candle, ClientOrderId, Fill, MarketTrade, Side, from_ms
from tradelib.errors import NeedsPerson, OrderUnknown, Temporary, TradelibError
from tradelib.exchange import ccxt_parse as cp
from tradelib.exchange.base import BookSnapshot, OrderUpdate
from tradelib.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")


def execution_fill(raw: Mapping[str, Any], cid: str) -> Fill | None:
    """The fill carried by a Binance executionReport (x == TRADE), None otherwise."""
    info = raw.get("info") or {}
    if info.get("x") != "TRADE":
        return None
    quantity = cp.dec(info.get("l"), "last filled quantity", ZERO) or ZERO
    if quantity <= 0:
        return None
    timestamp = info.get("T") or info.get("E")
    return Fill(
        trade_id=str(info.get("t")),
        client_order_id=ClientOrderId(cid),
        symbol=raw["symbol"],
        side=Side(raw["side"]),
        quantity=quantity,
        price=cp.dec(info.get("L"), "last fill price") or ZERO,
        fee=cp.dec(info.get("n"), "commission", ZERO) or ZERO,
        fee_currency=str(info.get("N") or ""),
        timestamp=from_ms(int(timestamp)) if timestamp else datetime.now(UTC),
        is_maker=bool(info.get("m")),
    )


class StreamMixin:
    """watch_* methods; the host class provides the ccxt.pro client and the helpers."""

    id: str
    _ws: Any
    _live: dict[str, Any]
    stream_max_failures: int = 20
    stream_backoff_cap: float = 5.0

    # provided by CcxtExchange
    _sleep: Callable[[float], Awaitable[None]]
    _translate: Callable[[Exception, str], TradelibError]
    _ensure_markets: Callable[[], Awaitable[None]]
    _market: Callable[[str], Any]
    _candles: Callable[[str, str, list[list[Any]]], list[Candle]]
    _remember: Callable[[Any], Any]
    _order: Callable[..., Any]
    _lookup: Callable[[str, str], Awaitable[Any]]

    async def _watch(
        self,
        action: str,
        call: Callable[[], Awaitable[Any]],
        on_reconnect: Callable[[], Awaitable[list[Any]]] | None = None,
    ) -> AsyncIterator[Any]:
        """Yield ("live", raw) ccxt.pro results; reconnect on Temporary errors (capped back-off).

        After a reconnect `on_reconnect` runs twice — while the new subscription is being made
        and again with its first message — and what it returns is yielded as ("missed", ...),
        so a change that happened while the stream was down is still reported.
        """
        failures = 0
        reconnecting = False
        while True:
            pending = asyncio.ensure_future(call())
            try:
                if reconnecting and on_reconnect is not None:
                    missed = await on_reconnect()
                    if missed:
                        yield ("missed", missed)
                raw = await pending
            except ccxt.BaseError as exc:
                error = self._translate(exc, action)
                if isinstance(error, NeedsPerson) or not isinstance(error, Temporary):
                    raise error from None
                failures += 1
                if failures > self.stream_max_failures:
                    raise error from None
                wait = min(self.stream_backoff_cap, 0.1 * 2 ** (failures - 1))
                log.warning("stream dropped; reconnecting", action=action, seconds=wait)
                await self._sleep(wait)
                reconnecting = True
                continue
            finally:
                if not pending.done():
                    pending.cancel()
            if reconnecting and on_reconnect is not None:
                missed = await on_reconnect()
                if missed:
                    yield ("missed", missed)
            reconnecting = False
            failures = 0
            yield ("live", raw)

    async def watch_trades(self, symbol: str) -> AsyncIterator[list[MarketTrade]]:
        """Public trades as they print."""
        await self._ensure_markets()
        self._market(symbol)
        async for _, raw in self._watch(
            f"watch_trades {symbol}", lambda: self._ws.watch_trades(symbol)
        ):
            yield [cp.parse_market_trade(t) for t in raw]

    async def watch_order_book(self, symbol: str) -> AsyncIterator[BookSnapshot]:
        """Order book snapshots kept current from the depth stream."""
        await self._ensure_markets()
        self._market(symbol)
        async for _, raw in self._watch(
            f"watch_order_book {symbol}", lambda: self._ws.watch_order_book(symbol)
        ):
            yield cp.parse_book(symbol, raw)

    async def watch_ohlcv(self, symbol: str, timeframe: str = "1m") -> AsyncIterator[list[Candle]]:
        """Candle updates (the last candle stays open until its interval ends)."""
        await self._ensure_markets()
        self._market(symbol)
        async for _, raw in self._watch(
            f"watch_ohlcv {symbol} {timeframe}",
            lambda: self._ws.watch_ohlcv(symbol, timeframe),
        ):
            yield self._candles(symbol, timeframe, raw)

    async def _reread_live(self) -> list[OrderUpdate]:
        """Orders known to be live, re-read over REST; those that changed become updates."""
        updates = []
        for cid, before in list(self._live.items()):
            try:
                order = await self._lookup(cid, before.symbol)
            except (Temporary, OrderUnknown):
                continue
            if order is not None and (order.status, order.filled_quantity) != (
                before.status,
                before.filled_quantity,
            ):
                updates.append(OrderUpdate(self._remember(order)))
        return updates

    async def watch_orders(self, symbol: str | None = None) -> AsyncIterator[list[OrderUpdate]]:
        """Own order updates from the user stream, with the fill each execution carries."""
        await self._ensure_markets()
        if symbol is not None:
            self._market(symbol)
        async for kind, raw in self._watch(
            "watch_orders", lambda: self._ws.watch_orders(symbol), self._reread_live
        ):
            if kind == "missed":
                yield raw
                continue
            updates = []
            for item in raw:
                order = self._remember(self._order(item))
                fill = execution_fill(item, order.client_order_id)
                updates.append(OrderUpdate(order, (fill,) if fill else ()))
            if updates:
                yield updates
