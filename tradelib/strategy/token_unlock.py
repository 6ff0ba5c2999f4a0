"""TokenUnlockStrategy: trade around scheduled token unlocks (front-run the supply shock).

Timing rule (shared by backtest and live): a candle's decision time is its close (open + one
bar). The entry is the first candle closing at or after the entry time, the exit the first
candle closing at or after the exit time. Both depend only on candle times up to that candle
and on the calendar, plus (optionally) the trailing 24 h quote volume, so truncating the data
at any candle cannot change an earlier signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import numpy as np
import pandas as pd

from tradelib.domain import Signal, SignalKind, require_utc
from tradelib.strategy.base import (
    SIGNAL_FIELDS,
    Strategy,
    empty_signal_frame,
    is_normalized,
    normalize_candles,
    open_times_ns,
)
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent
from tradelib.strategy.params import TokenUnlockParams

_HOUR_NS = 3_600_000_000_000
_DAY_NS = 24 * _HOUR_NS


def base_asset(symbol: str) -> str:
    """Calendar symbol of a market key: 'ARB/USDT', 'ARB_USDT' and 'ARB' all give 'ARB'."""
    return symbol.replace("_", "/").split("/", 1)[0].upper()


def eligible_events(events: Sequence[UnlockEvent], params: TokenUnlockParams) -> list[UnlockEvent]:
    """Events big enough for `params`.

    An event passes min_unlock_pct when its stated percentage is at least that big. Rows whose
    percentage is of total supply pass too when the figure reaches the minimum, because the
    share of circulating supply is always larger. Events without a percentage (or USD value)
    pass only when the corresponding minimum is 0.
    """
    kept = []
    for e in events:
        if params.min_unlock_pct > 0 and (
            e.pct_circulating is None or float(e.pct_circulating) < params.min_unlock_pct
        ):
            continue
        if params.min_unlock_usd > 0 and (
            e.usd_value_approx is None or float(e.usd_value_approx) < params.min_unlock_usd
        ):
            continue
        kept.append(e)
    return kept


@dataclass(frozen=True, slots=True)
class EventTrade:
    """Candle positions of one event's entry and exit in a candle array (-1: not reached)."""

    event: UnlockEvent
    entry: int
    exit: int


def entry_exit_times(event: UnlockEvent, params: TokenUnlockParams) -> tuple[int, int, int]:
    """(earliest entry, latest allowed entry (exclusive), exit) as epoch nanoseconds."""
    t = pd.Timestamp(event.unlock_time).value
    exit_at = t + round(params.days_after * _DAY_NS)
    if params.direction == "short":
        return t - round(params.days_before * _DAY_NS), t, exit_at
    return t + round(params.spot_entry_delay_hours * _HOUR_NS), exit_at, exit_at


def first_close_at_or_after(close_ns: np.ndarray, when_ns: int) -> int:
    """Position of the first candle closing at or after `when_ns`, or -1 if none has yet."""
    pos = int(np.searchsorted(close_ns, when_ns, side="left"))
    return pos if pos < len(close_ns) else -1


def event_trades(
    close_ns: np.ndarray,
    events: Sequence[UnlockEvent],
    params: TokenUnlockParams,
    quote_volume_24h: np.ndarray | None = None,
) -> list[EventTrade]:
    """Where each eligible event enters and exits on candles closing at `close_ns` (sorted)."""
    out: list[EventTrade] = []
    for event in eligible_events(events, params):
        start, deadline, exit_at = entry_exit_times(event, params)
        entry = first_close_at_or_after(close_ns, start)
        if entry < 0 or close_ns[entry] >= deadline:
            continue
        if (
            params.min_quote_volume_24h > 0
            and quote_volume_24h is not None
            and not quote_volume_24h[entry] >= params.min_quote_volume_24h
        ):
            continue
        out.append(EventTrade(event, entry, first_close_at_or_after(close_ns, exit_at)))
    return out


def quote_volume_24h(frame: pd.DataFrame) -> np.ndarray:
    """Quote-currency volume of the candles opened in the 24 h up to each candle (inclusive)."""
    quote = frame["close"] * frame["volume"]
    return quote.rolling("24h").sum().to_numpy()


