"""The /api/v3 REST routes ccxt 4.5.90 uses for Binance spot; account and order endpoints."""

from __future__ import annotations

import re
import secrets
from typing import Any

from tradelib.domain import OrderType, Side, TimeInForce
from tradelib.testing.binance_emulator import market_data as md
from tradelib.testing.binance_emulator.context import (
    Context,
    Handler,
    Params,
    decimal_param,
    int_param,
    limit_param,
)
from tradelib.testing.binance_emulator.wire import VenueOrder, bad_request, fmt, mandatory

CLIENT_ORDER_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")  # Binance's legal range


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
    ctx.key_permissions.require_trading()
    symbol = ctx.symbol(params)
    side = _enum(params, "side", {"BUY": Side.BUY, "SELL": Side.SELL}, -1117, "Invalid side.")
    types = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT}
    type_ = _enum(params, "type", types, -1116, "Invalid orderType.")
    quantity, price = decimal_param(params, "quantity"), decimal_param(params, "price")
    quote_qty = decimal_param(params, "quoteOrderQty")
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
    if not CLIENT_ORDER_ID.fullmatch(client_id):
        raise bad_request(
            -1100,
            "Illegal characters found in parameter 'newClientOrderId'; legal range is "
            "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
        )
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
    order_id = int_param(params, "orderId")
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
    ctx.key_permissions.require_trading()
    order = ctx.venue.cancel(*_lookup(ctx, params))
    return _cancel_json(order, params.get("newClientOrderId"))


async def open_orders(ctx: Context, params: Params) -> Any:
    """GET /api/v3/openOrders (one symbol or all)."""
    symbol = ctx.symbol(params) if params.get("symbol") else None
    return [o.json() for o in ctx.venue.orders(symbol) if o.is_open]


async def cancel_open_orders(ctx: Context, params: Params) -> Any:
    """DELETE /api/v3/openOrders."""
    ctx.key_permissions.require_trading()
    return [_cancel_json(o, None) for o in ctx.venue.cancel_all(ctx.symbol(params))]


def _window(params: Params) -> tuple[int | None, int | None, int]:
    return (
        int_param(params, "startTime"),
        int_param(params, "endTime"),
        limit_param(params, 500, 1000),
    )


async def all_orders(ctx: Context, params: Params) -> Any:
    """GET /api/v3/allOrders (orderId, startTime, endTime, limit)."""
    symbol = ctx.symbol(params)
    start, end, limit = _window(params)
    from_id = int_param(params, "orderId")
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
    from_id, order_id = int_param(params, "fromId"), int_param(params, "orderId")
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


async def api_restrictions(ctx: Context, params: Params) -> Any:
    """GET /sapi/v1/account/apiRestrictions: what the emulator's API key may do."""
    return ctx.key_permissions.json()


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
    ("GET", "ping"): md.ping,
    ("GET", "time"): md.server_time,
    ("GET", "exchangeInfo"): md.exchange_information,
    ("GET", "depth"): md.depth,
    ("GET", "trades"): md.trades,
    ("GET", "aggTrades"): md.agg_trades,
    ("GET", "klines"): md.klines,
    ("GET", "ticker/24hr"): md.ticker_24hr,
    ("GET", "ticker/price"): md.ticker_price,
    ("GET", "ticker/bookTicker"): md.book_ticker,
    ("GET", "avgPrice"): md.avg_price,
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

# /sapi/v1/<endpoint>: Binance's wallet and account-management API.
SAPI_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "account/apiRestrictions"): api_restrictions,
}
