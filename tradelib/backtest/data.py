"""Candles from data/ and the event-window panel the vectorised backtest runs on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tradelib.config import repo_data_dir
from tradelib.errors import DataError
from tradelib.strategy.base import normalize_candles, open_times_ns
from tradelib.strategy.calendar import UnlockEvent

_DAY_NS = 86_400_000_000_000


def as_utc(value: pd.Timestamp | str) -> pd.Timestamp:
    """A UTC Timestamp; naive input is taken to be UTC already."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def candles_dir(data_dir: Path | str | None = None, timeframe: str = "1h") -> Path:
    """Folder holding {SYM}_USDT-{timeframe}.feather files."""
    return Path(data_dir or repo_data_dir()) / "candles" / timeframe


def available_symbols(data_dir: Path | str | None = None, timeframe: str = "1h") -> list[str]:
    """Symbols with a candle file, sorted."""
    folder = candles_dir(data_dir, timeframe)
    return sorted(p.name.split("_", 1)[0] for p in folder.glob(f"*_USDT-{timeframe}.feather"))


def load_candles(
    symbols: Iterable[str] | None = None,
    data_dir: Path | str | None = None,
    timeframe: str = "1h",
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> dict[str, pd.DataFrame]:
    """Candles per symbol (UTC open-time index, float OHLCV), optionally cut to [start, end)."""
    wanted = list(symbols) if symbols is not None else available_symbols(data_dir, timeframe)
    folder = candles_dir(data_dir, timeframe)
    out: dict[str, pd.DataFrame] = {}
    for symbol in wanted:
        path = folder / f"{symbol.upper()}_USDT-{timeframe}.feather"
        if not path.is_file():
            have = ", ".join(available_symbols(data_dir, timeframe)) or "none"
            raise DataError(f"no {timeframe} candles for {symbol}: {path} is missing (have {have})")
        frame = normalize_candles(symbol, pd.read_feather(path))
        if start is not None:
            frame = frame.loc[frame.index >= as_utc(start)]
        if end is not None:
            frame = frame.loc[frame.index < as_utc(end)]
        out[symbol.upper()] = frame
    return out


@dataclass(frozen=True)
class Panel:
    """Candles of every symbol cut to windows around its events, stacked side by side.

    Row k of symbol s is its k-th kept candle (times differ between symbols: the index is
    positional). Symbols shorter than the longest are padded with their last close and no
    signals, so each (symbol, parameter set) column is an independent sleeve.
    """

    symbols: tuple[str, ...]
    times: tuple[np.ndarray, ...]  # open times (ns) of kept rows, per symbol
    full_to_row: tuple[np.ndarray, ...]  # position in the full candles -> kept row or -1
    segment_end: np.ndarray  # (rows, symbols) bool: last kept row of a window
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    bar_ns: int

    @property
    def rows(self) -> int:
        """Number of positional rows (the longest symbol)."""
        return int(self.close.shape[0])

    def close_times(self) -> np.ndarray:
        """(rows, symbols) candle close times in ns; padding rows repeat the last one."""
        out = np.empty(self.close.shape, dtype=np.int64)
        for j, t in enumerate(self.times):
            out[: len(t), j] = t + self.bar_ns
            out[len(t) :, j] = t[-1] + self.bar_ns
        return out

    def lengths(self) -> list[int]:
        """Kept rows per symbol."""
        return [len(t) for t in self.times]


def build_panel(
    candles: dict[str, pd.DataFrame],
    events: Sequence[UnlockEvent],
    days_before: float,
    days_after: float,
    bar: pd.Timedelta | None = None,
    margin_days: float = 1.0,
) -> Panel:
    """Keep each symbol's candles within [event - days_before - margin, event + days_after +
    margin]; symbols without events or candles in their windows are left out."""
    from tradelib.strategy.token_unlock import base_asset

    bar = bar if bar is not None else pd.Timedelta(hours=1)
    pre = round((days_before + margin_days) * _DAY_NS)
    post = round((days_after + margin_days) * _DAY_NS)
    kept: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]] = []
    for symbol, frame in candles.items():
        times = open_times_ns(frame)
        unlocks = sorted(
            pd.Timestamp(e.unlock_time).value for e in events if e.symbol == base_asset(symbol)
        )
        mask = np.zeros(len(times), dtype=bool)
        ends = np.zeros(len(times), dtype=bool)
        for lo, hi in _merge([(t - pre, t + post) for t in unlocks]):
            inside = np.flatnonzero((times >= lo) & (times <= hi))
            if len(inside):
                mask[inside] = True
                ends[inside[-1]] = True
        if mask.any():
            kept.append((symbol, times, mask, ends, frame))
    if not kept:
        raise DataError("no candles fall in any event window: check symbols and calendar dates")
    rows = max(int(m.sum()) for _, _, m, _, _ in kept)
    arrays = {name: np.empty((rows, len(kept))) for name in ("open", "high", "low", "close")}
    seg = np.zeros((rows, len(kept)), dtype=bool)
    times_out, maps = [], []
    for j, (_, times, mask, ends, frame) in enumerate(kept):
        n = int(mask.sum())
        for name, arr in arrays.items():
            values = frame[name].to_numpy()[mask]
            arr[:n, j] = values
            arr[n:, j] = frame["close"].to_numpy()[mask][-1]
        seg[:n, j] = ends[mask]
        times_out.append(times[mask])
        full_to_row = np.full(len(times), -1, dtype=np.int64)
        full_to_row[mask] = np.arange(n)
        maps.append(full_to_row)
    return Panel(
        symbols=tuple(k[0] for k in kept),
        times=tuple(times_out),
        full_to_row=tuple(maps),
        segment_end=seg,
        bar_ns=bar.value,
        **arrays,
    )


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
