"""WebSocket side: public market streams (/ws/<n>) and the WebSocket API user data stream.

ccxt.pro 4.5.90 subscribes to public streams with {"method": "SUBSCRIBE", "params": [...]} on
``urls['api']['ws']['spot'] + '/<n>'`` and receives the raw event payloads. For spot user data it
sends ``userDataStream.subscribe.signature`` on ``urls['api']['ws']['ws-api']['spot']`` and then
receives ``{"subscriptionId": n, "event": {...}}``. A legacy ``/ws/<listenKey>`` connection gets
the same events unwrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from tradelib.domain import timeframe_ms, to_ms
from tradelib.logs import get_logger
from tradelib.testing.binance_emulator.auth import Credentials, check_ws_signature
from tradelib.testing.binance_emulator.context import wall_ms
from tradelib.testing.binance_emulator.markets import RATE_LIMITS
from tradelib.testing.binance_emulator.venue import (
    AccountEvent,
    DepthEvent,
    KlineEvent,
    OrderEvent,
    PublicTrade,
    Venue,
)
from tradelib.testing.binance_emulator.wire import ApiError, fmt, symbol_id

log = get_logger(__name__)
STREAM_KINDS = ("trade", "aggTrade", "depth", "depth@100ms", "depth@1000ms", "bookTicker")


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    streams: set[str] = field(default_factory=set)
    user_subscriptions: set[int] = field(default_factory=set)
    raw_user: bool = False  # legacy listenKey connection: events unwrapped
    logged_on: bool = False

    def send(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(json.dumps(payload))


def _valid_stream(name: str, symbol_ids: set[str]) -> bool:
    symbol, _, kind = name.partition("@")
    if symbol.upper() not in symbol_ids:
        return False
    if kind.startswith("kline_"):
        try:
            timeframe_ms(kind[len("kline_") :])
        except Exception:
            return False
        return True
    return kind in STREAM_KINDS


class StreamHub:
    """Every open WebSocket, fed from the venue's events."""

    def __init__(self, venue: Venue, credentials: Credentials, listen_keys: set[str]) -> None:
        self.venue = venue
        self.credentials = credentials
        self.listen_keys = listen_keys
        self._connections: set[_Connection] = set()
        self._next_subscription = 0
        venue.listeners.append(self.on_event)

    @property
    def connection_count(self) -> int:
        """Open WebSocket connections (public and user)."""
        return len(self._connections)

    # ------------------------------------------------------------- fan-out
    def on_event(self, event: object) -> None:
        """Turn one venue event into the messages each connection subscribed to."""
        if isinstance(event, OrderEvent):
            self._to_users(event.order)
        elif isinstance(event, AccountEvent):
            self._to_users(
                {
                    "e": "outboundAccountPosition",
                    "E": event.time_ms,
                    "u": event.time_ms,
                    "B": [
                        {"a": a, "f": fmt(f), "l": fmt(lk)} for a, (f, lk) in event.balances.items()
                    ],
                }
            )
        elif isinstance(event, PublicTrade):
            self._public_trade(event)
        elif isinstance(event, DepthEvent):
            self._depth(event)
        elif isinstance(event, KlineEvent):
            self._kline(event)

    def _to_users(self, payload: dict[str, Any]) -> None:
        for conn in self._connections:
            if conn.raw_user:
                conn.send(payload)
            for sub in conn.user_subscriptions:
                conn.send({"subscriptionId": sub, "event": payload})

    def _wants(self, *names: str) -> bool:
        return any(name in conn.streams for conn in self._connections for name in names)

    def _publish(self, names: tuple[str, ...], payload: dict[str, Any]) -> None:
        for conn in self._connections:
            if any(name in conn.streams for name in names):
                conn.send(payload)

    def _public_trade(self, trade: PublicTrade) -> None:
        sid = symbol_id(trade.symbol)
        if not self._wants(f"{sid.lower()}@trade", f"{sid.lower()}@aggTrade"):
            return
        base = {"E": self.venue.now_ms, "s": sid, "p": fmt(trade.price), "q": fmt(trade.quantity)}
        base |= {"T": trade.time_ms, "m": trade.buyer_is_maker, "M": True}
        self._publish((f"{sid.lower()}@trade",), {"e": "trade", "t": trade.trade_id, **base})
        agg = {"e": "aggTrade", "a": trade.trade_id, "f": trade.trade_id, "l": trade.trade_id}
        self._publish((f"{sid.lower()}@aggTrade",), {**agg, **base})

    def _depth(self, event: DepthEvent) -> None:
        sid = symbol_id(event.symbol)
        low = sid.lower()
        if not self._wants(
            f"{low}@depth", f"{low}@depth@100ms", f"{low}@depth@1000ms", f"{low}@bookTicker"
        ):
            return
        self._publish(
            (f"{low}@depth", f"{low}@depth@100ms", f"{low}@depth@1000ms"),
            {
                "e": "depthUpdate",
                "E": event.time_ms,
                "s": sid,
                "U": event.first_id,
                "u": event.last_id,
                "b": [[fmt(p), fmt(q)] for p, q in event.bids],
                "a": [[fmt(p), fmt(q)] for p, q in event.asks],
            },
        )
        update_id, bids, asks = self.venue.book(event.symbol, 1)
        zero = Decimal(0)
        self._publish(
            (f"{low}@bookTicker",),
            {
                "u": update_id,
                "s": sid,
                "b": fmt(bids[0][0] if bids else zero),
                "B": fmt(bids[0][1] if bids else zero),
                "a": fmt(asks[0][0] if asks else zero),
                "A": fmt(asks[0][1] if asks else zero),
            },
        )

    def _kline(self, event: KlineEvent) -> None:
        c = event.candle
        sid = symbol_id(c.symbol)
        if not self._wants(f"{sid.lower()}@kline_{c.timeframe}"):
            return
        start = to_ms(c.open_time)
        span = timeframe_ms(c.timeframe)
        quote = c.volume * (c.open + c.close) / 2
        self._publish(
            (f"{sid.lower()}@kline_{c.timeframe}",),
            {
                "e": "kline",
                "E": event.time_ms,
                "s": sid,
                "k": {
                    "t": start,
                    "T": start + span - 1,
                    "s": sid,
                    "i": c.timeframe,
                    "f": -1,
                    "L": -1,
                    "o": fmt(c.open),
                    "c": fmt(c.close),
                    "h": fmt(c.high),
                    "l": fmt(c.low),
                    "v": fmt(c.volume),
                    "n": 4,
                    "x": True,
                    "q": fmt(quote),
                    "V": fmt(c.volume / 2),
                    "Q": fmt(quote / 2),
                    "B": "0",
                },
            },
        )

    # ------------------------------------------------------------- connections
    async def _serve(self, request: web.Request, conn: _Connection, api: bool) -> None:
        writer = asyncio.create_task(self._write(conn))
        self._connections.add(conn)
        try:
            async for message in conn.ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    conn.send({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
                    continue
                if api:
                    self._api_request(conn, data)
                else:
                    self._stream_request(conn, data)
        finally:
            self._connections.discard(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self, conn: _Connection) -> None:
        while True:
            text = await conn.queue.get()
            if conn.ws.closed:
                return
            await conn.ws.send_str(text)

    async def public(self, request: web.Request) -> web.WebSocketResponse:
        """/ws, /ws/<n>, /stream/ws/<n> and /ws/<listenKey>."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        tail = request.match_info.get("tail", "")
        conn = _Connection(ws, raw_user=tail in self.listen_keys)
        await self._serve(request, conn, api=False)
        return ws

    async def api(self, request: web.Request) -> web.WebSocketResponse:
        """/ws-api/v3: the WebSocket API (user data stream subscription, ping, time)."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await self._serve(request, _Connection(ws), api=True)
        return ws

    def _stream_request(self, conn: _Connection, data: dict[str, Any]) -> None:
        method, ident = data.get("method"), data.get("id")
        params = data.get("params") or []
        symbol_ids = {symbol_id(s) for s in self.venue.markets}
        if method == "SUBSCRIBE":
            bad = [p for p in params if not _valid_stream(str(p), symbol_ids)]
            if bad:
                conn.send(
                    {
                        "error": {"code": 2, "msg": f"Invalid request: invalid stream {bad[0]}"},
                        "id": ident,
                    }
                )
                return
            conn.streams.update(str(p) for p in params)
            conn.send({"result": None, "id": ident})
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(str(p) for p in params)
            conn.send({"result": None, "id": ident})
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send({"result": sorted(conn.streams), "id": ident})
        else:
            conn.send({"error": {"code": 1, "msg": f"Unknown method {method!r}"}, "id": ident})

    def _api_request(self, conn: _Connection, data: dict[str, Any]) -> None:
        ident, method = data.get("id"), data.get("method")
        params = data.get("params") or {}
        limits = [{**r, "count": 1} for r in RATE_LIMITS[:1]]
        try:
            if method == "ping":
                result: Any = {}
            elif method == "time":
                result = {"serverTime": wall_ms()}
            elif method == "session.logon":
                check_ws_signature(self.credentials, params, wall_ms())
                conn.logged_on = True
                result = {
                    "apiKey": self.credentials.api_key,
                    "authorizedSince": wall_ms(),
                    "connectedSince": wall_ms(),
                    "returnRateLimits": False,
                    "serverTime": wall_ms(),
                    "userDataStream": False,
                }
            elif method == "userDataStream.subscribe.signature":
                check_ws_signature(self.credentials, params, wall_ms())
                result = {"subscriptionId": self._subscribe(conn)}
            elif method == "userDataStream.subscribe":
                if not conn.logged_on:
                    raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
                result = {"subscriptionId": self._subscribe(conn)}
            elif method == "userDataStream.unsubscribe":
                sub = params.get("subscriptionId")
                if sub is None:
                    conn.user_subscriptions.clear()
                else:
                    conn.user_subscriptions.discard(int(sub))
                result = {}
            else:
                raise ApiError(400, -1000, f"Unknown method {method!r}.")
        except ApiError as exc:
            conn.send(
                {"id": ident, "status": exc.status, "error": exc.body(), "rateLimits": limits}
            )
            return
        conn.send({"id": ident, "status": 200, "result": result, "rateLimits": limits})

    def _subscribe(self, conn: _Connection) -> int:
        sub = self._next_subscription
        self._next_subscription += 1
        conn.user_subscriptions.add(sub)
        return sub

    async def disconnect_all(self, code: int = 1001) -> int:
        """Close every WebSocket (as Binance does at 24 h or on maintenance); returns how many."""
        closing = list(self._connections)
        for conn in closing:
            await conn.ws.close(code=code, message=b"emulator: disconnect")
        log.info("emulator closed websockets", count=len(closing))
        return len(closing)
