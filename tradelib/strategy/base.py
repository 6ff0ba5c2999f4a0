"""Versioned strategy interface: one pure DataFrame-in/DataFrame-out signal function.

`Strategy.signals` is what the backtest calls on whole histories; `on_candle` and `on_timer`
are what the live/paper engine calls, and they run the very same `signals` code on the candles
seen so far, so the two cannot diverge.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tradelib.domain import Side, Signal, SignalKind, StrategyId, require_utc
from tradelib.errors import DataError

INTERFACE_VERSION = 1
# freqtrade's column names: one boolean column per (symbol, field) in the signal frame.
SIGNAL_FIELDS: tuple[str, ...] = ("enter_long", "exit_long", "enter_short", "exit_short")
CANDLE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
TIMEFRAMES: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1),
    "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15),
    "1h": pd.Timedelta(hours=1),
    "4h": pd.Timedelta(hours=4),
    "1d": pd.Timedelta(days=1),
}
_FIELD_MEANING: dict[str, tuple[SignalKind, Side]] = {
    "enter_long": (SignalKind.ENTRY, Side.BUY),
    "exit_long": (SignalKind.EXIT, Side.SELL),
    "enter_short": (SignalKind.ENTRY, Side.SELL),
    "exit_short": (SignalKind.EXIT, Side.BUY),
}


def normalize_candles(symbol: str, candles: pd.DataFrame) -> pd.DataFrame:
    """Candles indexed by aware-UTC open time, float OHLCV columns, sorted and unique."""
    if is_normalized(candles):
        # The engine hands over its candle book's frames, already in this shape, on every
        # cycle: a copy is what the full path below would return, at a fraction of the cost.
        return candles.copy()
    frame = candles
    if "date" in frame.columns:
        frame = frame.set_index("date")
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{symbol} candles lack column(s) {missing}; need date + {CANDLE_COLUMNS}")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise DataError(
            f"{symbol} candles need a timezone-aware UTC 'date' column or DatetimeIndex "
            "(localize naive times with tz_localize('UTC') if they are UTC)"
        )
    if str(index.tz) != "UTC":
        frame = frame.tz_convert("UTC")
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()][0]
        raise DataError(f"{symbol} candles hold two rows for {dup.isoformat()}; drop duplicates")
    out = frame.loc[:, list(CANDLE_COLUMNS)].astype("float64")
    out.index = pd.DatetimeIndex(out.index).as_unit("ns").rename("date")
    return out


def is_normalized(frame: pd.DataFrame) -> bool:
    """True when `frame` already has normalize_candles' shape (index, columns, dtypes, order)."""
    index = frame.index
    return (
        isinstance(index, pd.DatetimeIndex)
        and index.name == "date"
        and index.unit == "ns"
        and index.tz is not None
        and str(index.tz) == "UTC"
        and tuple(frame.columns) == CANDLE_COLUMNS
        and all(dtype == np.float64 for dtype in frame.dtypes)
        and index.is_monotonic_increasing
        and not index.has_duplicates
    )


def open_times_ns(frame: pd.DataFrame) -> np.ndarray:
    """Candle open times of a normalized frame as int64 epoch nanoseconds."""
    return pd.DatetimeIndex(frame.index).asi8


def empty_signal_frame(index: pd.DatetimeIndex, symbols: list[str]) -> pd.DataFrame:
    """All-False signal frame: columns (symbol, field) for every symbol and SIGNAL_FIELDS."""
    columns = _signal_columns(tuple(symbols)).copy()
    return pd.DataFrame(
        np.zeros((len(index), len(columns)), dtype=bool), index=index, columns=columns
    )


@functools.lru_cache(maxsize=64)
def _signal_columns(symbols: tuple[str, ...]) -> pd.MultiIndex:
    # Built once per symbol set: the engine asks for the same one-symbol frame every cycle.
    return pd.MultiIndex.from_product([list(symbols), SIGNAL_FIELDS], names=["symbol", "field"])


