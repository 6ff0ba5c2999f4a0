"""The `Exchange` protocol: what the rest of tradelib may ask of any venue (live or paper)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from tradelib.domain import (
    ApiKeyRestrictions,
    Balance,
    Candle,
    ClientOrderId,
    Fill,
    Market,
    MarketTrade,
    Order,
    OrderType,
    Side,
    TimeInForce,
    positive_amount,
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What to send: the executor builds it, the exchange rounds and checks it."""

    client_order_id: ClientOrderId
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False

    def __post_init__(self) -> None:
        # The last line before a venue: a NaN, a float or a -0 must never reach the wire.
        where = f"order {self.client_order_id} ({self.symbol})"
        object.__setattr__(self, "quantity", positive_amount(self.quantity, f"{where} quantity"))
        if self.price is not None:
            object.__setattr__(self, "price", positive_amount(self.price, f"{where} price"))


@dataclass(frozen=True, slots=True)
class Ticker:
    """Best bid/ask and last price of one symbol at one moment."""

    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Price levels, best first: bids descending, asks ascending."""

    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    timestamp: datetime
    update_id: int | None = None


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order's state as the exchange reports it, with the fills it carries."""

    order: Order
    fills: tuple[Fill, ...] = field(default_factory=tuple)


@runtime_checkable
class Exchange(Protocol):
    """Everything tradelib asks of a venue. All prices/amounts are Decimal, times aware UTC."""

    id: str

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        """Markets by symbol ('ARB/USDT') with precision, limits and fees."""
        ...

    async def fetch_balances(self) -> dict[str, Balance]:
        """Balances by asset, free and locked."""
        ...

    async def create_order(self, request: OrderRequest) -> Order:
        """Send an order; on a lost answer resolve it by client order id, never resend."""
        ...

    async def cancel_order(self, client_order_id: ClientOrderId, symbol: str) -> Order:
        """Cancel an open order; returns its final state."""
        ...

    async def fetch_order(self, client_order_id: ClientOrderId, symbol: str) -> Order:
        """Current state of one order, looked up by client order id."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders still resting on the book."""
        ...

    async def fetch_my_trades(
        self, symbol: str, since: datetime | None = None, limit: int | None = None
    ) -> list[Fill]:
        """Own executions of `symbol` since `since`, oldest first."""
        ...

    async def fetch_order_fills(self, client_order_id: ClientOrderId, symbol: str) -> list[Fill]:
        """Own executions of one order, oldest first (independent of clock skew)."""
        ...

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1h",
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Candle]:
        """Closed (and the current open) candles, oldest first."""
        ...

    async def fetch_ticker(self, symbol: str) -> Ticker:
        """Best bid/ask and last price."""
        ...

    async def fetch_order_book(self, symbol: str, limit: int = 100) -> BookSnapshot:
        """Order book snapshot."""
        ...

    def watch_trades(self, symbol: str) -> AsyncIterator[list[MarketTrade]]:
        """Public trades as they print."""
        ...

    def watch_order_book(self, symbol: str) -> AsyncIterator[BookSnapshot]:
        """Order book updates."""
        ...

    def watch_ohlcv(self, symbol: str, timeframe: str = "1m") -> AsyncIterator[list[Candle]]:
        """Candle updates."""
        ...

    def watch_orders(self, symbol: str | None = None) -> AsyncIterator[list[OrderUpdate]]:
        """Own order updates (user data stream)."""
        ...

    async def fetch_api_restrictions(self) -> ApiKeyRestrictions:
        """What the API key in use may do (withdraw, trade spot, IP whitelist); NoApiKey if none."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
