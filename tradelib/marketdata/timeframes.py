"""Timeframe strings ('1m', '4h', '1d') as millisecond durations and bucket arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tradelib.domain import require_utc
from tradelib.errors import DataError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

#: Timeframes the aggregator builds from 1m candles; each divides a UTC day evenly.
AGGREGATED_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h")


def timeframe_ms(timeframe: str) -> int:
    """Duration of `timeframe` ('1m', '15m', '1h', '4h', '1d', '1w') in milliseconds."""
    if len(timeframe) < 2 or timeframe[-1] not in _UNIT_MS or not timeframe[:-1].isdigit():
        raise DataError(f"unknown timeframe {timeframe!r} (expected e.g. '1m', '15m', '1h', '4h')")
    count = int(timeframe[:-1])
    if count <= 0:
        raise DataError(f"timeframe {timeframe!r} must be a positive duration")
    return count * _UNIT_MS[timeframe[-1]]


def bucket_start_ms(ts_ms: int, timeframe_ms_: int) -> int:
    """Open time (ms) of the bucket of length `timeframe_ms_` holding `ts_ms` (epoch-aligned)."""
    return ts_ms - ts_ms % timeframe_ms_


def pandas_freq(timeframe: str) -> str:
    """The pandas offset alias for `timeframe` ('1m' -> '1min', '4h' -> '4h')."""
    timeframe_ms(timeframe)
    if timeframe[-1] == "w":
        raise DataError("weekly candles are Monday-aligned, not epoch-aligned: not supported here")
    unit = {"m": "min", "h": "h", "d": "D"}[timeframe[-1]]
    return f"{timeframe[:-1]}{unit}"


def datetime_ms(value: datetime, what: str) -> int:
    """Exact milliseconds since the epoch of an aware datetime (DataError if naive)."""
    return (require_utc(value, what) - _EPOCH) // _ONE_MS


def ms_datetime(ms: int) -> datetime:
    """Aware UTC datetime of `ms` milliseconds since the epoch, computed without floats."""
    return _EPOCH + timedelta(milliseconds=ms)
