"""What the market data streamer publishes, and the exchange surface it reads from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from tradelib.domain import Candle, MarketTrade
from tradelib.exchange.base import BookSnapshot

Level = tuple[Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class CandleClosed:
    """A final candle; `source` is 'stream' or 'backfill' (read over REST)."""

    candle: Candle
    source: str


@dataclass(frozen=True, slots=True)
class BookTop:
    """Best bid and ask of one symbol after a book update that changed them."""

    symbol: str
    bid: Level | None
    ask: Level | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class TradesReceived:
    """A batch of public trades as the exchange printed them."""

    symbol: str
    trades: tuple[MarketTrade, ...]


@dataclass(frozen=True, slots=True)
class StalenessChanged:
    """A symbol became stale (no data for longer than the bound) or fresh again."""

    symbol: str
    stale: bool
    last_update: datetime | None
    at: datetime


@dataclass(frozen=True, slots=True)
class StreamReconnecting:
    """A stream failed and will be re-opened after `delay` seconds."""

    symbol: str
    stream: str
    reason: str
    attempt: int
    delay: float


class MarketDataSource(Protocol):
    """The part of the `Exchange` protocol the streamer uses (every Exchange satisfies it)."""

    def watch_trades(self, symbol: str) -> AsyncIterator[list[MarketTrade]]:
        """Public trades as they print."""
        ...

    def watch_order_book(self, symbol: str) -> AsyncIterator[BookSnapshot]:
        """Order book updates."""
        ...

    def watch_ohlcv(self, symbol: str, timeframe: str = "1m") -> AsyncIterator[list[Candle]]:
        """Candle updates."""
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


MarketEvent = CandleClosed | BookTop | TradesReceived | StalenessChanged | StreamReconnecting
