"""CandleHistory: candles from the store, with missing ranges fetched over REST and cached.

Missing ranges are the part of the requested window before the first and after the last stored
candle (and, with `fill_holes=True`, the holes between stored candles; a hole the exchange itself
has, e.g. during maintenance, is then asked for again on every call). Pages of `page_limit` candles
are requested one after the other (the connector's rate limiter paces them), each page is written
to the store in one batch, and only ExchangeUnavailable (timeouts, 5xx, 429) is retried, with
exponential backoff (a RateLimited error's retry_after is honoured). A candle whose interval has
not ended yet is never cached.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from tradelib.config import repo_data_dir
from tradelib.domain import Candle, from_ms, parse_candle_file, timeframe_ms, to_ms
from tradelib.errors import DataError, ExchangeUnavailable, RateLimited
from tradelib.logs import get_logger

_log = get_logger(__name__)
Range = tuple[datetime, datetime]


class OhlcvSource(Protocol):
    """Anything with the Exchange protocol's `fetch_ohlcv` (and its `id`)."""

    id: str

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1h",
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Candle]:
        """Closed (and the current open) candles, oldest first."""
        ...


class CandleStore(Protocol):
    """The candle part of `tradelib.store.Store`."""

    def write_candles(self, exchange: str, candles: pd.DataFrame) -> int:
        """Upsert candles in one batch."""
        ...

    def read_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Candles with open_time in [start, end], indexed by open_time."""
        ...

    def candle_range(
        self, exchange: str, symbol: str, timeframe: str
    ) -> tuple[datetime, datetime] | None:
        """First and last stored open_time, or None."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def candles_to_frame(candles: Sequence[Candle]) -> pd.DataFrame:
    """Candles as the store's input DataFrame (Decimal values keep every digit)."""
    return pd.DataFrame(
        {
            "open_time": pd.to_datetime([c.open_time for c in candles], utc=True),
            "open": [c.open for c in candles],
            "high": [c.high for c in candles],
            "low": [c.low for c in candles],
            "close": [c.close for c in candles],
            "volume": [c.volume for c in candles],
            "symbol": [c.symbol for c in candles],
            "timeframe": [c.timeframe for c in candles],
        }
    )


