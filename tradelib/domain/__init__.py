"""Value types shared by every layer: no I/O, no clock, Decimal money, aware UTC times.

The market arithmetic they rest on (times, milliseconds, timeframes, steps, symbols) lives in
`tradelib.domain.market_math` and is re-exported here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NewType

from tradelib.domain.market_math import (
    EPOCH,
    MAX_CLOCK_SKEW,
    from_ms,
    is_multiple,
    pandas_freq,
    parse_candle_file,
    require_utc,
    round_down,
    round_nearest,
    round_up,
    split_symbol,
    stamped_in_future,
    timeframe_delta,
    timeframe_ms,
    to_ms,
)
from tradelib.errors import DataError, IllegalTransition

ClientOrderId = NewType("ClientOrderId", str)
ExchangeOrderId = NewType("ExchangeOrderId", str)
StrategyId = NewType("StrategyId", str)
Symbol = NewType("Symbol", str)

ZERO = Decimal(0)

__all__ = [
    "EPOCH",
    "MAX_CLOCK_SKEW",
    "ZERO",
    "Balance",
    "Candle",
    "ClientOrderId",
    "ExchangeOrderId",
    "Fill",
    "Market",
    "MarketTrade",
    "Mode",
    "Order",
    "OrderStatus",
    "OrderType",
    "Position",
    "PositionStatus",
    "Side",
    "Signal",
    "SignalKind",
    "StrategyId",
    "Symbol",
    "TimeInForce",
    "client_order_id",
    "from_ms",
    "is_multiple",
    "pandas_freq",
    "parse_candle_file",
    "positive_amount",
    "require_utc",
    "round_down",
    "round_nearest",
    "round_up",
    "split_symbol",
    "stamped_in_future",
    "timeframe_delta",
    "timeframe_ms",
    "to_decimal",
    "to_ms",
]


class Mode(StrEnum):
    """Whether orders reach a real exchange (live) or the paper matcher."""

    PAPER = "paper"
    LIVE = "live"


class Side(StrEnum):
    """Direction of an order or trade."""

    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        """The side that closes a position opened with this side."""
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        """+1 for buys, -1 for sells: the sign of the position change."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    """How long an order rests on the book."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    """Lifecycle of an order, from written-to-store to a terminal state."""

    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """True when no further transition is possible."""
        return self in _TERMINAL

    def can_become(self, new: OrderStatus) -> bool:
        """True when moving from this status to `new` is a legal transition."""
        return new in _TRANSITIONS[self]


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    # Pending means "written to the store, answer not yet seen": any outcome can follow,
    # including fills reported before the acknowledgement.
    OrderStatus.PENDING: frozenset(
        {
            OrderStatus.OPEN,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.REJECTED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.OPEN: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    # A second partial fill keeps the status; it is still a legal (self) transition.
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


def to_decimal(value: Any, what: str) -> Decimal:
    """Convert a number or numeric string to a finite Decimal, or raise DataError naming it."""
    if isinstance(value, float):
        value = repr(value)  # repr keeps the shortest round-tripping digits, str(Decimal(f)) not
    try:
        result = Decimal(value)
    except Exception as exc:  # decimal.InvalidOperation, TypeError
        raise DataError(f"{what} is not a number: {value!r}") from exc
    if not result.is_finite():
        raise DataError(f"{what} must be finite, got {value!r}")
    return result


def positive_amount(value: Any, what: str) -> Decimal:
    """`value` as a finite Decimal > 0 (a quantity or price of an order), or DataError.

    Floats are refused rather than converted: an order's numbers must be exactly what the
    caller meant, and 0.1 as a float is not 0.1. Decimal, int and numeric text are taken.
    """
    if isinstance(value, float | bool) or not isinstance(value, Decimal | int | str):
        raise DataError(
            f"{what} must be a Decimal (or an int or numeric text), not {type(value).__name__} "
            f"{value!r}: pass Decimal('{value}') so no digit is lost"
        )
    number = to_decimal(value, what)
    if number <= 0:  # -0 included
        raise DataError(f"{what} must be greater than 0, got {value!r}")
    return number


def client_order_id(strategy: str, symbol: str, intent_key: str, attempt: int = 0) -> ClientOrderId:
    """Deterministic client order id: the same intent always maps to the same id.

    Binance allows 36 characters from [.A-Z:/a-z0-9_-]; a hash keeps us inside that for any
    strategy or symbol name and makes a resent intent collide instead of duplicating.
    """
    digest = hashlib.sha256(f"{strategy}|{symbol}|{intent_key}|{attempt}".encode()).hexdigest()
    return ClientOrderId(f"tl-{digest[:29]}")


@dataclass(frozen=True, slots=True)
class Market:
    """Trading rules of one symbol, as the exchange applies them."""

    symbol: str
    base: str
    quote: str
    price_tick: Decimal
    amount_step: Decimal
    min_amount: Decimal = ZERO
    max_amount: Decimal | None = None
    min_notional: Decimal = ZERO
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    active: bool = True


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order."""

    trade_id: str
    client_order_id: ClientOrderId
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    timestamp: datetime
    is_maker: bool = False

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise DataError(f"fill {self.trade_id}: quantity must be > 0, got {self.quantity}")
        if self.price <= 0:
            raise DataError(f"fill {self.trade_id}: price must be > 0, got {self.price}")
        if self.fee < 0:
            raise DataError(f"fill {self.trade_id}: fee must be >= 0, got {self.fee}")
        object.__setattr__(self, "timestamp", require_utc(self.timestamp, "fill timestamp"))

    @property
    def notional(self) -> Decimal:
        """Quantity times price, in quote currency."""
        return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class Order:
    """An order as tradelib knows it; changes only through `transition` and `apply_fill`.

    `stop_price` is the stop-loss the strategy chose for the position this order opens or adds
    to (None: the default distance from the average fill); the position takes it on the fill.
    """

    client_order_id: ClientOrderId
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    created_at: datetime
    price: Decimal | None = None
    status: OrderStatus = OrderStatus.PENDING
    time_in_force: TimeInForce = TimeInForce.GTC
    strategy_id: StrategyId = StrategyId("manual")
    exchange: str = "binance"
    mode: Mode = Mode.PAPER
    exchange_order_id: ExchangeOrderId | None = None
    filled_quantity: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO
    fee_currency: str | None = None
    reduce_only: bool = False
    updated_at: datetime | None = None
    reason: str | None = None
    stop_price: Decimal | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise DataError(f"order {self.client_order_id}: quantity must be > 0")
        if self.type is OrderType.LIMIT and (self.price is None or self.price <= 0):
            raise DataError(f"order {self.client_order_id}: a limit order needs a price > 0")
        stop = self.stop_price
        if stop is not None and (not stop.is_finite() or stop <= 0):
            raise DataError(f"order {self.client_order_id}: stop price must be > 0")
        object.__setattr__(self, "created_at", require_utc(self.created_at, "order created_at"))

    @property
    def remaining(self) -> Decimal:
        """Quantity not filled yet."""
        return self.quantity - self.filled_quantity

    def transition(self, new: OrderStatus, at: datetime, reason: str | None = None) -> Order:
        """Return this order in status `new`, or raise IllegalTransition."""
        if not self.status.can_become(new):
            raise IllegalTransition(
                f"order {self.client_order_id} cannot go from {self.status} to {new}"
            )
        return replace(self, status=new, updated_at=at, reason=reason or self.reason)

    def apply_fill(self, fill: Fill) -> Order:
        """Return this order with `fill` added: quantity, average price, fee and status."""
        if fill.client_order_id != self.client_order_id:
            raise DataError(f"fill {fill.trade_id} belongs to {fill.client_order_id}")
        filled = self.filled_quantity + fill.quantity
        if filled > self.quantity:
            raise DataError(
                f"fill {fill.trade_id} overfills order {self.client_order_id}: "
                f"{filled} > {self.quantity}"
            )
        prior = self.filled_quantity * (self.average_price or ZERO)
        average = (prior + fill.notional) / filled
        status = OrderStatus.FILLED if filled == self.quantity else OrderStatus.PARTIALLY_FILLED
        moved = self.transition(status, fill.timestamp)
        return replace(
            moved,
            filled_quantity=filled,
            average_price=average,
            fee=self.fee + fill.fee,
            fee_currency=fill.fee_currency,
        )


