"""CandleAggregator: trades -> closed 1m candles -> 5m/15m/1h/4h, each emitted exactly once.

Rules (pure logic: no I/O, no clock; pass `now`):

- A 1m candle is built from the trades whose timestamp falls in its minute. Open is the trade with
  the smallest (timestamp, trade id), close the one with the largest, so trades that arrive out of
  order are folded in exactly where they belong; high/low are max/min, volume the exact Decimal sum.
- Grace: a minute stays *open* (amendable) until the watermark (the newest trade timestamp seen,
  or the `now` given to `advance`) passes the minute's end plus `grace`. Then its candle is closed,
  emitted once and final (Binance-style: a closed candle never changes). A trade for a minute that
  is already closed is rejected as late, with a logged reason.
- Rejected, never folded in: a non-finite or non-positive price or quantity, a repeated trade id
  within its minute (duplicate), a timestamp more than `max_future` ahead of `now` (only checked
  when `now` is given), a trade older than the closed region (late). `stats` counts each reason.
- Gaps: a minute without trades produces no candle (no invented prices). Every emitted candle whose
  predecessor of the same timeframe is not adjacent is preceded by a `CandleGap` event sent to the
  gap subscribers, so consumers see the hole explicitly.
- Higher timeframes (epoch-aligned buckets that divide a UTC day) are built from the closed 1m
  candles only: open of the first, max high, min low, close of the last, sum of volumes, which is
  exactly what pandas `resample(tf).agg(first/max/min/last/sum)` of the 1m candles gives. A bucket
  closes when the closed 1m region reaches its end; a bucket with no 1m candle emits nothing.
- Decimal arithmetic uses the caller's decimal context (28 significant digits by default), which
  keeps volume sums exact up to about 10^19 units at 10^-8 resolution. A minute's volume is
  summed once, in arrival order, when its candle is built (closed or shown as partial).
- `add_trade_columns` takes many trades at once (e.g. one websocket message) and gives exactly
  what `add_trade` on each would: candles, their order, gaps and stats.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation, getcontext
from itertools import islice
from operator import le, lt
from typing import cast

from tradelib.domain import Candle, MarketTrade, from_ms, timeframe_ms, to_ms
from tradelib.errors import DataError
from tradelib.logs import get_logger
from tradelib.marketdata.bars import (
    AggregatorStats,
    Bar,
    CandleCallback,
    CandleGap,
    GapCallback,
    Minute,
    Subscriber,
    as_list,
    merge_bar,
)

_log = get_logger(__name__)
_MINUTE = timeframe_ms("1m")
_DAY = timeframe_ms("1d")
_ZERO = Decimal(0)  # comparing Decimal to Decimal skips an int conversion per trade
_INF = Decimal("Infinity")
_FINITE = Decimal.is_finite

#: Timeframes the aggregator builds from 1m candles; each divides a UTC day evenly.
AGGREGATED_TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h")


class CandleAggregator:
    """Builds closed candles of several timeframes from one symbol's trades, incrementally."""

    def __init__(
        self,
        symbol: str,
        timeframes: Sequence[str] = AGGREGATED_TIMEFRAMES,
        grace: timedelta = timedelta(seconds=2),
        max_future: timedelta = timedelta(seconds=5),
    ) -> None:
        if "1m" not in timeframes:
            raise DataError("CandleAggregator needs '1m' among its timeframes (it builds from 1m)")
        self.symbol = symbol
        self.timeframes = tuple(dict.fromkeys(timeframes))
        self._higher: list[tuple[str, int]] = []
        for tf in self.timeframes:
            ms = timeframe_ms(tf)
            if ms % _MINUTE or _DAY % ms:
                raise DataError(f"timeframe {tf} must be whole minutes that divide a day evenly")
            if tf != "1m":
                self._higher.append((tf, ms))
        self._higher.sort(key=lambda item: item[1])
        self._tf_ms = {tf: timeframe_ms(tf) for tf in self.timeframes}
        self.grace_ms = to_ms(from_ms(0) + grace, "grace")
        self.max_future_ms = to_ms(from_ms(0) + max_future, "max_future")
        if self.grace_ms < 0 or self.max_future_ms < 0:
            raise DataError("grace and max_future must not be negative")
        self.stats = AggregatorStats()
        self._open: dict[int, Minute] = {}
        self._bars: dict[str, Bar] = {}
        self._last_emitted: dict[str, int] = {}
        self._subscribers: list[Subscriber] = []
        self._watermark = -(2**62)
        self._closed_until = -(2**62)  # every minute ending at or before this is final
        self._next_close_at = 2**62
        self._seq = 0

    # ---------------------------------------------------------------- subscription

    def subscribe(
        self,
        on_candle: CandleCallback | None = None,
        on_gap: GapCallback | None = None,
        timeframes: Iterable[str] | None = None,
    ) -> Callable[[], None]:
        """Call `on_candle` for every closed candle (and `on_gap` for gaps); returns unsubscribe."""
        sub = Subscriber(on_candle, on_gap, frozenset(timeframes) if timeframes else None)
        self._subscribers.append(sub)

        def unsubscribe() -> None:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

        return unsubscribe

    # ---------------------------------------------------------------- input

    @property
    def watermark(self) -> datetime | None:
        """Newest trade time (or `advance` time) seen, or None before any input."""
        return None if self._watermark < -(2**61) else from_ms(self._watermark)

    @property
    def closed_until(self) -> datetime | None:
        """Every minute ending at or before this time is closed and final."""
        return None if self._closed_until < -(2**61) else from_ms(self._closed_until)

    def add(self, trade: MarketTrade, now: datetime | None = None) -> list[Candle]:
        """Fold one validated trade in; returns the candles this closed, oldest first."""
        tid = int(trade.trade_id) if trade.trade_id.isdigit() else None
        now_ms = None if now is None else to_ms(now, "now")
        ts = to_ms(trade.timestamp, "trade timestamp")
        return self.add_trade(ts, trade.price, trade.quantity, tid, now_ms)

    def add_trades(
        self, trades: Iterable[MarketTrade], now: datetime | None = None
    ) -> list[Candle]:
        """Fold several trades in; returns every candle they closed, oldest first."""
        trades = list(trades)
        ids = [int(t.trade_id) if t.trade_id.isdigit() else None for t in trades]
        if None in ids:  # numbered in arrival order by add_trade, one at a time
            out: list[Candle] = []
            for trade in trades:
                out.extend(self.add(trade, now))
            return out
        return self.add_trade_columns(
            [to_ms(t.timestamp, "trade timestamp") for t in trades],
            [t.price for t in trades],
            [t.quantity for t in trades],
            cast(list[int], ids),
            None if now is None else to_ms(now, "now"),
        )

    def add_trade(
        self,
        ts_ms: int,
        price: Decimal,
        quantity: Decimal,
        trade_id: int | None = None,
        now_ms: int | None = None,
    ) -> list[Candle]:
        """Hot path: fold one trade (ms timestamp, Decimal price/qty) in; returns closed candles."""
        if not (price.is_finite() and price > _ZERO and quantity.is_finite() and quantity > _ZERO):
            self.stats.invalid += 1
            self._reject("invalid", ts_ms, trade_id, f"price {price} / quantity {quantity}")
            return []
        if now_ms is not None and ts_ms > now_ms + self.max_future_ms:
            self.stats.future += 1
            self._reject("future", ts_ms, trade_id, f"{ts_ms - now_ms} ms ahead of now")
            return []
        if ts_ms < self._closed_until:
            self.stats.late += 1
            self._reject("late", ts_ms, trade_id, "its minute is already closed and final")
            return []
        if trade_id is None:
            self._seq += 1
            trade_id = self._seq
        start = ts_ms - ts_ms % _MINUTE
        m = self._open.get(start)
        if m is None:
            self._open[start] = Minute(
                start, price, price, price, price, [quantity], ts_ms, trade_id, ts_ms, trade_id,
                {trade_id},
            )  # fmt: skip
        else:
            ids = m.ids
            if trade_id in ids:
                self.stats.duplicate += 1
                self._reject("duplicate", ts_ms, trade_id, "trade id already counted")
                return []
            ids.add(trade_id)
            if price > m.high:
                m.high = price
            elif price < m.low:
                m.low = price
            m.quantities.append(quantity)
            if ts_ms > m.last_ts or (ts_ms == m.last_ts and trade_id > m.last_id):
                m.close, m.last_ts, m.last_id = price, ts_ms, trade_id
            elif ts_ms < m.first_ts or (ts_ms == m.first_ts and trade_id < m.first_id):
                m.open, m.first_ts, m.first_id = price, ts_ms, trade_id
        self.stats.accepted += 1
        if ts_ms > self._watermark:
            self._watermark = ts_ms
            if ts_ms >= self._next_close_at or self._next_close_at == 2**62:
                return self._close_due()
        return []

    def add_trade_columns(
        self,
        ts_ms: Sequence[int],
        prices: Sequence[Decimal],
        quantities: Sequence[Decimal],
        trade_ids: Sequence[int],
        now_ms: int | None = None,
    ) -> list[Candle]:
        """Fold many trades in (columns, arrival order); exactly add_trade on each, faster.

        When timestamps never decrease, each minute's run of trades that is valid, new and in
        (timestamp, id) order is folded at once with C-level min/max; anything else (and any
        batch out of time order) goes through add_trade one trade at a time.
        """
        n = len(ts_ms)
        if not len(prices) == len(quantities) == len(trade_ids) == n:
            raise DataError("add_trade_columns: the columns have different lengths")
        ts, ps, qs, ids = as_list(ts_ms), as_list(prices), as_list(quantities), as_list(trade_ids)
        out: list[Candle] = []
        if not all(map(le, ts, islice(ts, 1, None))):
            for row in zip(ts, ps, qs, ids, strict=True):
                out.extend(self.add_trade(*row, now_ms))
            return out
        a = 0
        while a < n:
            start = ts[a] - ts[a] % _MINUTE
            b = bisect_left(ts, start + _MINUTE, a)
            if self._fold_run(start, ts, ps[a:b], qs[a:b], ids[a:b], a, now_ms):
                # what add_trade does after each trade; all of them are in this open minute,
                # so closing older minutes once, after the last one, closes the same candles
                if ts[b - 1] > self._watermark:
                    self._watermark = ts[b - 1]
                    if ts[b - 1] >= self._next_close_at or self._next_close_at == 2**62:
                        out.extend(self._close_due())
            else:
                for i in range(a, b):
                    out.extend(self.add_trade(ts[i], ps[i], qs[i], ids[i], now_ms))
            a = b
        return out

    def _fold_run(
        self,
        start: int,
        ts: list[int],
        ps: list[Decimal],
        qs: list[Decimal],
        ids: list[int],
        first: int,
        now_ms: int | None,
    ) -> bool:
        """Fold trades ts[first:first+len(ps)] of minute `start` at once if add_trade would
        accept every one of them in turn; otherwise change nothing and return False."""
        last = first + len(ps) - 1
        if start < self._closed_until:
            return False  # late: add_trade rejects them one by one
        if now_ms is not None and ts[last] > now_ms + self.max_future_ms:
            return False
        try:
            # With InvalidOperation trapped (the default) ordering a NaN raises, so bounds
            # alone prove every value finite; otherwise ask each value.
            if not getcontext().traps[InvalidOperation] and not (
                all(map(_FINITE, ps)) and all(map(_FINITE, qs))
            ):
                return False
            low, high = min(ps), max(ps)  # the first of equal extremes, as add_trade keeps
            if not (low > _ZERO and high < _INF and min(qs) > _ZERO and max(qs) < _INF):
                return False
        except InvalidOperation:
            return False
        if not all(map(lt, ids, islice(ids, 1, None))):
            return False  # ids rising and timestamps not falling: (ts, id) rises, no repeats
        m = self._open.get(start)
        if m is None:
            self._open[start] = Minute(
                start, ps[0], high, low, ps[-1], qs, ts[first], ids[0], ts[last], ids[-1],
                set(ids),
            )  # fmt: skip
        else:
            if not m.ids.isdisjoint(ids):
                return False
            m.ids.update(ids)
            if high > m.high:
                m.high = high
            if low < m.low:
                m.low = low
            m.quantities.extend(qs)
            if ts[last] > m.last_ts or (ts[last] == m.last_ts and ids[-1] > m.last_id):
                m.close, m.last_ts, m.last_id = ps[-1], ts[last], ids[-1]
            if ts[first] < m.first_ts or (ts[first] == m.first_ts and ids[0] < m.first_id):
                m.open, m.first_ts, m.first_id = ps[0], ts[first], ids[0]
        self.stats.accepted += len(ps)
        return True

    def advance(self, now: datetime) -> list[Candle]:
        """Move the watermark to `now` (quiet markets still close); returns closed candles."""
        now_ms = to_ms(now, "now")
        if now_ms <= self._watermark:
            return []
        self._watermark = now_ms
        return self._close_due()

    def add_candle(self, candle: Candle) -> list[Candle]:
        """Take a final 1m candle from elsewhere (REST backfill); returns the candles it closed."""
        if candle.timeframe != "1m" or candle.symbol != self.symbol:
            raise DataError(
                f"add_candle wants {self.symbol} 1m candles, got {candle.symbol} {candle.timeframe}"
            )
        start = to_ms(candle.open_time, "candle open_time")
        if start < self._closed_until:
            self.stats.late += 1
            self._reject("late", start, None, "1m candle for a minute already closed")
            return []
        if self._open.pop(start, None) is not None:
            _log.info("candle_replaces_trades", symbol=self.symbol, open_time=candle.open_time)
        out = self._close_minutes_before(start)
        out.extend(
            self._emit_minute(
                Bar(start, candle.open, candle.high, candle.low, candle.close, candle.volume)
            )
        )
        self._closed_until = start + _MINUTE
        self._watermark = max(self._watermark, self._closed_until + self.grace_ms)
        out.extend(self._close_due())
        return out

    def flush(self) -> list[Candle]:
        """End of data: close every open candle of every timeframe, even incomplete ones."""
        out = self._close_minutes_before(2**62)
        for tf, _ in self._higher:
            bar = self._bars.pop(tf, None)
            if bar is not None:
                out.extend(self._emit(tf, bar))
        ends = [self._closed_until] + [
            self._last_emitted[tf] + ms for tf, ms in self._higher if tf in self._last_emitted
        ]
        if "1m" in self._last_emitted:
            ends.append(self._last_emitted["1m"] + _MINUTE)
        self._closed_until = max(ends)
        self._watermark = max(self._watermark, self._closed_until + self.grace_ms)
        self._next_close_at = self._closed_until + _MINUTE + self.grace_ms
        return out

    # ---------------------------------------------------------------- views

    def partial(self, timeframe: str) -> Candle | None:
        """The newest still-open candle of `timeframe` (closed=False), or None."""
        if timeframe not in self.timeframes:
            raise DataError(f"{timeframe} is not built by this aggregator ({self.timeframes})")
        if not self._open and timeframe == "1m":
            return None
        tf_ms = timeframe_ms(timeframe)
        newest = max(self._open) if self._open else None
        bar = self._bars.get(timeframe)
        start = (newest - newest % tf_ms) if newest is not None else (bar.start if bar else None)
        if start is None:
            return None
        parts: list[Bar] = []
        if bar is not None and bar.start == start and timeframe != "1m":
            parts.append(bar)
        for key in sorted(self._open):
            if start <= key < start + tf_ms:
                parts.append(self._open[key].bar())
        if not parts:
            return None
        merged = Bar(
            start, parts[0].open, parts[0].high, parts[0].low, parts[0].close, parts[0].volume
        )
        for p in parts[1:]:
            merge_bar(merged, p)
        return self._candle(timeframe, merged, closed=False)

    # ---------------------------------------------------------------- internals

    def _reject(self, reason: str, ts_ms: int, trade_id: int | None, detail: str) -> None:
        _log.warning(
            "trade_rejected",
            symbol=self.symbol,
            reason=reason,
            detail=detail,
            trade_time=from_ms(ts_ms).isoformat(),
            trade_id=trade_id,
        )

    def _close_due(self) -> list[Candle]:
        limit = self._watermark - self.grace_ms
        frontier = limit - limit % _MINUTE
        if frontier <= self._closed_until:
            self._next_close_at = self._closed_until + _MINUTE + self.grace_ms
            return []
        out = self._close_minutes_before(frontier)
        self._closed_until = frontier
        out.extend(self._close_bars_until(frontier))
        self._next_close_at = frontier + _MINUTE + self.grace_ms
        return out

    def _close_minutes_before(self, end: int) -> list[Candle]:
        out: list[Candle] = []
        for start in sorted(k for k in self._open if k < end):
            out.extend(self._emit_minute(self._open.pop(start).bar()))
        return out

    def _emit_minute(self, minute: Bar) -> list[Candle]:
        out = self._close_bars_until(minute.start)
        out.extend(self._emit("1m", minute))
        for tf, ms in self._higher:
            start = minute.start - minute.start % ms
            bar = self._bars.get(tf)
            if bar is None:
                self._bars[tf] = Bar(
                    start, minute.open, minute.high, minute.low, minute.close, minute.volume
                )
            else:
                merge_bar(bar, minute)
        out.extend(self._close_bars_until(minute.start + _MINUTE))
        return out

    def _close_bars_until(self, until: int) -> list[Candle]:
        out: list[Candle] = []
        for tf, ms in self._higher:
            bar = self._bars.get(tf)
            if bar is not None and bar.start + ms <= until:
                del self._bars[tf]
                out.extend(self._emit(tf, bar))
        return out

    def _emit(self, timeframe: str, bar: Bar) -> list[Candle]:
        candle = self._candle(timeframe, bar, closed=True)
        previous = self._last_emitted.get(timeframe)
        step = self._tf_ms[timeframe]
        gap = None
        if previous is not None and bar.start > previous + step:
            gap = CandleGap(self.symbol, timeframe, from_ms(previous + step), from_ms(bar.start))
            self.stats.gaps += 1
        self._last_emitted[timeframe] = bar.start
        self.stats.candles += 1
        for sub in list(self._subscribers):
            if sub.timeframes is not None and timeframe not in sub.timeframes:
                continue
            try:
                if gap is not None and sub.on_gap is not None:
                    sub.on_gap(gap)
                if sub.on_candle is not None:
                    sub.on_candle(candle)
            except Exception:  # a broken subscriber must not stop the others or the stream
                _log.exception("candle_subscriber_failed", symbol=self.symbol, timeframe=timeframe)
        return [candle]

    def _candle(self, timeframe: str, bar: Bar, closed: bool) -> Candle:
        return Candle(
            symbol=self.symbol,
            timeframe=timeframe,
            open_time=from_ms(bar.start),
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            closed=closed,
        )


def aggregate_trades(
    symbol: str,
    trades: Iterable[MarketTrade],
    timeframes: Sequence[str] = AGGREGATED_TIMEFRAMES,
) -> dict[str, list[Candle]]:
    """Batch helper: every candle of `trades` (any order) by timeframe, last buckets flushed."""
    agg = CandleAggregator(symbol, timeframes, grace=timedelta(0))
    out: dict[str, list[Candle]] = {tf: [] for tf in agg.timeframes}
    ordered = sorted(trades, key=lambda t: (t.timestamp, _id_key(t.trade_id)))
    candles = agg.add_trades(ordered)
    candles.extend(agg.flush())
    for candle in candles:
        out[candle.timeframe].append(candle)
    return out


def _id_key(trade_id: str) -> int:
    return int(trade_id) if trade_id.isdigit() else -1
