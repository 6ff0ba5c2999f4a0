"""The /api/v3 REST endpoints ccxt 4.5.90 uses for Binance spot."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from tradelib.domain import OrderType, Side, TimeInForce, from_ms
from tradelib.errors import DataError
from tradelib.exchange.matching import timeframe_delta
from tradelib.testing.binance_emulator.auth import Credentials, check_api_key, check_signed
from tradelib.testing.binance_emulator.faults import Faults
from tradelib.testing.binance_emulator.markets import by_symbol_id, exchange_info
from tradelib.testing.binance_emulator.venue import Venue
from tradelib.testing.binance_emulator.wire import (
    ApiError,
    VenueOrder,
    bad_request,
    fmt,
    mandatory,
    symbol_id,
)

Params = Mapping[str, str]
Handler = Callable[["Context", Params], Awaitable[Any]]

SIGNED = {"account", "order", "openOrders", "allOrders", "myTrades"}
API_KEY_ONLY = {"userDataStream"}
ORDER_ENDPOINTS = {("POST", "order")}


def wall_ms() -> int:
    """Binance's server clock (real time: clients sign with their own wall clock)."""
    return int(time.time() * 1000)


@dataclass
class Context:
    """What the REST handlers need from the running emulator."""

    venue: Venue
    credentials: Credentials
    faults: Faults
    weight_limit: int = 6000
    listen_keys: set[str] = field(default_factory=set)

    def symbol(self, params: Params, name: str = "symbol") -> str:
        """The unified symbol for the Binance id in `params`, or -1102/-1121."""
        raw = params.get(name)
        if not raw:
            raise mandatory(name)
        market = by_symbol_id(self.venue.markets).get(raw.upper())
        if market is None:
            raise bad_request(-1121, "Invalid symbol.")
        return market.symbol