class CandleHistory:
    """Reads candles through the store, fetching and caching whatever the store lacks."""

    def __init__(
        self,
        exchange: OhlcvSource,
        store: CandleStore,
        exchange_id: str | None = None,
        *,
        page_limit: int = 1000,
        max_attempts: int = 5,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if page_limit < 1 or max_attempts < 1:
            raise DataError("page_limit and max_attempts must be >= 1")
        self.exchange = exchange
        self.store = store
        self.exchange_id = exchange_id or exchange.id
        self.page_limit = page_limit
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.clock = clock
        self.sleep = sleep
        self.requests = 0

    def _window(self, timeframe: str, start: datetime, end: datetime | None) -> tuple[int, int]:
        span = timeframe_ms(timeframe)
        first = -(-to_ms(start, "start") // span) * span  # first open_time >= start
        now_ms = to_ms(self.clock(), "clock")
        last_closed = now_ms - now_ms % span - span
        last = last_closed if end is None else min(last_closed, to_ms(end, "end"))
        return first, last - last % span

    def missing_ranges(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime | None = None,
        fill_holes: bool = False,
    ) -> list[Range]:
        """Open-time ranges (inclusive) in [start, end] that the store does not hold."""
        span = timeframe_ms(timeframe)
        first, last = self._window(timeframe, start, end)
        if last < first:
            return []
        stored = self.store.candle_range(self.exchange_id, symbol, timeframe)
        if stored is None:
            return [(from_ms(first), from_ms(last))]
        lo, hi = to_ms(stored[0], "stored first"), to_ms(stored[1], "stored last")
        out: list[tuple[int, int]] = []
        if first < lo:
            out.append((first, min(last, lo - span)))
        inner_lo, inner_hi = max(first, lo), min(last, hi)
        if fill_holes and inner_lo <= inner_hi:
            frame = self.store.read_candles(
                self.exchange_id, symbol, timeframe, from_ms(inner_lo), from_ms(inner_hi)
            )
            times = [to_ms(t.to_pydatetime(), "stored open_time") for t in frame.index]
            edges = [inner_lo - span, *times, inner_hi + span]
            for before, after in itertools.pairwise(edges):
                if after - before > span:
                    out.append((before + span, after - span))
        if last > hi:
            out.append((max(first, hi + span), last))
        return [(from_ms(a), from_ms(b)) for a, b in out if a <= b]

    async def load(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime | None = None,
        fill_holes: bool = False,
    ) -> pd.DataFrame:
        """Candles with open_time in [start, end] (default: up to the last closed one)."""
        for lo, hi in self.missing_ranges(symbol, timeframe, start, end, fill_holes):
            await self.fetch_range(symbol, timeframe, lo, hi)
        first, last = self._window(timeframe, start, end)
        return self.store.read_candles(
            self.exchange_id, symbol, timeframe, from_ms(first), from_ms(last)
        )

    async def fetch_range(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> int:
        """Fetch closed candles with open_time in [start, end] page by page; returns how many."""
        span = timeframe_ms(timeframe)
        cursor, end_ms = to_ms(start, "start"), to_ms(end, "end")
        written = 0
        while cursor <= end_ms:
            page = await self._fetch(symbol, timeframe, cursor)
            now_ms = to_ms(self.clock(), "clock")
            keep = [
                c for c in page
                if cursor <= to_ms(c.open_time, "open_time") <= end_ms
                and to_ms(c.open_time, "open_time") + span <= now_ms
            ]  # fmt: skip
            if keep:
                written += self.store.write_candles(self.exchange_id, candles_to_frame(keep))
            newest = max((to_ms(c.open_time, "open_time") for c in page), default=None)
            if newest is None or newest < cursor or len(page) < self.page_limit:
                break
            cursor = newest + span
        _log.info(
            "candle_history_fetched", symbol=symbol, timeframe=timeframe, start=start.isoformat(),
            end=end.isoformat(), written=written,
        )  # fmt: skip
        return written

    async def _fetch(self, symbol: str, timeframe: str, cursor: int) -> list[Candle]:
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                return await self.exchange.fetch_ohlcv(
                    symbol, timeframe, from_ms(cursor), self.page_limit
                )
            except ExchangeUnavailable as exc:
                if attempt >= self.max_attempts:
                    raise
                delay = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
                if isinstance(exc, RateLimited) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                _log.warning(
                    "candle_history_retry", symbol=symbol, timeframe=timeframe,
                    attempt=attempt, delay=delay, reason=str(exc),
                )  # fmt: skip
                await self.sleep(delay)


def load_bundled_candles(
    store: CandleStore,
    exchange: str = "binance",
    data_dir: Path | None = None,
    symbols: Iterable[str] | None = None,
    timeframes: Iterable[str] | None = None,
) -> dict[tuple[str, str], int]:
    """Write the recorded candles in data/candles/{tf}/{BASE}_{QUOTE}-{tf}.feather to the store."""
    root = (data_dir or repo_data_dir()) / "candles"
    wanted_symbols = set(symbols) if symbols is not None else None
    wanted_tfs = set(timeframes) if timeframes is not None else None
    written: dict[tuple[str, str], int] = {}
    for path in sorted(root.glob("*/*.feather")):
        if path.stem.rpartition("-")[2] != path.parent.name:
            raise DataError(f"{path}: expected data/candles/<tf>/<BASE>_<QUOTE>-<tf>.feather")
        symbol, timeframe = parse_candle_file(path.stem)
        if (wanted_symbols is not None and symbol not in wanted_symbols) or (
            wanted_tfs is not None and timeframe not in wanted_tfs
        ):
            continue
        frame = pd.read_feather(path).rename(columns={"date": "open_time"})
        if not frame["open_time"].is_monotonic_increasing or frame["open_time"].duplicated().any():
            raise DataError(f"{path}: open_time must be strictly increasing")
        frame["symbol"], frame["timeframe"] = symbol, timeframe
        written[(symbol, timeframe)] = store.write_candles(exchange, frame)
        _log.info("bundled_candles_loaded", symbol=symbol, timeframe=timeframe, rows=len(frame))
    return written
