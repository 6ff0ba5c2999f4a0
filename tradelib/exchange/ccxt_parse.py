"""ccxt's unified dicts -> tradelib domain values (Decimal amounts, aware UTC times).

ccxt hands numbers over as floats; `to_decimal` goes through `repr`, which keeps the shortest
digits that round-trip, so an exchange's "0.00123000" arrives as Decimal("0.00123").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt

from tradelib.domain import (
    ZERO,
    Balance,
    Candle,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Market,
    MarketTrade,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    from_ms,
    to_decimal,
)
from tradelib.errors import DataError
from tradelib.exchange.base import BookSnapshot, Ticker

_STATUS = {
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def dec(value: Any, what: str, default: Decimal | None = None) -> Decimal | None:
    """Decimal from a ccxt number/string; `default` when ccxt has none."""
    if value is None or value == "":
        return default
    return to_decimal(value, what)


def _req(value: Any, what: str) -> Decimal:
    result = dec(value, what)
    if result is None:
        raise DataError(f"{what} is missing in the exchange's answer")
    return result


def precision_step(value: Any, precision_mode: int, what: str) -> Decimal:
    """Tick or lot step as Decimal, whatever ccxt precision mode the venue uses."""
    if value is None:
        raise DataError(f"{what} is missing: the exchange did not report a precision")
    if precision_mode == ccxt.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    if precision_mode == ccxt.SIGNIFICANT_DIGITS:
        raise DataError(f"{what}: significant-digit precision is not supported")
    return to_decimal(value, what)


def parse_market(m: Mapping[str, Any], precision_mode: int) -> Market:
    """One ccxt market -> Market with tick, step, minimums, maxima and fees as Decimal."""
    symbol = m["symbol"]
    limits = m.get("limits") or {}
    amount_limits = limits.get("amount") or {}
    cost_limits = limits.get("cost") or {}
    precision = m.get("precision") or {}
    return Market(
        symbol=symbol,
        base=m["base"],
        quote=m["quote"],
        price_tick=precision_step(precision.get("price"), precision_mode, f"{symbol} price tick"),
        amount_step=precision_step(
            precision.get("amount"), precision_mode, f"{symbol} amount step"
        ),
        min_amount=dec(amount_limits.get("min"), f"{symbol} min amount", ZERO) or ZERO,
        max_amount=dec(amount_limits.get("max"), f"{symbol} max amount"),
        min_notional=dec(cost_limits.get("min"), f"{symbol} min notional", ZERO) or ZERO,
        maker_fee=dec(m.get("maker"), f"{symbol} maker fee", Decimal("0.001")) or ZERO,
        taker_fee=dec(m.get("taker"), f"{symbol} taker fee", Decimal("0.001")) or ZERO,
        active=m.get("active") is not False,
    )


def _time(ms: Any, fallback: datetime | None = None) -> datetime:
    if ms is None:
        return fallback or datetime.now(UTC)
    return from_ms(int(ms))


def _fee_of(o: Mapping[str, Any]) -> tuple[Decimal, str | None]:
    fees = list(o.get("fees") or [])
    if not fees and o.get("fee"):
        fees = [o["fee"]]
    fees = [f for f in fees if f and f.get("cost") is not None]
    if not fees:
        return ZERO, None
    currency = fees[0].get("currency")
    total = sum(
        (_req(f["cost"], "fee") for f in fees if f.get("currency") == currency),
        ZERO,
    )
    return total, currency


def order_status(ccxt_status: str | None, filled: Decimal) -> OrderStatus:
    """ccxt's status string -> OrderStatus (open with fills is partially_filled)."""
    if ccxt_status in _STATUS:
        return _STATUS[ccxt_status]
    if ccxt_status == "open" or ccxt_status is None:
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
    raise DataError(f"unknown order status {ccxt_status!r} from the exchange")


