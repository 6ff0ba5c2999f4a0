"""vectorbt simulation of TokenUnlockStrategy on an event panel: many columns per kernel call.

Columns are (parameter set, symbol) pairs, parameter sets outer. Every column is its own
sleeve (cash_sharing=False) holding `init_cash / n_symbols`; a parameter set's portfolio is
the sum of its symbol sleeves. Each trade uses the whole sleeve. Costs: Binance spot taker fee
0.1 % per side plus slippage; shorts pay no funding or borrow (not modelled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradelib.backtest.numba_cache import configure_numba_cache, enable_vectorbt_caching

configure_numba_cache()

import vectorbt as vbt  # noqa: E402  (after the cache folder is set)
from numba import njit  # noqa: E402
from vectorbt.base.array_wrapper import ArrayWrapper  # noqa: E402
from vectorbt.portfolio import nb as pnb  # noqa: E402
from vectorbt.portfolio.enums import (  # noqa: E402
    AccumulationMode,
    ConflictMode,
    DirectionConflictMode,
    OppositeEntryMode,
    SizeType,
    StopEntryPrice,
    StopExitMode,
    StopExitPrice,
    StopUpdateMode,
    log_dt,
    order_dt,
)
from vectorbt.records.nb import col_map_nb  # noqa: E402

from tradelib.backtest import stops  # noqa: E402
from tradelib.backtest.data import Panel  # noqa: E402
from tradelib.strategy.calendar import UnlockEvent  # noqa: E402
from tradelib.strategy.params import TokenUnlockParams  # noqa: E402
from tradelib.strategy.token_unlock import (  # noqa: E402
    EventTrade,
    base_asset,
    event_trades,
    quote_volume_24h,
)

enable_vectorbt_caching()

# Plain ints: numba compiles them in as constants (enum namedtuples break the disk cache).
_SIZE_TYPE_AMOUNT = int(SizeType.Amount)
_ACCUMULATION_MODE_DISABLED = int(AccumulationMode.Disabled)
_CONFLICT_MODE_IGNORE = int(ConflictMode.Ignore)
_DIRECTION_CONFLICT_MODE_IGNORE = int(DirectionConflictMode.Ignore)
_OPPOSITE_ENTRY_MODE_REVERSE_REDUCE = int(OppositeEntryMode.ReverseReduce)
_STOP_ENTRY_PRICE_FILL = int(StopEntryPrice.FillPrice)
_STOP_EXIT_PRICE_CLOSE = int(StopExitPrice.Close)
_STOP_EXIT_MODE_CLOSE = int(StopExitMode.Close)
_STOP_UPDATE_MODE_OVERRIDE = int(StopUpdateMode.Override)

BINANCE_TAKER_FEE = 0.001
DEFAULT_SLIPPAGE = 0.0005
DEFAULT_CASH = 10_000.0
ONE_HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Costs:
    """Trading costs as fractions of notional (0.001 = 0.1 %), charged on entry and exit."""

    fees: float = BINANCE_TAKER_FEE
    slippage: float = DEFAULT_SLIPPAGE


@njit(cache=True)
def _simulate_nb(  # type: ignore[no-untyped-def]
    target_shape,
    group_lens,
    init_cash,
    call_seq,
    long_entries,
    long_exits,
    short_entries,
    short_exits,
    fees,
    slippage,
    open_,
    high,
    low,
    close,
    sl_stop,
    tp_stop,
    stop_loss,
    activation,
    distance,
    max_orders,
):
    # The jitted callbacks are globals here, not arguments, so this kernel's disk cache hits.
    inf = np.full(1, np.inf)
    zero = np.zeros(1)
    nan = np.full(1, np.nan)
    no = np.zeros(1, dtype=np.bool_)
    yes = np.ones(1, dtype=np.bool_)
    return pnb.simulate_from_signal_func_nb(
        target_shape,
        group_lens,
        init_cash,
        call_seq,
        pnb.ls_enex_signal_func_nb,
        (long_entries, long_exits, short_entries, short_exits),
        inf,  # size: the whole sleeve
        inf,  # price: the close
        np.full(1, _SIZE_TYPE_AMOUNT),
        fees,
        zero,  # fixed fees
        slippage,
        zero,  # min size
        inf,  # max size
        nan,  # size granularity
        zero,  # reject probability
        no,  # lock cash
        yes,  # allow partial
        no,  # raise on reject
        no,  # log
        np.full(1, _ACCUMULATION_MODE_DISABLED),
        np.full(1, _CONFLICT_MODE_IGNORE),
        np.full(1, _CONFLICT_MODE_IGNORE),
        np.full(1, _DIRECTION_CONFLICT_MODE_IGNORE),
        np.full(1, _OPPOSITE_ENTRY_MODE_REVERSE_REDUCE),
        inf,  # valuation price: the order price
        open_,
        high,
        low,
        close,
        sl_stop,
        yes,  # trailing on; trailing_after_activation_nb keeps it fixed until activation
        tp_stop,
        np.full(1, _STOP_ENTRY_PRICE_FILL),  # levels from the fill, as the engine sets them
        np.full(1, _STOP_EXIT_PRICE_CLOSE),  # a stop seen at the close fills there (+ slippage)
        np.full(1, _STOP_EXIT_MODE_CLOSE),
        np.full(1, _STOP_UPDATE_MODE_OVERRIDE),
        stops.trailing_after_activation_nb,
        (stop_loss, activation, distance),
        pnb.no_adjust_tp_func_nb,
        (),
        True,
        False,
        True,
        False,
        max_orders,
        1,
        False,
        True,
    )


@dataclass
class PanelSignals:
    """Signals of a list of parameter sets on one panel, stored once per timing.

    Parameter sets with the same timing (direction, days, filters) differ only in their stops,
    so their signals are identical: `timing[c]` is set c's row in `enter` and `planned`.
    The (rows x columns) arrays, columns = (parameter set, symbol) with sets outer, are built
    on demand.
    """

    enter: np.ndarray  # (timings, symbols, rows) bool: entry candles
    planned: np.ndarray  # (timings, symbols, rows) bool: time exits (not window ends)
    segment_end: np.ndarray  # (rows, symbols) bool: last candle of a window (forced exit)
    timing: np.ndarray  # (parameter sets,) int
    short: np.ndarray  # (timings,) bool
    trades: list[list[list[EventTrade]]]  # [param set][symbol] -> event trades (panel rows)

    def live_rows(self, g: int, j: int, length: int) -> np.ndarray:
        """Rows of symbol j where timing g can enter or hold a position, ascending.

        A position opens on an entry and closes, at the latest, on the first later exit
        (planned or window end) that is not also an entry (vectorbt ignores an entry and an
        exit on the same candle). Elsewhere a sleeve is flat with nothing to act on.
        """
        enter = self.enter[g, j, :length]
        entries = np.flatnonzero(enter)
        if not len(entries):
            return entries
        exits = self.planned[g, j, :length] | self.segment_end[:length, j]
        clean = np.append(np.flatnonzero(exits & ~enter), length - 1)
        ends = clean[np.minimum(np.searchsorted(clean, entries, side="right"), len(clean) - 1)]
        bounds = np.zeros(length + 1, dtype=np.int64)
        np.add.at(bounds, entries, 1)
        np.add.at(bounds, ends + 1, -1)
        return np.flatnonzero(np.cumsum(bounds[:-1]) > 0)

    def _columns(self, per_timing: np.ndarray) -> np.ndarray:
        per_set = per_timing[self.timing]  # (sets, symbols, rows)
        return np.ascontiguousarray(per_set.transpose(2, 0, 1)).reshape(per_set.shape[2], -1)

    def _exits(self) -> np.ndarray:
        return self.planned | self.segment_end.T[None, :, :]

    def _side(self, short: bool) -> np.ndarray:
        return (self.short == short)[:, None, None]

    @property
    def long_entries(self) -> np.ndarray:
        """(rows, columns) long entries."""
        return self._columns(self.enter & self._side(False))

    @property
    def long_exits(self) -> np.ndarray:
        """(rows, columns) long exits, window ends included."""
        return self._columns(self._exits() & self._side(False))

    @property
    def short_entries(self) -> np.ndarray:
        """(rows, columns) short entries."""
        return self._columns(self.enter & self._side(True))

    @property
    def short_exits(self) -> np.ndarray:
        """(rows, columns) short exits, window ends included."""
        return self._columns(self._exits() & self._side(True))

    @property
    def planned_exit(self) -> np.ndarray:
        """(rows, columns) time exits (not the forced end-of-window exits)."""
        return self._columns(self.planned)


class SignalSource:
    """Per-symbol full candle times, events and liquidity, to place signals on a panel."""

    def __init__(
        self,
        candles: Mapping[str, pd.DataFrame],
        events: Sequence[UnlockEvent],
        panel: Panel,
        bar: pd.Timedelta = ONE_HOUR,
    ) -> None:
        self.panel = panel
        self.close_ns = [pd.DatetimeIndex(candles[s].index).asi8 + bar.value for s in panel.symbols]
        self.events = [[e for e in events if e.symbol == base_asset(s)] for s in panel.symbols]
        self._candles = candles
        self._qv: dict[str, np.ndarray] = {}
        self._cache: dict[tuple, list[EventTrade]] = {}

    def trades(self, j: int, params: TokenUnlockParams) -> list[EventTrade]:
        """Event trades of symbol j for `params`, positions in panel rows (outside: dropped)."""
        key = (j, _timing_key(params))
        if key not in self._cache:
            symbol = self.panel.symbols[j]
            qv = None
            if params.min_quote_volume_24h > 0:
                if symbol not in self._qv:
                    self._qv[symbol] = quote_volume_24h(self._candles[symbol])
                qv = self._qv[symbol]
            rows = self.panel.full_to_row[j]
            placed = []
            for t in event_trades(self.close_ns[j], self.events[j], params, qv):
                entry = int(rows[t.entry])
                if entry < 0:
                    continue  # entry candle outside the panel window (data gap): no trade
                exit_ = int(rows[t.exit]) if t.exit >= 0 else -1
                placed.append(EventTrade(t.event, entry, exit_))
            self._cache[key] = placed
        return self._cache[key]

    def signals(self, params_list: Sequence[TokenUnlockParams]) -> PanelSignals:
        """Entry and time-exit candles of every timing among `params_list`, per symbol."""
        n_sym = len(self.panel.symbols)
        keys: dict[tuple, int] = {}
        timing = np.array(
            [keys.setdefault(_timing_key(p), len(keys)) for p in params_list], dtype=np.int64
        )
        first = {g: c for c, g in reversed(list(enumerate(timing.tolist())))}
        shape = (len(keys), n_sym, self.panel.rows)
        enter = np.zeros(shape, dtype=bool)
        planned = np.zeros(shape, dtype=bool)
        by_timing = []
        for g in range(len(keys)):
            per_symbol = [self.trades(j, params_list[first[g]]) for j in range(n_sym)]
            for j, trades in enumerate(per_symbol):
                enter[g, j, [t.entry for t in trades]] = True
                planned[g, j, [t.exit for t in trades if t.exit >= 0]] = True
            by_timing.append(per_symbol)
        return PanelSignals(
            enter=enter,
            planned=planned,
            segment_end=self.panel.segment_end,
            timing=timing,
            short=np.array([params_list[first[g]].direction == "short" for g in range(len(keys))]),
            trades=[by_timing[g] for g in timing.tolist()],
        )


def _timing_key(p: TokenUnlockParams) -> tuple:
    return (
        p.direction,
        p.days_before if p.direction == "short" else 0.0,
        p.days_after,
        p.spot_entry_delay_hours if p.direction == "spot" else 0.0,
        p.min_unlock_pct,
        p.min_unlock_usd,
        p.min_quote_volume_24h,
    )


def simulate_orders(
    panel: Panel,
    signals: PanelSignals,
    params_list: Sequence[TokenUnlockParams],
    costs: Costs | None = None,
    init_cash: float = DEFAULT_CASH,
) -> np.ndarray:
    """vectorbt order records of every (parameter set, symbol) column, in column order.

    Columns are independent sleeves, so the kernel runs once per (timing, symbol) over the
    parameter sets of that timing. Their signals and the close are single columns the kernel
    broadcasts, and only the rows where a sleeve can enter or hold a position are simulated:
    on the others it is flat with no entry, so no order can fill there. Records are mapped
    back to panel rows and columns and merged in the order one call over all columns writes
    them (column, then row).
    """
    costs = costs or Costs()
    n_sym = len(panel.symbols)
    stop_loss = np.array([p.stop_loss_pct / 100 for p in params_list], dtype=np.float64)
    take_profit = np.array([p.take_profit_pct / 100 for p in params_list], dtype=np.float64)
    activation = np.array([p.trailing_activation_pct / 100 for p in params_list], dtype=np.float64)
    distance = np.array([p.trailing_distance_pct / 100 for p in params_list], dtype=np.float64)
    fees, slippage = np.full(1, costs.fees), np.full(1, costs.slippage)
    lengths = panel.lengths()
    parts = []
    for g in range(len(signals.short)):
        sets = np.flatnonzero(signals.timing == g)
        n = len(sets)
        for j in range(n_sym):
            rows = signals.live_rows(g, j, lengths[j])
            if not len(rows):
                continue
            enter = signals.enter[g, j, rows][:, None]
            leave = (signals.planned[g, j, rows] | panel.segment_end[rows, j])[:, None]
            none = np.zeros_like(enter)
            long_entries, long_exits, short_entries, short_exits = (
                (none, none, enter, leave) if signals.short[g] else (enter, leave, none, none)
            )
            close = np.ascontiguousarray(panel.close[rows, j][:, None])
            records, _ = _simulate_nb(
                (len(rows), n),
                np.ones(n, dtype=np.int64),
                np.full(n, init_cash / n_sym, dtype=np.float64),
                np.zeros((len(rows), n), dtype=np.int64),  # call_seq: one column per group
                long_entries,
                long_exits,
                short_entries,
                short_exits,
                fees,
                slippage,
                close,  # stops are judged on candle closes, as the engine judges them each cycle:
                close,  # an intrabar high/low would exit trades the hourly engine holds (parity)
                close,
                close,
                np.ascontiguousarray(stop_loss[sets][None, :]),
                np.ascontiguousarray(take_profit[sets][None, :]),
                np.ascontiguousarray(stop_loss[sets]),
                np.ascontiguousarray(activation[sets]),
                np.ascontiguousarray(distance[sets]),
                # at most one entry and one exit per trade per column
                int(2 * enter.sum() * n + n),
            )
            records = records.copy()
            records["col"] = sets[records["col"]] * n_sym + j
            records["idx"] = rows[records["idx"]]
            parts.append(records)
    if not parts:
        return np.empty(0, dtype=order_dt)
    merged = np.concatenate(parts)
    merged = merged[np.argsort(merged["col"], kind="stable")]
    merged["id"] = np.arange(len(merged))
    return merged


def trade_records(order_records: np.ndarray, panel: Panel, n_combos: int) -> np.ndarray:
    """vectorbt exit-trade records (what Portfolio.trades holds) from the order records."""
    n_cols = n_combos * len(panel.symbols)
    # The kernel reads only the last row's close (an open trade's mark): a broadcast view.
    last_close = np.broadcast_to(np.tile(panel.close[-1], n_combos), (panel.rows, n_cols))
    col_map = col_map_nb(order_records["col"], n_cols)
    return pnb.get_exit_trades_nb(order_records, last_close, col_map)


def portfolio(
    panel: Panel, order_records: np.ndarray, n_combos: int, init_cash: float = DEFAULT_CASH
) -> vbt.Portfolio:
    """vectorbt Portfolio over every column (costly: it holds a rows x columns close frame)."""
    n_sym = len(panel.symbols)
    n_cols = n_combos * n_sym
    columns = pd.MultiIndex.from_arrays(
        [np.repeat(np.arange(n_combos), n_sym), np.tile(list(panel.symbols), n_combos)],
        names=["combo", "symbol"],
    )
    wrapper = ArrayWrapper(index=pd.RangeIndex(panel.rows), columns=columns, ndim=2, freq="1h")
    close = np.ascontiguousarray(np.tile(panel.close, (1, n_combos)))
    cash = np.full(n_cols, init_cash / n_sym, dtype=np.float64)
    call_seq = np.zeros((panel.rows, n_cols), dtype=np.int64)
    log_records = np.empty(0, dtype=log_dt)
    return vbt.Portfolio(wrapper, close, order_records, log_records, cash, False, call_seq)


def simulate(
    panel: Panel,
    signals: PanelSignals,
    params_list: Sequence[TokenUnlockParams],
    costs: Costs | None = None,
    init_cash: float = DEFAULT_CASH,
) -> vbt.Portfolio:
    """One vectorbt simulation over every (parameter set, symbol) column, as a Portfolio."""
    orders = simulate_orders(panel, signals, params_list, costs, init_cash)
    return portfolio(panel, orders, len(params_list), init_cash)


def trade_table(
    rec: np.ndarray,
    panel: Panel,
    signals: PanelSignals,
    params_list: Sequence[TokenUnlockParams],
    costs: Costs | None = None,
) -> pd.DataFrame:
    """Trades: combo, symbol, side, entry/exit time (candle close) and price, reason, pnl.

    `rec` are vectorbt's exit-trade records (trade_records). Also carries the panel positions
    (col, entry_idx, exit_idx) and entry fees the equity reconstruction needs.
    """
    costs = costs or Costs()
    n_sym = len(panel.symbols)
    cols = rec["col"].astype(np.int64)
    combo, sym = cols // n_sym, cols % n_sym
    entry_idx, exit_idx = rec["entry_idx"].astype(np.int64), rec["exit_idx"].astype(np.int64)
    times = panel.close_times()
    entry_ns = times[entry_idx, sym]
    exit_ns = times[exit_idx, sym]
    short = rec["direction"] == 1
    sign = np.where(short, -1.0, 1.0)
    closed = rec["status"] == 1
    # Why a trade closed: stops are judged on closes and measured from the entry fill (as the
    # engine does), so every exit fills at a close less slippage; vectorbt checks stops before
    # signals, so a stop wins a tie with a planned exit only when its level was crossed.
    raw = rec["exit_price"] / (1.0 - sign * costs.slippage)
    at_close = np.isclose(raw, panel.close[exit_idx, sym], rtol=1e-9)
    move = sign * (raw / rec["entry_price"] - 1.0)
    tp = np.array([p.take_profit_pct / 100 for p in params_list])[combo]
    sl = np.array([p.stop_loss_pct / 100 for p in params_list])[combo]
    reasons = np.select(
        [
            ~closed,
            at_close & signals.planned[signals.timing[combo], sym, exit_idx],
            at_close & panel.segment_end[exit_idx, sym],
            move >= tp - 1e-9,
            move <= -sl + 1e-9,
        ],
        ["open", "time", "window_end", "take_profit", "stop_loss"],
        "trailing_stop",
    )
    table = pd.DataFrame(
        {
            "combo": combo,
            "symbol": np.asarray(panel.symbols, dtype=object)[sym],
            "side": np.where(short, "short", "long"),
            "entry_time": pd.to_datetime(entry_ns, utc=True),
            "entry_price": rec["entry_price"],
            "exit_time": pd.to_datetime(exit_ns, utc=True),
            "exit_price": rec["exit_price"],
            "exit_reason": reasons,
            "size": rec["size"],
            "entry_fees": rec["entry_fees"],
            "pnl": rec["pnl"],
            "return_pct": rec["return"] * 100,
            "closed": closed,
            "col": cols,
            "entry_idx": entry_idx,
            "exit_idx": exit_idx,
        }
    )
    table = table.sort_values(["combo", "entry_time", "symbol"], kind="stable")
    return table.reset_index(drop=True)
