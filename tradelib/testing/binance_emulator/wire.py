"""Binance's wire format: error codes, number formatting and the JSON of orders and fills."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tradelib.domain import OrderType, Side, TimeInForce


class ApiError(Exception):
    """Raised by handlers to answer with Binance's error JSON and HTTP status."""

    def __init__(
        self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON Binance sends: {"code": -1013, "msg": "..."}."""
        return {"code": self.code, "msg": self.msg}


INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."
DUPLICATE_ORDER = "Duplicate order sent."


def bad_request(code: int, msg: str) -> ApiError:
    """A 400 with Binance's code and message."""
    return ApiError(400, code, msg)


def mandatory(name: str) -> ApiError:
    """-1102: a required parameter is missing."""
    return bad_request(-1102, f"Mandatory parameter '{name}' was not sent, was empty/malformed.")


def fmt(value: Decimal | None) -> str:
    """Binance prints amounts with 8 decimals as strings."""
    return f"{(value or Decimal(0)):.8f}"


def symbol_id(symbol: str) -> str:
    """'ARB/USDT' -> 'ARBUSDT'."""
    return symbol.replace("/", "")


BINANCE_TYPE = {OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT"}
BINANCE_SIDE = {Side.BUY: "BUY", Side.SELL: "SELL"}


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One of our executions, as /api/v3/myTrades reports it."""

    trade_id: int
    order_id: int
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    def json(self) -> dict[str, Any]:
        """/api/v3/myTrades entry."""
        return {
            "symbol": symbol_id(self.symbol),
            "id": self.trade_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.quantity),
            "quoteQty": fmt(self.price * self.quantity),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.side is Side.BUY,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }

    def order_fill_json(self) -> dict[str, Any]:
        """Entry of the `fills` list of a FULL new-order answer."""
        return {
            "price": fmt(self.price),
            "qty": fmt(self.quantity),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }


@dataclass(slots=True)
class VenueOrder:
    """An order as the emulated exchange holds it (Binance status strings)."""

    order_id: int
    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    quantity: Decimal
    created_ms: int
    quote_order_qty: Decimal | None = None
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cumulative_quote: Decimal = Decimal(0)
    updated_ms: int = 0
    max_fill: Decimal | None = None
    fills: list[VenueFill] = field(default_factory=list)

    @property
    def lock_key(self) -> str:
        """Key of this order's balance lock in the Account."""
        return f"order:{self.order_id}"

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        """Quantity still to fill, within the forced-partial cap if one applies."""
        cap = self.quantity if self.max_fill is None else min(self.quantity, self.max_fill)
        return max(Decimal(0), cap - self.executed)

    def json(self) -> dict[str, Any]:
        """GET /api/v3/order answer."""
        return {
            "symbol": symbol_id(self.symbol),
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.quantity),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.cumulative_quote),
            "status": self.status,
            "timeInForce": self.time_in_force.value,
            "type": BINANCE_TYPE[self.type],
            "side": BINANCE_SIDE[self.side],
            "stopPrice": fmt(Decimal(0)),
            "icebergQty": fmt(Decimal(0)),
            "time": self.created_ms,
            "updateTime": self.updated_ms or self.created_ms,
            "isWorking": self.is_open,
            "workingTime": self.created_ms,
            "origQuoteOrderQty": fmt(self.quote_order_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def new_order_json(self, resp_type: str) -> dict[str, Any]:
        """POST /api/v3/order answer for newOrderRespType ACK, RESULT or FULL."""
        ack = {
            "symbol": symbol_id(self.symbol),
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.created_ms,
        }
        if resp_type == "ACK":
            return ack
        full = self.json()
        result = {
            **ack,
            **{k: full[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty")},
            **{k: full[k] for k in ("status", "timeInForce", "type", "side", "workingTime")},
            "origQuoteOrderQty": full["origQuoteOrderQty"],
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if resp_type == "FULL":
            result["fills"] = [f.order_fill_json() for f in self.fills]
        return result

    def execution_report(
        self, execution: str, event_ms: int, fill: VenueFill | None = None
    ) -> dict[str, Any]:
        """The user-data `executionReport` event for this order."""
        return {
            "e": "executionReport",
            "E": event_ms,
            "s": symbol_id(self.symbol),
            "c": self.client_order_id,
            "S": BINANCE_SIDE[self.side],
            "o": BINANCE_TYPE[self.type],
            "f": self.time_in_force.value,
            "q": fmt(self.quantity),
            "p": fmt(self.price),
            "P": fmt(Decimal(0)),
            "F": fmt(Decimal(0)),
            "g": -1,
            "C": "",
            "x": execution,
            "X": self.status,
            "r": "NONE",
            "i": self.order_id,
            "l": fmt(fill.quantity if fill else Decimal(0)),
            "z": fmt(self.executed),
            "L": fmt(fill.price if fill else Decimal(0)),
            "n": fmt(fill.commission if fill else Decimal(0)),
            "N": fill.commission_asset if fill else None,
            "T": fill.time_ms if fill else event_ms,
            "t": fill.trade_id if fill else -1,
            "v": 0,
            "I": event_ms,
            "w": self.is_open,
            "m": bool(fill and fill.is_maker),
            "M": False,
            "O": self.created_ms,
            "Z": fmt(self.cumulative_quote),
            "Y": fmt(fill.price * fill.quantity if fill else Decimal(0)),
            "Q": fmt(self.quote_order_qty),
            "W": self.created_ms,
            "V": "EXPIRE_MAKER",
        }
