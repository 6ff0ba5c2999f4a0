"""Market arithmetic every layer shares: UTC times, epoch milliseconds, timeframes, steps, symbols.

Exact by construction: milliseconds come from integer `timedelta` arithmetic, never from a
float timestamp, and a value is put on a step or tick by Decimal division to an integral value.
No I/O, no clock, no imports from the rest of tradelib but its errors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from tradelib.errors import DataError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PANDAS_UNIT = {"s": "s", "m": "min", "h": "h", "d": "D"}

# -- times --------------------------------------------------------------------------------


def require_utc(value: datetime, what: str) -> datetime:
    """Return `value` if it is timezone-aware, converted to UTC; raise DataError otherwise."""
    if value.tzinfo is UTC:  # the common case, and what astimezone(UTC) returns as is
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataError(f"{what} must be a timezone-aware datetime (got naive {value.isoformat()})")
    return value.astimezone(UTC)


# How far data may be stamped ahead of our clock (exchange and local clocks drift a little).
# Further ahead, the stamp or the clock is wrong: such data is never counted as fresh.
MAX_CLOCK_SKEW = timedelta(seconds=5)


def stamped_in_future(stamp: datetime, now: datetime) -> bool:
    """True when `stamp` lies more than MAX_CLOCK_SKEW after `now`."""
    return require_utc(stamp, "data time") - require_utc(now, "now") > MAX_CLOCK_SKEW


def to_ms(value: datetime, what: str = "timestamp") -> int:
    """Exact milliseconds since the epoch (the unit ccxt and exchanges use), floored."""
    return (require_utc(value, what) - EPOCH) // _ONE_MS


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of `ms` milliseconds since the epoch, computed without floats."""
    try:
        return EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise DataError(f"timestamp {ms} ms is outside the years 1 to 9999") from None


# -- timeframes ---------------------------------------------------------------------------


def timeframe_ms(timeframe: str) -> int:
    """Duration of `timeframe` ('1s', '1m', '15m', '1h', '4h', '1d', '1w') in milliseconds."""
    if len(timeframe) < 2 or timeframe[-1] not in _UNIT_MS or not timeframe[:-1].isdigit():
        raise DataError(f"unknown timeframe {timeframe!r} (expected e.g. '1m', '15m', '1h', '4h')")
    count = int(timeframe[:-1])
    if count <= 0:
        raise DataError(f"timeframe {timeframe!r} must be a positive duration")
    return count * _UNIT_MS[timeframe[-1]]


def timeframe_delta(timeframe: str) -> timedelta:
    """Duration of `timeframe` as a timedelta."""
    return timedelta(milliseconds=timeframe_ms(timeframe))


def pandas_freq(timeframe: str) -> str:
    """The pandas offset alias for `timeframe` ('1m' -> '1min', '4h' -> '4h')."""
    timeframe_ms(timeframe)
    if timeframe[-1] == "w":
        raise DataError("weekly candles are Monday-aligned, not epoch-aligned: not supported here")
    return f"{timeframe[:-1]}{_PANDAS_UNIT[timeframe[-1]]}"


# -- steps and ticks ----------------------------------------------------------------------


def _to_step(value: Decimal, step: Decimal | None, rounding: str) -> Decimal:
    if step is None or step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=rounding) * step).quantize(step)


def round_down(value: Decimal, step: Decimal | None) -> Decimal:
    """`value` floored to a multiple of `step` (unchanged when step is None or 0)."""
    return _to_step(value, step, ROUND_FLOOR)


def round_up(value: Decimal, step: Decimal | None) -> Decimal:
    """`value` raised to a multiple of `step` (unchanged when step is None or 0)."""
    return _to_step(value, step, ROUND_CEILING)


def round_nearest(value: Decimal, step: Decimal | None) -> Decimal:
    """`value` on the nearest multiple of `step`, ties to even (unchanged when step is None)."""
    return _to_step(value, step, ROUND_HALF_EVEN)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """True when `value` is an exact multiple of `step` (any value when step is 0)."""
    return step <= 0 or value % step == 0


# -- symbols ------------------------------------------------------------------------------


def split_symbol(symbol: str) -> tuple[str, str]:
    """Base and quote asset of a ccxt symbol ('ARB/USDT' or 'BTC/USDT:USDT')."""
    pair = symbol.split(":", 1)[0]
    base, sep, quote = pair.partition("/")
    if not sep or not base or not quote or "/" in quote:
        raise DataError(f"symbol {symbol!r} is not of the form BASE/QUOTE")
    return base, quote


def parse_candle_file(stem: str) -> tuple[str, str]:
    """(symbol, timeframe) of a bundled candle file's stem: 'ARB_USDT-1h' -> ('ARB/USDT', '1h')."""
    name, _, timeframe = stem.rpartition("-")
    base, sep, quote = name.partition("_")
    if not sep or not base or not quote or "_" in quote:
        raise DataError(f"candle file {stem!r}: expected <BASE>_<QUOTE>-<timeframe>")
    timeframe_ms(timeframe)
    return f"{base}/{quote}", timeframe