def parse_order(
    o: Mapping[str, Any],
    exchange_id: str,
    fallback_client_id: str | None = None,
    mode: Mode = Mode.LIVE,
) -> Order:
    """One ccxt order -> Order; `fallback_client_id` when the venue's answer omits it."""
    cid = o.get("clientOrderId") or fallback_client_id
    if not cid:
        raise DataError(f"order {o.get('id')} on {exchange_id} carries no client order id")
    symbol = o["symbol"]
    amount = _req(o.get("amount"), f"order {cid} amount")
    filled = dec(o.get("filled"), f"order {cid} filled", ZERO) or ZERO
    order_type = OrderType.MARKET if o.get("type") == "market" else OrderType.LIMIT
    price = dec(o.get("price"), f"order {cid} price")
    if price is not None and price <= 0:
        price = None
    if order_type is OrderType.MARKET:
        price = None
    average = dec(o.get("average"), f"order {cid} average")
    executions = [t for t in o.get("trades") or [] if t.get("amount") and t.get("price")]
    if executions:  # the fills themselves beat a summary field
        qty = sum((_req(t["amount"], "fill amount") for t in executions), ZERO)
        value = sum(
            (_req(t["amount"], "fill amount") * _req(t["price"], "fill price") for t in executions),
            ZERO,
        )
        if qty > 0:
            average = value / qty
    if filled == 0:
        average = None
    tif_text = (o.get("timeInForce") or "GTC").upper()
    tif = TimeInForce(tif_text) if tif_text in TimeInForce.__members__ else TimeInForce.GTC
    fee, fee_currency = _fee_of(o)
    created = _time(o.get("timestamp"))
    updated_ms = o.get("lastUpdateTimestamp") or o.get("lastTradeTimestamp")
    return Order(
        client_order_id=ClientOrderId(cid),
        symbol=symbol,
        side=Side(o["side"]),
        type=order_type,
        quantity=amount,
        created_at=created,
        price=price,
        status=order_status(o.get("status"), filled),
        time_in_force=tif,
        exchange=exchange_id,
        mode=mode,
        exchange_order_id=ExchangeOrderId(str(o["id"])) if o.get("id") is not None else None,
        filled_quantity=filled,
        average_price=average,
        fee=fee,
        fee_currency=fee_currency,
        reduce_only=bool(o.get("reduceOnly") or False),
        updated_at=_time(updated_ms, created) if updated_ms else created,
    )


def parse_fill(t: Mapping[str, Any], client_order_id: str) -> Fill:
    """One ccxt trade of ours -> Fill with fee and fee currency."""
    fee = t.get("fee") or {}
    return Fill(
        trade_id=str(t["id"]),
        client_order_id=ClientOrderId(client_order_id),
        symbol=t["symbol"],
        side=Side(t["side"]),
        quantity=_req(t.get("amount"), f"trade {t.get('id')} amount"),
        price=_req(t.get("price"), f"trade {t.get('id')} price"),
        fee=dec(fee.get("cost"), f"trade {t.get('id')} fee", ZERO) or ZERO,
        fee_currency=str(fee.get("currency") or ""),
        timestamp=_time(t.get("timestamp")),
        is_maker=t.get("takerOrMaker") == "maker",
    )


def parse_balances(b: Mapping[str, Any], exchange_id: str) -> dict[str, Balance]:
    """ccxt balance structure -> Balance per asset (assets with a zero total are dropped)."""
    out: dict[str, Balance] = {}
    skip = {"info", "free", "used", "total", "timestamp", "datetime", "debt"}
    for asset, entry in b.items():
        if asset in skip or not isinstance(entry, Mapping):
            continue
        free = dec(entry.get("free"), f"{asset} free", ZERO) or ZERO
        used = dec(entry.get("used"), f"{asset} locked", ZERO) or ZERO
        if free == 0 and used == 0:
            continue
        out[asset] = Balance(exchange_id, asset, free, used)
    return out


def parse_market_trade(t: Mapping[str, Any]) -> MarketTrade:
    """One ccxt public trade -> MarketTrade."""
    side = t.get("side")
    return MarketTrade(
        symbol=t["symbol"],
        trade_id=str(t.get("id")),
        price=_req(t.get("price"), "trade price"),
        quantity=_req(t.get("amount"), "trade amount"),
        timestamp=_time(t.get("timestamp")),
        taker_side=Side(side) if side in ("buy", "sell") else None,
    )


def parse_candle(symbol: str, timeframe: str, row: list[Any], closed: bool = True) -> Candle:
    """One ccxt OHLCV row [ms, o, h, l, c, v] -> Candle."""
    ms, o, h, low, c, v = row[:6]
    return Candle(
        symbol=symbol,
        timeframe=timeframe,
        open_time=from_ms(int(ms)),
        open=_req(o, "open"),
        high=_req(h, "high"),
        low=_req(low, "low"),
        close=_req(c, "close"),
        volume=dec(v, "volume", ZERO) or ZERO,
        closed=closed,
    )


def parse_book(symbol: str, b: Mapping[str, Any]) -> BookSnapshot:
    """ccxt order book -> BookSnapshot (best first)."""

    def levels(rows: Any, what: str) -> list[tuple[Decimal, Decimal]]:
        return [(_req(r[0], what), _req(r[1], what)) for r in rows or []]

    nonce = b.get("nonce")
    return BookSnapshot(
        symbol=symbol,
        bids=levels(b.get("bids"), f"{symbol} bid"),
        asks=levels(b.get("asks"), f"{symbol} ask"),
        timestamp=_time(b.get("timestamp")),
        update_id=int(nonce) if nonce is not None else None,
    )


def parse_ticker(symbol: str, t: Mapping[str, Any]) -> Ticker:
    """ccxt ticker -> Ticker."""
    return Ticker(
        symbol=symbol,
        bid=dec(t.get("bid"), f"{symbol} bid"),
        ask=dec(t.get("ask"), f"{symbol} ask"),
        last=dec(t.get("last"), f"{symbol} last"),
        timestamp=_time(t.get("timestamp")),
    )