def _decimal(params: Params, name: str) -> Decimal | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'.") from None
    if not value.is_finite():
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _int(params: Params, name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _limit(params: Params, default: int, maximum: int) -> int:
    value = _int(params, "limit", default) or default
    return max(1, min(value, maximum))


# ------------------------------------------------------------------- public market data
async def ping(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ping."""
    return {}


async def server_time(ctx: Context, params: Params) -> Any:
    """GET /api/v3/time."""
    return {"serverTime": wall_ms()}


async def exchange_information(ctx: Context, params: Params) -> Any:
    """GET /api/v3/exchangeInfo (all symbols, or ?symbol=)."""
    markets = ctx.venue.markets
    if params.get("symbol"):
        symbol = ctx.symbol(params)
        markets = {symbol: markets[symbol]}
    return exchange_info(markets, wall_ms(), ctx.weight_limit)


async def depth(ctx: Context, params: Params) -> Any:
    """GET /api/v3/depth."""
    symbol = ctx.symbol(params)
    update_id, bids, asks = ctx.venue.book(symbol, _limit(params, 100, 5000))
    return {
        "lastUpdateId": update_id,
        "bids": [[fmt(p), fmt(q)] for p, q in bids],
        "asks": [[fmt(p), fmt(q)] for p, q in asks],
    }


async def trades(ctx: Context, params: Params) -> Any:
    """GET /api/v3/trades."""
    symbol = ctx.symbol(params)
    return [
        {
            "id": t.trade_id,
            "price": fmt(t.price),
            "qty": fmt(t.quantity),
            "quoteQty": fmt(t.price * t.quantity),
            "time": t.time_ms,
            "isBuyerMaker": t.buyer_is_maker,
            "isBestMatch": True,
        }
        for t in ctx.venue.recent_trades(symbol, _limit(params, 500, 1000))
    ]


async def klines(ctx: Context, params: Params) -> Any:
    """GET /api/v3/klines from the recorded candles, closed ones only, up to the replay clock."""
    symbol = ctx.symbol(params)
    interval = params.get("interval")
    if not interval:
        raise mandatory("interval")
    try:
        span = timeframe_delta(interval)
    except DataError:
        raise bad_request(-1120, "Invalid interval.") from None
    start, end = _int(params, "startTime"), _int(params, "endTime")
    try:
        candles = ctx.venue.replay.candles(
            symbol,
            interval,
            since=from_ms(start) if start is not None else None,
            limit=_limit(params, 500, 1000),
            until=from_ms(end) + span if end is not None else None,
        )
    except DataError:
        return []  # no recorded data for this symbol/interval: Binance answers an empty list
    span_ms = int(span / timedelta(milliseconds=1))
    rows = []
    for c in candles:
        open_ms = int(c.open_time.timestamp() * 1000)
        quote = c.volume * (c.open + c.close) / 2
        rows.append(
            [
                open_ms,
                fmt(c.open),
                fmt(c.high),
                fmt(c.low),
                fmt(c.close),
                fmt(c.volume),
                open_ms + span_ms - 1,
                fmt(quote),
                4,
                fmt(c.volume / 2),
                fmt(quote / 2),
                "0",
            ]
        )
    return rows


def _ticker_symbols(ctx: Context, params: Params) -> list[str]:
    if params.get("symbol"):
        return [ctx.symbol(params)]
    if params.get("symbols"):
        ids = params["symbols"].strip("[]").replace('"', "").split(",")
        return [ctx.symbol({"symbol": i}) for i in ids if i]
    return sorted(s for s in ctx.venue.markets if s in ctx.venue.replay.symbols)


def _one_or_list(params: Params, rows: list[dict[str, Any]]) -> Any:
    return rows[0] if params.get("symbol") else rows


async def ticker_24hr(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ticker/24hr from the last day of closed candles."""
    rows = []
    for symbol in _ticker_symbols(ctx, params):
        venue = ctx.venue
        stats = venue.replay.day_stats(symbol) if symbol in venue.replay.symbols else {}
        _, bids, asks = venue.book(symbol, 1)
        last = venue.last_price(symbol) or Decimal(0)
        opened = stats.get("open", last)
        volume = stats.get("volume", Decimal(0))
        quote = stats.get("quote_volume", Decimal(0))
        tape = venue.recent_trades(symbol, 1000)
        rows.append(
            {
                "symbol": symbol_id(symbol),
                "priceChange": fmt(last - opened),
                "priceChangePercent": f"{((last - opened) / opened * 100) if opened else 0:.3f}",
                "weightedAvgPrice": fmt(quote / volume if volume else last),
                "prevClosePrice": fmt(opened),
                "lastPrice": fmt(last),
                "lastQty": fmt(tape[-1].quantity if tape else Decimal(0)),
                "bidPrice": fmt(bids[0][0] if bids else None),
                "bidQty": fmt(bids[0][1] if bids else None),
                "askPrice": fmt(asks[0][0] if asks else None),
                "askQty": fmt(asks[0][1] if asks else None),
                "openPrice": fmt(opened),
                "highPrice": fmt(stats.get("high", last)),
                "lowPrice": fmt(stats.get("low", last)),
                "volume": fmt(volume),
                "quoteVolume": fmt(quote),
                "openTime": venue.now_ms - 86_400_000,
                "closeTime": venue.now_ms,
                "firstId": tape[0].trade_id if tape else -1,
                "lastId": tape[-1].trade_id if tape else -1,
                "count": len(tape),
            }
        )
    return _one_or_list(params, rows)


async def ticker_price(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ticker/price."""
    rows = [
        {"symbol": symbol_id(s), "price": fmt(ctx.venue.last_price(s))}
        for s in _ticker_symbols(ctx, params)
    ]
    return _one_or_list(params, rows)


async def book_ticker(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ticker/bookTicker."""
    rows = []
    for symbol in _ticker_symbols(ctx, params):
        _, bids, asks = ctx.venue.book(symbol, 1)
        rows.append(
            {
                "symbol": symbol_id(symbol),
                "bidPrice": fmt(bids[0][0] if bids else None),
                "bidQty": fmt(bids[0][1] if bids else None),
                "askPrice": fmt(asks[0][0] if asks else None),
                "askQty": fmt(asks[0][1] if asks else None),
            }
        )
    return _one_or_list(params, rows)


async def avg_price(ctx: Context, params: Params) -> Any:
    """GET /api/v3/avgPrice (the last price stands in for the 5-minute average)."""
    symbol = ctx.symbol(params)
    return {"mins": 5, "price": fmt(ctx.venue.last_price(symbol)), "closeTime": ctx.venue.now_ms}


# ------------------------------------------------------------------- account and orders
async def account(ctx: Context, params: Params) -> Any:
    """GET /api/v3/account."""
    acct = ctx.venue.account
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00100000",
            "taker": "0.00100000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": ctx.venue.now_ms,
        "accountType": "SPOT",
        "balances": [
            {"asset": a, "free": fmt(acct.free(a)), "locked": fmt(acct.locked(a))}
            for a in acct.assets()
            if params.get("omitZeroBalances") != "true" or acct.total(a) > 0
        ],
        "permissions": ["SPOT"],
        "uid": 354937868,
    }


def _enum(params: Params, name: str, allowed: dict[str, Any], code: int, msg: str) -> Any:
    raw = params.get(name)
    if not raw:
        raise mandatory(name)
    if raw.upper() not in allowed:
        raise bad_request(code, msg)
    return allowed[raw.upper()]


async def new_order(ctx: Context, params: Params) -> Any:
    """POST /api/v3/order: MARKET/LIMIT, GTC/IOC/FOK, ACK/RESULT/FULL."""
    symbol = ctx.symbol(params)
    side = _enum(params, "side", {"BUY": Side.BUY, "SELL": Side.SELL}, -1117, "Invalid side.")
    types = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT}
    type_ = _enum(params, "type", types, -1116, "Invalid orderType.")
    quantity, price = _decimal(params, "quantity"), _decimal(params, "price")
    quote_qty = _decimal(params, "quoteOrderQty")
    tif = TimeInForce.GTC
    if type_ is OrderType.LIMIT:
        tif = _enum(
            params, "timeInForce", dict(TimeInForce.__members__), -1115, "Invalid timeInForce."
        )
        if price is None:
            raise mandatory("price")
        if quantity is None:
            raise mandatory("quantity")
    else:
        if price is not None:
            raise bad_request(-1106, "Parameter 'price' sent when not required.")
        if quantity is None and quote_qty is None:
            raise bad_request(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
            )
    client_id = params.get("newClientOrderId") or f"emu_{secrets.token_hex(10)}"
    if len(client_id) > 36:
        raise bad_request(-1100, "Illegal characters found in parameter 'newClientOrderId'.")
    resp_type = (params.get("newOrderRespType") or "FULL").upper()
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise bad_request(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
    order = ctx.venue.place(
        symbol,
        side,
        type_,
        tif,
        quantity,
        price,
        client_id,
        quote_order_qty=quote_qty,
        max_fill_fraction=ctx.faults.take_fill_fraction(),
    )
    return order.new_order_json(resp_type)


def _lookup(ctx: Context, params: Params) -> tuple[str, int | None, str | None]:
    symbol = ctx.symbol(params)
    order_id = _int(params, "orderId")
    client_id = params.get("origClientOrderId")
    if order_id is None and not client_id:
        raise bad_request(
            -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
        )
    return symbol, order_id, client_id


async def query_order(ctx: Context, params: Params) -> Any:
    """GET /api/v3/order by orderId or origClientOrderId."""
    return ctx.venue.find(*_lookup(ctx, params)).json()


def _cancel_json(order: VenueOrder, new_client_id: str | None) -> dict[str, Any]:
    body = order.json()
    return {
        "symbol": body["symbol"],
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": new_client_id or f"cancel_{order.order_id}",
        "transactTime": order.updated_ms,
        **{k: body[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty")},
        **{k: body[k] for k in ("status", "timeInForce", "type", "side")},
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


async def cancel_order(ctx: Context, params: Params) -> Any:
    """DELETE /api/v3/order."""
    order = ctx.venue.cancel(*_lookup(ctx, params))
    return _cancel_json(order, params.get("newClientOrderId"))


async def open_orders(ctx: Context, params: Params) -> Any:
    """GET /api/v3/openOrders (one symbol or all)."""
    symbol = ctx.symbol(params) if params.get("symbol") else None
    return [o.json() for o in ctx.venue.orders(symbol) if o.is_open]


async def cancel_open_orders(ctx: Context, params: Params) -> Any:
    """DELETE /api/v3/openOrders."""
    return [_cancel_json(o, None) for o in ctx.venue.cancel_all(ctx.symbol(params))]


def _window(params: Params) -> tuple[int | None, int | None, int]:
    return _int(params, "startTime"), _int(params, "endTime"), _limit(params, 500, 1000)


async def all_orders(ctx: Context, params: Params) -> Any:
    """GET /api/v3/allOrders (orderId, startTime, endTime, limit)."""
    symbol = ctx.symbol(params)
    start, end, limit = _window(params)
    from_id = _int(params, "orderId")
    rows = [
        o
        for o in ctx.venue.orders(symbol)
        if (from_id is None or o.order_id >= from_id)
        and (start is None or o.created_ms >= start)
        and (end is None or o.created_ms <= end)
    ]
    return [o.json() for o in (rows[:limit] if from_id or start else rows[-limit:])]


async def my_trades(ctx: Context, params: Params) -> Any:
    """GET /api/v3/myTrades (orderId, fromId, startTime, endTime, limit)."""
    symbol = ctx.symbol(params)
    start, end, limit = _window(params)
    from_id, order_id = _int(params, "fromId"), _int(params, "orderId")
    rows = [
        f
        for f in ctx.venue.fills(symbol)
        if (from_id is None or f.trade_id >= from_id)
        and (order_id is None or f.order_id == order_id)
        and (start is None or f.time_ms >= start)
        and (end is None or f.time_ms <= end)
    ]
    chosen = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
    return [f.json() for f in chosen]


# ------------------------------------------------------------------- legacy listenKey
async def new_listen_key(ctx: Context, params: Params) -> Any:
    """POST /api/v3/userDataStream: a listenKey for /ws/<listenKey>."""
    key = secrets.token_urlsafe(45)[:60]
    ctx.listen_keys.add(key)
    return {"listenKey": key}


async def keep_listen_key(ctx: Context, params: Params) -> Any:
    """PUT /api/v3/userDataStream."""
    if params.get("listenKey") not in ctx.listen_keys:
        raise bad_request(-1125, "This listenKey does not exist.")
    return {}


async def close_listen_key(ctx: Context, params: Params) -> Any:
    """DELETE /api/v3/userDataStream."""
    ctx.listen_keys.discard(params.get("listenKey", ""))
    return {}


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "ping"): ping,
    ("GET", "time"): server_time,
    ("GET", "exchangeInfo"): exchange_information,
    ("GET", "depth"): depth,
    ("GET", "trades"): trades,
    ("GET", "klines"): klines,
    ("GET", "ticker/24hr"): ticker_24hr,
    ("GET", "ticker/price"): ticker_price,
    ("GET", "ticker/bookTicker"): book_ticker,
    ("GET", "avgPrice"): avg_price,
    ("GET", "account"): account,
    ("POST", "order"): new_order,
    ("GET", "order"): query_order,
    ("DELETE", "order"): cancel_order,
    ("GET", "openOrders"): open_orders,
    ("DELETE", "openOrders"): cancel_open_orders,
    ("GET", "allOrders"): all_orders,
    ("GET", "myTrades"): my_trades,
    ("POST", "userDataStream"): new_listen_key,
    ("PUT", "userDataStream"): keep_listen_key,
    ("DELETE", "userDataStream"): close_listen_key,
}


async def authorize(ctx: Context, request: web.Request, endpoint: str, params: Params) -> None:
    """Apply Binance's security type of `endpoint` (SIGNED, USER_STREAM or NONE)."""
    if endpoint in SIGNED:
        body = await request.text() if request.body_exists else ""
        check_signed(
            ctx.credentials,
            request.headers,
            request.rel_url.raw_query_string,
            body,
            params,
            wall_ms(),
        )
    elif endpoint in API_KEY_ONLY:
        check_api_key(ctx.credentials, request.headers)


async def read_params(request: web.Request) -> dict[str, str]:
    """Query string and form body merged, as Binance reads them."""
    params = {k: v for k, v in request.query.items()}
    if request.body_exists:
        form = await request.post()
        params.update({k: str(v) for k, v in form.items()})
    return params


def not_found() -> ApiError:
    """Binance answers unknown paths with a bare 404."""
    return ApiError(404, -1000, "Not found.")
