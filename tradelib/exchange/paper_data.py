"""Market data for the paper exchange: recorded (ReplayMarket) or live (another Exchange).

Both implement `MarketDataSource` (defined in `tradelib.exchange.paper`): rules, book, ticker,
candles, the trades printed since a consumer last asked, and a way to let time pass. With a
replay, letting time pass *is* advancing the replay clock; with live data it is sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tradelib.domain import Candle, Market, MarketTrade, require_utc
from tradelib.errors import TradelibError, UnknownSymbol
from tradelib.exchange.base import BookSnapshot, Exchange, Ticker
from tradelib.exchange.replay import ReplayMarket
from tradelib.logs import get_logger

log = get_logger(__name__)


class _TradeBuffers:
    """Per (consumer, symbol) queues so every consumer sees every printed trade exactly once."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, str], list[MarketTrade]] = {}
        self._changed = asyncio.Event()

    def subscribe(self, consumer: str, symbol: str) -> bool:
        """Start buffering `symbol` for `consumer`; True when this is a new subscription."""
        if (consumer, symbol) in self._buffers:
            return False
        self._buffers[(consumer, symbol)] = []
        return True

    def publish(self, trades: list[MarketTrade]) -> None:
        """Append printed trades to every buffer subscribed to their symbol."""
        by_symbol: dict[str, list[MarketTrade]] = defaultdict(list)
        for trade in trades:
            by_symbol[trade.symbol].append(trade)
        for (_, symbol), buffer in self._buffers.items():
            buffer.extend(by_symbol.get(symbol, ()))
        self._changed.set()

    def drain(self, consumer: str, symbol: str) -> list[MarketTrade]:
        """Trades buffered for `consumer` on `symbol`, oldest first; empties the buffer."""
        buffer = self._buffers.setdefault((consumer, symbol), [])
        out = list(buffer)
        buffer.clear()
        return out

    async def wait(self, timeout: float) -> None:
        """Wait until something is published (or `timeout` seconds pass)."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


class ReplayMarketData:
    """A ReplayMarket as a market data source; waiting advances the replay clock."""

    def __init__(self, replay: ReplayMarket) -> None:
        self.replay = replay
        self._buffers = _TradeBuffers()

    def now(self) -> datetime:
        """The replay clock."""
        return self.replay.now

    async def markets(self) -> dict[str, Market]:
        """Rules of every replayed symbol."""
        return {s: self.replay.market(s) for s in self.replay.symbols}

    async def book(self, symbol: str, depth: int = 100) -> BookSnapshot:
        """The replay's synthetic book at the replay clock."""
        return self.replay.book(symbol, depth)

    async def ticker(self, symbol: str) -> Ticker:
        """Best bid/ask and last price at the replay clock."""
        return self.replay.ticker(symbol)

    async def candles(
        self, symbol: str, timeframe: str, since: datetime | None, limit: int | None
    ) -> list[Candle]:
        """Closed candles up to the replay clock."""
        return self.replay.candles(symbol, timeframe, since=since, limit=limit or 500)

    async def new_trades(self, symbol: str, consumer: str = "paper") -> list[MarketTrade]:
        """Trades printed since `consumer` last asked about `symbol` (none on the first ask)."""
        self.replay.market(symbol)
        self._buffers.subscribe(consumer, symbol)
        return self._buffers.drain(consumer, symbol)

    async def wait_until(self, when: datetime) -> None:
        """Advance the replay clock to `when` (no-op when it is already later)."""
        when = require_utc(when, "wait_until")
        if when > self.replay.now:
            self._buffers.publish(self.replay.advance_to(when))

    async def advance_to(self, when: datetime) -> None:
        """Move the replay forward to `when`, publishing the trades printed meanwhile."""
        await self.wait_until(when)

    async def step(self, count: int = 1) -> None:
        """Advance by `count` replay timeframes."""
        self._buffers.publish(self.replay.step(count))

    async def wait_for_data(self, timeout: float) -> None:
        """Wait until the replay advances (somebody calls advance_to/step) or `timeout`."""
        await self._buffers.wait(timeout)


class ExchangeMarketData:
    """Live public data of another Exchange (e.g. CcxtExchange) for paper trading.

    `clock` is the market's time (default: the wall clock); a rehearsal against the local
    emulator passes the emulator's replay clock so paper fills carry the market's time.
    """

    def __init__(
        self,
        exchange: Exchange,
        book_depth: int = 100,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.exchange = exchange
        self.book_depth = book_depth
        self._clock = clock or (lambda: datetime.now(UTC))
        self._buffers = _TradeBuffers()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._markets: dict[str, Market] = {}
        self.errors: list[str] = []

    def now(self) -> datetime:
        """The market's time (wall-clock UTC unless a clock was given)."""
        return self._clock()

    async def markets(self) -> dict[str, Market]:
        """Rules from the live exchange."""
        if not self._markets:
            self._markets = await self.exchange.load_markets()
        return dict(self._markets)

    async def book(self, symbol: str, depth: int = 100) -> BookSnapshot:
        """A fresh order book snapshot over REST."""
        return await self.exchange.fetch_order_book(symbol, min(depth, self.book_depth))

    async def ticker(self, symbol: str) -> Ticker:
        """The live ticker."""
        return await self.exchange.fetch_ticker(symbol)

    async def candles(
        self, symbol: str, timeframe: str, since: datetime | None, limit: int | None
    ) -> list[Candle]:
        """Closed candles over REST (the open one is dropped)."""
        rows = await self.exchange.fetch_ohlcv(symbol, timeframe, since, limit)
        return [c for c in rows if c.closed]

    async def _pump(self, symbol: str) -> None:
        try:
            async for trades in self.exchange.watch_trades(symbol):
                self._buffers.publish(trades)
        except asyncio.CancelledError:
            raise
        except TradelibError as exc:
            self.errors.append(f"{symbol}: {exc}")
            log.error("paper trade feed stopped", symbol=symbol, error=str(exc))

    async def new_trades(self, symbol: str, consumer: str = "paper") -> list[MarketTrade]:
        """Trades streamed since `consumer` last asked about `symbol`."""
        markets = await self.markets()
        if symbol not in markets:
            raise UnknownSymbol(f"{symbol} is not listed on {self.exchange.id}")
        self._buffers.subscribe(consumer, symbol)
        if symbol not in self._tasks or self._tasks[symbol].done():
            self._tasks[symbol] = asyncio.create_task(self._pump(symbol))
        return self._buffers.drain(consumer, symbol)

    async def wait_until(self, when: datetime) -> None:
        """Sleep until the wall clock reaches `when`."""
        delay = (require_utc(when, "wait_until") - self.now()) / timedelta(seconds=1)
        if delay > 0:
            await asyncio.sleep(delay)

    async def wait_for_data(self, timeout: float) -> None:
        """Wait for the next streamed trades (or `timeout`)."""
        await self._buffers.wait(timeout)

    async def close(self) -> None:
        """Stop the trade feeds (the wrapped exchange is closed by its owner)."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
