"""MarketDataStreamer: exchange streams -> closed candles, book tops, staleness, for subscribers.

One asyncio task per stream (trades, order book, and OHLCV per timeframe, for every symbol) plus a
staleness watchdog. A stream that fails (ExchangeUnavailable or any other error, or simply ends)
is re-opened with exponential backoff. Candles are published exactly once per open_time:

- A streamed candle is *pending* until a newer candle arrives. It is published as final if its
  last update was received after its interval ended (Binance pushes the final kline at close);
  otherwise the final values are read over REST first (the closing push may have been lost).
- After a reconnect, or when the stream skips candles, the missing range is backfilled from REST
  (`fetch_ohlcv` since the last published candle, paginated by `backfill_limit`); candles at or
  before the last published open_time are dropped, so none is missing or duplicated.

Staleness: a symbol is stale when none of its streams delivered anything usable for longer
than `stale_after` (default settings.risk.stale_data_seconds), or before its first message.
Data stamped ahead of the clock (beyond MAX_CLOCK_SKEW) is dropped and never makes a symbol
fresh; a last update ahead of the clock (the clock went back) counts as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tradelib.config import Settings
from tradelib.domain import (
    MAX_CLOCK_SKEW,
    Candle,
    MarketTrade,
    from_ms,
    stamped_in_future,
    timeframe_ms,
    to_ms,
)
from tradelib.exchange.base import BookSnapshot
from tradelib.logs import get_logger
from tradelib.marketdata.events import (
    BookTop,
    CandleClosed,
    MarketDataSource,
    MarketEvent,
    StalenessChanged,
    StreamReconnecting,
    TradesReceived,
)
from tradelib.marketdata.orderbook import OrderBook

_log = get_logger(__name__)

EventCallback = Callable[[MarketEvent], None]


@dataclass(slots=True)
class _CandleState:
    symbol: str
    timeframe: str
    span_ms: int
    last_closed: Candle | None = None
    pending: Candle | None = None
    pending_seen_ms: int = 0
    needs_backfill: bool = False


@dataclass(slots=True)
class _Queue:
    queue: asyncio.Queue[MarketEvent]
    kinds: tuple[type, ...] | None
    dropped: int = 0


@dataclass(slots=True)
class StreamerStats:
    """Counters the dashboard can show."""

    reconnects: dict[str, int] = field(default_factory=dict)
    backfilled: int = 0
    verified: int = 0
    duplicates_dropped: int = 0
    future_dropped: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MarketDataStreamer:
    """Streams market data for several symbols and timeframes and fans it out to subscribers."""

    def __init__(
        self,
        exchange: MarketDataSource,
        symbols: Sequence[str],
        timeframes: Sequence[str] = ("1m",),
        *,
        trades: bool = True,
        order_book: bool = True,
        settings: Settings | None = None,
        stale_after: timedelta | None = None,
        clock: Callable[[], datetime] = _utcnow,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backfill_limit: int = 1000,
        watchdog_interval: float | None = None,
    ) -> None:
        for tf in timeframes:
            timeframe_ms(tf)
        if stale_after is None:
            seconds = (settings or Settings()).risk.stale_data_seconds
            stale_after = timedelta(seconds=seconds)
        self.exchange = exchange
        self.symbols = tuple(dict.fromkeys(symbols))
        self.timeframes = tuple(dict.fromkeys(timeframes))
        self.watch_trades = trades
        self.watch_book = order_book
        self.stale_after = stale_after
        self.clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backfill_limit = backfill_limit
        self.watchdog_interval = watchdog_interval or max(
            0.05, min(1.0, stale_after.total_seconds() / 4)
        )
        self.stats = StreamerStats()
        self._candles = {
            (s, tf): _CandleState(s, tf, timeframe_ms(tf))
            for s in self.symbols
            for tf in timeframes
        }
        self._last_update: dict[str, datetime] = {}
        self._stale: dict[str, bool] = dict.fromkeys(self.symbols, True)
        self._books: dict[str, BookSnapshot] = {}
        self._tops: dict[str, BookTop] = {}
        self._queues: list[_Queue] = []
        self._callbacks: list[EventCallback] = []
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ subscribers

    def subscribe(
        self, maxsize: int = 10_000, kinds: Iterable[type] | None = None
    ) -> asyncio.Queue[MarketEvent]:
        """A queue receiving events (only `kinds` if given); when full the oldest is dropped."""
        queue: asyncio.Queue[MarketEvent] = asyncio.Queue(maxsize)
        self._queues.append(_Queue(queue, tuple(kinds) if kinds else None))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[MarketEvent]) -> None:
        """Stop feeding `queue`."""
        self._queues = [q for q in self._queues if q.queue is not queue]

    def add_callback(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback(event)` for every event (synchronously); returns a remover."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def _publish(self, event: MarketEvent) -> None:
        for sub in self._queues:
            if sub.kinds is not None and not isinstance(event, sub.kinds):
                continue
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
                if sub.dropped in (1, 100) or sub.dropped % 10_000 == 0:
                    _log.warning("subscriber_queue_full", dropped=sub.dropped)
            sub.queue.put_nowait(event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # one broken subscriber must not stop the streams
                _log.exception("market_event_callback_failed", kind=type(event).__name__)

    # ------------------------------------------------------------------ queries

    def last_update(self, symbol: str) -> datetime | None:
        """When any stream of `symbol` last delivered data (None before the first message)."""
        return self._last_update.get(symbol)

    def is_stale(self, symbol: str, now: datetime | None = None) -> bool:
        """True when `symbol` has had no data for longer than `stale_after` (or never had any)."""
        last = self._last_update.get(symbol)
        if last is None:
            return True
        age = (now or self.clock()) - last
        return age > self.stale_after or -age > MAX_CLOCK_SKEW

    def last_closed(self, symbol: str, timeframe: str) -> Candle | None:
        """The newest candle published for (symbol, timeframe)."""
        return self._candles[(symbol, timeframe)].last_closed

    def book(self, symbol: str) -> BookSnapshot | None:
        """The latest order book snapshot of `symbol`."""
        return self._books.get(symbol)

    def order_book(self, symbol: str) -> OrderBook | None:
        """The latest book of `symbol` as an OrderBook (for price_for_quantity, depth, spread)."""
        snapshot = self._books.get(symbol)
        return None if snapshot is None else OrderBook.from_snapshot(snapshot)

    def book_top(self, symbol: str) -> BookTop | None:
        """The latest best bid/ask of `symbol`."""
        return self._tops.get(symbol)

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return bool(self._tasks)

    async def start(self) -> None:
        """Open every stream as an asyncio task, plus the staleness watchdog."""
        if self._tasks:
            return
        for symbol in self.symbols:
            for tf in self.timeframes:
                self._spawn(f"ohlcv {symbol} {tf}", self._run_ohlcv(self._candles[(symbol, tf)]))
            if self.watch_trades:
                self._spawn(
                    f"trades {symbol}",
                    self._run_stream(symbol, "trades", self.exchange.watch_trades, self._on_trades),
                )
            if self.watch_book:
                self._spawn(
                    f"book {symbol}",
                    self._run_stream(symbol, "book", self.exchange.watch_order_book, self._on_book),
                )
        self._spawn("staleness watchdog", self._watchdog())
        _log.info("market_data_started", symbols=self.symbols, timeframes=self.timeframes)

    async def stop(self) -> None:
        """Cancel every task and wait for them to finish."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _log.info("market_data_stopped", symbols=self.symbols)

    async def __aenter__(self) -> MarketDataStreamer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, name: str, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"marketdata {name}"))

    # ------------------------------------------------------------------ streams

    def _touch(self, symbol: str) -> None:
        now = self.clock()
        self._last_update[symbol] = now
        if self._stale.get(symbol, True):
            self._stale[symbol] = False
            self._publish(StalenessChanged(symbol, False, now, now))

    async def _backoff(self, symbol: str, stream: str, exc: BaseException, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        key = f"{symbol} {stream}"
        self.stats.reconnects[key] = self.stats.reconnects.get(key, 0) + 1
        _log.warning(
            "stream_reconnecting", symbol=symbol, stream=stream, reason=reason, attempt=attempt,
            delay=delay,
        )  # fmt: skip
        self._publish(StreamReconnecting(symbol, stream, reason, attempt, delay))
        await asyncio.sleep(delay)

    async def _run_stream(
        self,
        symbol: str,
        stream: str,
        watch: Callable[[str], AsyncIterator[Any]],
        handle: Callable[[str, Any], bool],
    ) -> None:
        attempt = 0
        while True:
            iterator = watch(symbol)
            try:
                async for message in iterator:
                    attempt = 0
                    if handle(symbol, message):
                        self._touch(symbol)
                raise ConnectionError(f"{stream} stream of {symbol} ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                await self._backoff(symbol, stream, exc, attempt)
            finally:
                await _close(iterator)

    def _ahead(self, symbol: str, what: str, stamp: datetime) -> bool:
        """True (and counted, logged) when `stamp` lies ahead of the clock: drop that data."""
        now = self.clock()
        if not stamped_in_future(stamp, now):
            return False
        self.stats.future_dropped += 1
        if self.stats.future_dropped in (1, 100) or self.stats.future_dropped % 10_000 == 0:
            _log.warning(
                "market_data_from_the_future", symbol=symbol, what=what, stamp=stamp, now=now,
                dropped=self.stats.future_dropped,
            )  # fmt: skip
        return True

    def _on_trades(self, symbol: str, trades: list[MarketTrade]) -> bool:
        kept = tuple(t for t in trades if not self._ahead(symbol, "trade", t.timestamp))
        if kept:
            self._publish(TradesReceived(symbol, kept))
        return bool(kept)

    def _on_book(self, symbol: str, book: BookSnapshot) -> bool:
        if self._ahead(symbol, "order book", book.timestamp):
            return False
        self._books[symbol] = book
        bid = book.bids[0] if book.bids else None
        ask = book.asks[0] if book.asks else None
        top = self._tops.get(symbol)
        if top is None or top.bid != bid or top.ask != ask:
            top = BookTop(symbol, bid, ask, book.timestamp)
            self._tops[symbol] = top
            self._publish(top)
        return True

    # ------------------------------------------------------------------ candles

    async def _run_ohlcv(self, state: _CandleState) -> None:
        attempt = 0
        stream = f"ohlcv {state.timeframe}"
        while True:
            iterator = self.exchange.watch_ohlcv(state.symbol, state.timeframe)
            try:
                if state.needs_backfill:
                    await self._backfill(state)
                async for batch in iterator:
                    attempt = 0
                    usable = [
                        c for c in batch if not self._ahead(state.symbol, "candle", c.open_time)
                    ]
                    if usable:
                        self._touch(state.symbol)
                        await self._on_candles(state, usable)
                raise ConnectionError(f"{stream} stream of {state.symbol} ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                state.needs_backfill = True
                state.pending = None  # its updates may be incomplete: REST decides
                await self._backoff(state.symbol, stream, exc, attempt)
            finally:
                await _close(iterator)

    async def _on_candles(self, state: _CandleState, batch: list[Candle]) -> None:
        now_ms = to_ms(self.clock(), "clock")
        for candle in sorted(batch, key=lambda c: c.open_time):
            start = to_ms(candle.open_time, "candle open_time")
            if state.last_closed is not None and candle.open_time <= state.last_closed.open_time:
                continue  # already published
            pending = state.pending
            if pending is not None and candle.open_time == pending.open_time:
                state.pending, state.pending_seen_ms = candle, now_ms
                continue
            if pending is not None and candle.open_time < pending.open_time:
                continue  # an older, unpublished candle: the gap backfill below reads it
            if pending is not None:
                end = to_ms(pending.open_time, "open_time") + state.span_ms
                if state.pending_seen_ms >= end:
                    self._close(state, pending, "stream")
                else:  # the closing push was not seen: final values come from REST
                    self.stats.verified += 1
                    await self._backfill(state, until_ms=start)
            if state.last_closed is not None:
                expected = to_ms(state.last_closed.open_time, "open_time") + state.span_ms
                if start > expected:
                    await self._backfill(state, until_ms=start)
            state.pending, state.pending_seen_ms = candle, now_ms
        if state.pending is not None:
            end = to_ms(state.pending.open_time, "open_time") + state.span_ms
            if state.pending.closed and state.pending_seen_ms >= end:
                self._close(state, state.pending, "stream")
                state.pending = None

    def _close(self, state: _CandleState, candle: Candle, source: str) -> None:
        if state.last_closed is not None and candle.open_time <= state.last_closed.open_time:
            self.stats.duplicates_dropped += 1
            return
        final = candle if candle.closed else _as_closed(candle)
        state.last_closed = final
        self._publish(CandleClosed(final, source))

    async def _backfill(self, state: _CandleState, until_ms: int | None = None) -> None:
        """Read closed candles after the last published one over REST and publish them."""
        if state.last_closed is not None:
            since_ms = to_ms(state.last_closed.open_time, "open_time") + state.span_ms
        elif state.pending is not None:
            since_ms = to_ms(state.pending.open_time, "open_time")
        else:
            state.needs_backfill = False
            return
        count = 0
        while True:
            now_ms = to_ms(self.clock(), "clock")
            page = await self.exchange.fetch_ohlcv(
                state.symbol, state.timeframe, from_ms(since_ms), self.backfill_limit
            )
            newest = since_ms - 1
            for candle in page:
                start = to_ms(candle.open_time, "candle open_time")
                newest = max(newest, start)
                if until_ms is not None and start >= until_ms:
                    break
                if start + state.span_ms <= now_ms and start >= since_ms:
                    before = state.last_closed
                    self._close(state, candle, "backfill")
                    count += state.last_closed is not before
            if len(page) < self.backfill_limit or newest < since_ms:
                break
            if until_ms is not None and newest >= until_ms:
                break
            since_ms = newest + state.span_ms
        state.needs_backfill = False
        pending, last = state.pending, state.last_closed
        if pending is not None and last is not None and pending.open_time <= last.open_time:
            state.pending = None
        self.stats.backfilled += count
        _log.info(
            "candles_backfilled", symbol=state.symbol, timeframe=state.timeframe, count=count,
            last=state.last_closed.open_time.isoformat() if state.last_closed else None,
        )  # fmt: skip

    # ------------------------------------------------------------------ staleness

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.watchdog_interval)
            now = self.clock()
            for symbol in self.symbols:
                stale = self.is_stale(symbol, now)
                if stale != self._stale.get(symbol):
                    self._stale[symbol] = stale
                    last = self._last_update.get(symbol)
                    if stale:
                        _log.warning("market_data_stale", symbol=symbol, last_update=last)
                    self._publish(StalenessChanged(symbol, stale, last, now))


def _as_closed(candle: Candle) -> Candle:
    return Candle(
        candle.symbol, candle.timeframe, candle.open_time, candle.open, candle.high,
        candle.low, candle.close, candle.volume, closed=True,
    )  # fmt: skip


async def _close(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