class TokenUnlockStrategy(Strategy):
    """Short before unlocks (or buy the post-unlock dip on spot) from a sourced calendar."""

    name: ClassVar[str] = "token_unlock"
    timeframe: ClassVar[str] = "1h"

    def __init__(
        self,
        params: TokenUnlockParams | None = None,
        calendar: UnlockCalendar | None = None,
        strategy_id: str | None = None,
    ) -> None:
        if calendar is None:
            from tradelib.strategy.calendar import load_calendar

            calendar = load_calendar()
        super().__init__(params or TokenUnlockParams(), calendar, strategy_id)
        self._last_close: dict[str, pd.Timestamp] = {}
        self._open: dict[str, UnlockEvent] = {}
        self._timer_exits: set[tuple[str, datetime]] = set()

    def signals(
        self,
        candles: Mapping[str, pd.DataFrame],
        calendar: UnlockCalendar,
        params: TokenUnlockParams,
    ) -> pd.DataFrame:
        """Boolean (symbol, field) frame on the union of candle open times."""
        frames = {s: normalize_candles(s, c) for s, c in candles.items()}
        symbols = list(frames)
        index = (
            pd.DatetimeIndex(np.unique(np.concatenate([open_times_ns(f) for f in frames.values()])))
            if frames
            else pd.DatetimeIndex([])
        )
        index = index.tz_localize("UTC") if index.tz is None else index
        index = index.rename("date")
        out = empty_signal_frame(index, symbols)
        values = out.to_numpy(copy=True)
        enter, leave = (
            ("enter_short", "exit_short")
            if params.direction == "short"
            else ("enter_long", "exit_long")
        )
        for symbol, frame in frames.items():
            close_ns = open_times_ns(frame) + self.bar.value
            qv = quote_volume_24h(frame) if params.min_quote_volume_24h > 0 else None
            trades = event_trades(close_ns, calendar.events_for(base_asset(symbol)), params, qv)
            rows = index.get_indexer(frame.index)
            # empty_signal_frame lays columns out as product(symbols, SIGNAL_FIELDS)
            first = symbols.index(symbol) * len(SIGNAL_FIELDS)
            entry_col = first + SIGNAL_FIELDS.index(enter)
            exit_col = first + SIGNAL_FIELDS.index(leave)
            for trade in trades:
                values[rows[trade.entry], entry_col] = True
                if trade.exit >= 0:
                    values[rows[trade.exit], exit_col] = True
        return pd.DataFrame(values, index=index, columns=out.columns)

    def event_at(self, symbol: str, field: str, bar_open: pd.Timestamp) -> UnlockEvent | None:
        """The event whose entry or exit window a signal on this candle belongs to."""
        close = (bar_open + self.bar).value
        best: UnlockEvent | None = None
        for event in eligible_events(self.calendar.events_for(base_asset(symbol)), self.params):
            start, deadline, exit_at = entry_exit_times(event, self.params)
            hit = start <= close < deadline if field.startswith("enter") else exit_at <= close
            if hit:
                best = event
        return best

    def describe(self, symbol: str, field: str, bar_open: pd.Timestamp) -> tuple[str, dict]:
        """Reason naming the unlock, and the event's facts as metadata."""
        event = self.event_at(symbol, field, bar_open)
        if event is None:
            return f"{self.name}: {field} {symbol}", {}
        size = (
            f"{event.pct_circulating}% ({event.pct_basis})"
            if event.pct_circulating is not None
            else "size not stated"
        )
        when = event.unlock_time.strftime("%Y-%m-%dT%H:%MZ")
        return (
            f"{self.name}: {field} {symbol} for the {event.symbol} unlock at {when}, {size}",
            {
                "unlock_time": event.unlock_time.isoformat(),
                "source_url": event.source_url,
                "direction": self.params.direction,
            },
        )

    def on_candle(
        self, symbol: str, candles_until_now: pd.DataFrame, now: datetime
    ) -> list[Signal]:
        """Signals for the candle that just closed; an exit on_timer already sent is dropped."""
        signals = super().on_candle(symbol, candles_until_now, now)
        kept: list[Signal] = []
        for signal in signals:
            bar_open = pd.Timestamp(signal.meta["bar_open"])
            event = self.event_at(symbol, signal.meta["field"], bar_open)
            if signal.kind is SignalKind.EXIT:
                # Drop only what the timer already sent; after a restart this object has no
                # memory of the entry, and the engine must still see the exit.
                if event is not None and (symbol, event.unlock_time) in self._timer_exits:
                    continue
                self._open.pop(symbol, None)
            elif event is not None:
                self._open[symbol] = event
            kept.append(signal)
        frame = (
            candles_until_now
            if is_normalized(candles_until_now)  # read only here: no copy needed
            else normalize_candles(symbol, candles_until_now)
        )
        close_ns = open_times_ns(frame) + self.bar.value
        closed = close_ns[close_ns <= pd.Timestamp(require_utc(now, "now")).value]
        if len(closed):
            self._last_close[symbol] = pd.Timestamp(int(closed[-1]), tz="UTC")
        return kept

    def on_timer(self, now: datetime) -> list[Signal]:
        """Exits whose time has come although no candle closed since (stalled data).

        Uses the exit rule `signals` uses (first_close_at_or_after) on the grid [last close, now].
        Entries always wait for a candle: they need a price and the liquidity check.
        """
        now_ts = pd.Timestamp(require_utc(now, "now"))
        out: list[Signal] = []
        for symbol, event in list(self._open.items()):
            last = self._last_close.get(symbol)
            if last is None or now_ts <= last:
                continue
            grid = np.array([last.value, now_ts.value], dtype=np.int64)
            exit_at = entry_exit_times(event, self.params)[2]
            if first_close_at_or_after(grid, exit_at) == 1:
                field = "exit_short" if self.params.direction == "short" else "exit_long"
                out.append(self._emit(symbol, field, now_ts - self.bar, now_ts, None))
                self._timer_exits.add((symbol, event.unlock_time))
                del self._open[symbol]
        return out
