"""Closed candles per symbol, refreshed through the Exchange protocol, as strategy frames."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tradelib.domain import Candle, require_utc
from tradelib.exchange.base import Exchange
from tradelib.strategy.base import TIMEFRAMES

_PAGE = 1000
_COLUMNS = ["open", "high", "low", "close", "volume"]


class CandleBook:
    """Keeps `window` closed candles per symbol; `refresh` fetches only what is new."""

    def __init__(
        self, symbols: Iterable[str], timeframe: str = "1h", window: int = 24 * 60
    ) -> None:
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.bar = TIMEFRAMES[timeframe].to_pytimedelta()
        self.window = window
        self._frames: dict[str, pd.DataFrame] = {}
        self.last_update: dict[str, datetime] = {}

    def seed(self, symbol: str, frame: pd.DataFrame) -> None:
        """Start from known history (date/open/high/low/close/volume), e.g. from the store."""
        self._frames[symbol] = _normalise(frame).tail(self.window)

    async def refresh(self, exchange: Exchange, now: datetime) -> dict[str, int]:
        """Fetch candles closed since the last refresh; returns how many were added per symbol."""
        now = require_utc(now, "refresh time")
        added: dict[str, int] = {}
        for symbol in self.symbols:
            frame = self._frames.get(symbol)
            since = None
            if frame is not None and not frame.empty:
                since = frame.index[-1].to_pydatetime() + self.bar
            else:
                since = now - self.bar * self.window
            rows: list[Candle] = []
            while True:
                page = await exchange.fetch_ohlcv(symbol, self.timeframe, since=since, limit=_PAGE)
                page = [c for c in page if c.open_time + self.bar <= now]  # closed ones only
                rows.extend(page)
                if len(page) < _PAGE // 2 or not page:
                    break
                since = page[-1].open_time + self.bar
            added[symbol] = self._append(symbol, rows)
            if rows:
                self.last_update[symbol] = rows[-1].open_time + self.bar
        return added

    def _append(self, symbol: str, candles: list[Candle]) -> int:
        if not candles:
            return 0
        new = pd.DataFrame(
            np.array(
                [[float(c.open), float(c.high), float(c.low), float(c.close), float(c.volume)]
                 for c in candles],
                dtype=np.float64,
            ),  # one block: cheaper to build and to concatenate than five lists
            index=pd.DatetimeIndex([c.open_time for c in candles], name="date").as_unit("ns"),
            columns=_COLUMNS,
        )  # fmt: skip
        old = self._frames.get(symbol)
        merged = new if old is None else pd.concat([old, new])
        if not _follows(old, new):  # the usual case needs neither: newer candles, in order
            merged = merged[~merged.index.duplicated(keep="last")].sort_index()
        before = 0 if old is None else len(old)
        self._frames[symbol] = merged.tail(self.window)
        return len(merged) - before

    def frame(self, symbol: str) -> pd.DataFrame:
        """Closed candles of `symbol` (indexed by open time, UTC), oldest first."""
        frame = self._frames.get(symbol)
        return _empty() if frame is None else frame

    def last_close(self, symbol: str) -> float | None:
        """Close of the newest candle, or None."""
        frame = self._frames.get(symbol)
        return None if frame is None or frame.empty else float(frame["close"].iloc[-1])

    def age(self, symbol: str, now: datetime) -> timedelta | None:
        """How long ago the newest candle closed."""
        last = self.last_update.get(symbol)
        return None if last is None else require_utc(now, "now") - last


def _follows(old: pd.DataFrame | None, new: pd.DataFrame) -> bool:
    """True when `new` holds sorted, unique times all after `old`'s last (or `old` is empty)."""
    index = new.index
    if not (index.is_monotonic_increasing and index.is_unique):
        return False
    return old is None or old.empty or index[0] > old.index[-1]


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    if "date" in frame.columns:
        frame = frame.set_index("date")
    out = frame.loc[:, ["open", "high", "low", "close", "volume"]].astype("float64")
    out.index = pd.DatetimeIndex(out.index, name="date").as_unit("ns")
    return out


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["open", "high", "low", "close", "volume"],
        index=pd.DatetimeIndex([], tz="UTC", name="date"),
        dtype="float64",
    )