class PositionStatus(StrEnum):
    """Open (entry filled), partial (entry or exit partly filled) or closed."""

    OPEN = "open"
    PARTIAL = "partial"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Position:
    """Net holding of one strategy in one symbol on one exchange."""

    strategy_id: StrategyId
    exchange: str
    symbol: str
    side: Side
    quantity: Decimal
    average_entry: Decimal
    opened_at: datetime
    status: PositionStatus = PositionStatus.OPEN
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: Decimal | None = None
    high_water: Decimal | None = None
    closed_at: datetime | None = None
    mode: Mode = Mode.PAPER

    def unrealized_pnl(self, price: Decimal) -> Decimal:
        """P&L of the open quantity marked at `price`, before exit fees."""
        return (price - self.average_entry) * self.quantity * self.side.sign


@dataclass(frozen=True, slots=True)
class Balance:
    """Free and locked amount of one asset on one exchange."""

    exchange: str
    asset: str
    free: Decimal
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        """Free plus locked."""
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; `open_time` is the start of the interval."""

    symbol: str
    timeframe: str
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "open_time", require_utc(self.open_time, "candle open_time"))
        for name in ("open", "high", "low", "close"):
            value = getattr(self, name)
            if not value.is_finite() or value <= 0:
                raise DataError(f"{self._where()}: {name} must be a positive number, got {value}")
        if self.volume < 0:
            raise DataError(f"{self._where()}: volume must be >= 0, got {self.volume}")
        if self.high < max(self.open, self.close, self.low) or self.low > min(
            self.open, self.close
        ):
            raise DataError(f"{self._where()}: high/low do not enclose open/close")

    def _where(self) -> str:
        # Built only for an error message: candles are made by the thousand per second.
        return f"{self.symbol} {self.timeframe} candle at {self.open_time.isoformat()}"


@dataclass(frozen=True, slots=True)
class MarketTrade:
    """One public trade printed by the exchange."""

    symbol: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    timestamp: datetime
    taker_side: Side | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", require_utc(self.timestamp, "trade timestamp"))
        if not self.price.is_finite() or self.price <= 0:
            raise DataError(f"{self.symbol} trade {self.trade_id}: price must be > 0")
        if not self.quantity.is_finite() or self.quantity <= 0:
            raise DataError(f"{self.symbol} trade {self.trade_id}: quantity must be > 0")


class SignalKind(StrEnum):
    """Whether a signal opens or closes a position."""

    ENTRY = "entry"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's wish, before risk sizing: enter or exit `symbol` on `side`."""

    strategy_id: StrategyId
    symbol: str
    side: Side
    kind: SignalKind
    at: datetime
    reason: str
    reference_price: Decimal | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_utc(self.at, "signal time"))


@dataclass(frozen=True, slots=True)
class ApiKeyRestrictions:
    """What an exchange says one API key may do; None where the venue does not say.

    `ip_restricted` is True when the key only works from whitelisted IP addresses. `details`
    keeps the venue's other flags (futures, margin, internal transfer, …) by their own names.
    """

    exchange: str
    fetched_at: datetime
    can_read: bool | None
    can_trade_spot: bool | None
    can_withdraw: bool | None
    ip_restricted: bool | None
    can_transfer: bool | None = None
    created_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fetched_at", require_utc(self.fetched_at, "restrictions time"))

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (for the store and the audit log)."""
        return {
            "exchange": self.exchange,
            "fetched_at": self.fetched_at.isoformat(),
            "can_read": self.can_read,
            "can_trade_spot": self.can_trade_spot,
            "can_withdraw": self.can_withdraw,
            "ip_restricted": self.ip_restricted,
            "can_transfer": self.can_transfer,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "details": dict(self.details),
        }