def _signal_row(table: pd.DataFrame, at: pd.Timestamp, symbol: str) -> Any:
    """`table.loc[at, symbol]` (None if `symbol` has no columns), read from the array: the
    engine asks for one row of a fresh frame every cycle and pandas' label path costs ms."""
    columns = table.columns
    keys = list(columns)
    mask = np.array([key[0] == symbol for key in keys], dtype=bool)
    if not mask.any():
        return None
    index = table.index
    if (
        columns.nlevels == 2
        and len(index)
        and index[-1] == at
        and index.is_monotonic_increasing
        and (len(index) == 1 or index[-2] != at)
    ):
        # The usual ask, the newest row of a sorted frame: no hash table of the index needed.
        values = table.to_numpy()[len(index) - 1, mask]
        return dict(zip([key[1] for key in keys if key[0] == symbol], values, strict=True))
    return table.loc[at, symbol]


class Strategy(ABC):
    """Base of every strategy: pure `signals` plus an event-driven adapter for the engine."""

    INTERFACE_VERSION: ClassVar[int] = INTERFACE_VERSION
    name: ClassVar[str] = "strategy"
    timeframe: ClassVar[str] = "1h"

    def __init__(self, params: Any, calendar: Any, strategy_id: str | None = None) -> None:
        self.params = params
        self.calendar = calendar
        self.strategy_id = StrategyId(strategy_id or self.name)
        self._emitted: set[tuple[str, str, pd.Timestamp]] = set()

    @property
    def bar(self) -> pd.Timedelta:
        """Length of one candle of `timeframe`."""
        return TIMEFRAMES[self.timeframe]

    @abstractmethod
    def signals(
        self, candles: Mapping[str, pd.DataFrame], calendar: Any, params: Any
    ) -> pd.DataFrame:
        """Pure: candles per symbol in, boolean frame with (symbol, SIGNAL_FIELDS) columns out.

        Row t holds what is decided when the candle opened at t closes (t + one bar); it may
        use only candles up to and including t.
        """

    def describe(self, symbol: str, field: str, bar_open: pd.Timestamp) -> tuple[str, dict]:
        """Reason text and metadata of one signal; strategies override to explain themselves."""
        return f"{self.name}: {field} {symbol}", {}

    def on_candle(
        self, symbol: str, candles_until_now: pd.DataFrame, now: datetime
    ) -> list[Signal]:
        """Signals decided at `now` from the candles closed so far, each emitted once."""
        now_ts = pd.Timestamp(require_utc(now, "now"))
        frame = normalize_candles(symbol, candles_until_now)
        closed = open_times_ns(frame) + self.bar.value <= now_ts.value
        if not closed.all() or getattr(frame.index, "freq", None) is not None:
            frame = frame.loc[closed]  # else it is already the fresh copy .loc would make
        if frame.empty:
            return []
        table = self.signals({symbol: frame}, self.calendar, self.params)
        last = frame.index[-1]
        row = _signal_row(table, last, symbol)
        if row is None:
            return []
        price = Decimal(repr(float(frame["close"].iloc[-1])))
        return [
            self._emit(symbol, field, last, last + self.bar, price)
            for field in SIGNAL_FIELDS
            if bool(row[field]) and (symbol, field, last) not in self._emitted
        ]

    def on_timer(self, now: datetime) -> list[Signal]:
        """Signals due by the clock alone (no new candle); none unless a strategy has them."""
        require_utc(now, "now")
        return []

    def _emit(
        self,
        symbol: str,
        field: str,
        bar_open: pd.Timestamp,
        at: pd.Timestamp,
        price: Decimal | None,
    ) -> Signal:
        self._emitted.add((symbol, field, bar_open))
        kind, side = _FIELD_MEANING[field]
        reason, meta = self.describe(symbol, field, bar_open)
        return Signal(
            strategy_id=self.strategy_id,
            symbol=symbol,
            side=side,
            kind=kind,
            at=at.to_pydatetime(),
            reason=reason,
            reference_price=price,
            meta={"field": field, "bar_open": bar_open.isoformat(), **meta},
        )
