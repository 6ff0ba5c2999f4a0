"""Building blocks of the CandleAggregator: open-candle accumulators, gap events, counters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import TypeVar

from tradelib.domain import Candle, timeframe_ms, to_ms

T = TypeVar("T")

CandleCallback = Callable[[Candle], None]


@dataclass(frozen=True, slots=True)
class CandleGap:
    """An explicit hole in one timeframe: no candle exists from `start` up to (excluding) `end`."""

    symbol: str
    timeframe: str
    start: datetime
    end: datetime

    @property
    def missing(self) -> int:
        """How many candles of this timeframe are absent."""
        return (to_ms(self.end, "gap end") - to_ms(self.start, "gap start")) // (
            timeframe_ms(self.timeframe)
        )


GapCallback = Callable[[CandleGap], None]


@dataclass(slots=True)
class AggregatorStats:
    """Counters of accepted and rejected input, by reason."""

    accepted: int = 0
    late: int = 0
    duplicate: int = 0
    future: int = 0
    invalid: int = 0
    candles: int = 0
    gaps: int = 0


@dataclass(slots=True)
class Minute:
    """The open 1m candle of one minute's trades, amendable until the minute closes."""

    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    quantities: list[Decimal]  # arrival order; summed once, when the candle is built
    first_ts: int
    first_id: int
    last_ts: int
    last_id: int
    ids: set[int] = field(default_factory=set)

    def bar(self) -> Bar:
        """The candle so far (its volume summed now, in arrival order)."""
        return Bar(
            self.start, self.open, self.high, self.low, self.close, ordered_sum(self.quantities)
        )


@dataclass(slots=True)
class Bar:
    """A candle being built: open time (ms) and OHLCV."""

    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(slots=True)
class Subscriber:
    """One subscription: its callbacks and the timeframes it wants (None: all)."""

    on_candle: CandleCallback | None
    on_gap: GapCallback | None
    timeframes: frozenset[str] | None


def as_list(values: Sequence[T]) -> list[T]:
    """`values` as a list, copied only if it is not one (it is only read)."""
    return values if isinstance(values, list) else list(values)


def ordered_sum(values: list[Decimal]) -> Decimal:
    """Left-to-right sum, the same additions as `total += value` one at a time."""
    return sum(islice(values, 1, None), values[0])


def merge_bar(bar: Bar, later: Bar) -> None:
    """Fold a later, adjacent-or-not sub-bar into `bar` (open stays, close moves)."""
    if later.high > bar.high:
        bar.high = later.high
    if later.low < bar.low:
        bar.low = later.low
    bar.close = later.close
    bar.volume += later.volume
