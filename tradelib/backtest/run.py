"""Run TokenUnlockStrategy backtests: many parameter sets in one broadcast sweep, or one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import pandas as pd

from tradelib.backtest.data import as_utc, build_panel
from tradelib.backtest.engine import (
    DEFAULT_CASH,
    Costs,
    SignalSource,
    portfolio,
    simulate_orders,
    trade_records,
    trade_table,
)
from tradelib.backtest.metrics import (
    METRIC_COLUMNS,
    drawdown_series,
    equity_from_trades,
    sweep_equity_stats,
    trade_stats,
)
from tradelib.errors import DataError
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent
from tradelib.strategy.params import TokenUnlockParams

_DAY_NS = 86_400_000_000_000
MARGIN_DAYS = 1.0


@dataclass(frozen=True)
class Window:
    """Days kept around each event (the panel) and the calendar period metrics are over."""

    days_before: float
    days_after: float
    start: pd.Timestamp
    end: pd.Timestamp


def window_for(
    events: Sequence[UnlockEvent],
    params_list: Sequence[TokenUnlockParams],
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> Window:
    """The widest window any parameter set needs, and the metric period (default: events')."""
    if not events:
        raise DataError("no unlock events to backtest: check the calendar, symbols and period")
    before = max(p.days_before if p.direction == "short" else 0.0 for p in params_list)
    after = max(p.days_after for p in params_list)
    first = min(pd.Timestamp(e.unlock_time) for e in events)
    last = max(pd.Timestamp(e.unlock_time) for e in events)
    lo = first - pd.Timedelta(days=before + MARGIN_DAYS)
    hi = last + pd.Timedelta(days=after + MARGIN_DAYS)
    return Window(
        before,
        after,
        as_utc(start) if start is not None else lo,
        as_utc(end) if end is not None else hi,
    )


@dataclass
class SweepResult:
    """Metrics per parameter set (one row each, params as columns), trades, optional equity."""

    params: list[TokenUnlockParams]
    metrics: pd.DataFrame
    trades: pd.DataFrame
    window: Window
    equity: pd.DataFrame | None = None
    extras: dict = field(default_factory=dict)

    def best(self, objective: str = "sharpe", min_trades: int = 1) -> int:
        """Combo id with the highest `objective` among those with >= min_trades trades."""
        ok = self.metrics.loc[self.metrics["n_trades"] >= min_trades]
        if ok.empty:
            raise DataError(f"no parameter set made at least {min_trades} trades")
        ranked = ok.sort_values(
            [objective, "total_return_pct"], ascending=False, na_position="last", kind="stable"
        )
        return int(ranked.index[0])


def params_frame(params_list: Sequence[TokenUnlockParams]) -> pd.DataFrame:
    """One row per parameter set, one column per parameter."""
    names = [f.name for f in fields(TokenUnlockParams)]
    return pd.DataFrame({name: [getattr(p, name) for p in params_list] for name in names})


def run_sweep(
    candles: Mapping[str, pd.DataFrame],
    calendar: UnlockCalendar | Sequence[UnlockEvent],
    params_list: Sequence[TokenUnlockParams],
    costs: Costs | None = None,
    init_cash: float = DEFAULT_CASH,
    window: Window | None = None,
    keep_equity: bool = False,
    combo_offset: int = 0,
) -> SweepResult:
    """Backtest every parameter set in one sweep (columns = parameter set x symbol).

    vectorbt runs once per (timing, symbol) over all parameter sets of that timing
    (simulate_orders); a set's results equal those of a sweep of that set alone, bit for bit.
    """
    if not params_list:
        raise DataError("empty parameter grid")
    events = list(calendar.events if isinstance(calendar, UnlockCalendar) else calendar)
    symbols = {e.symbol for e in events}
    candles = {s: c for s, c in candles.items() if s in symbols}
    window = window or window_for(events, params_list)
    events = [e for e in events if window.start <= pd.Timestamp(e.unlock_time) < window.end]
    panel = build_panel(
        candles, events, window.days_before, window.days_after, margin_days=MARGIN_DAYS
    )
    source = SignalSource(candles, events, panel)
    signals = source.signals(params_list)
    n = len(params_list)
    orders = simulate_orders(panel, signals, params_list, costs, init_cash)
    trades = trade_table(trade_records(orders, panel, n), panel, signals, params_list, costs)
    close_times = panel.close_times()
    start_ns, end_ns = window.start.value, window.end.value
    stats = sweep_equity_stats(trades, panel.close, close_times, n, init_cash, start_ns, end_ns)
    metrics = pd.concat([params_frame(params_list), stats, trade_stats(trades, n)], axis=1)
    metrics["n_events"] = [sum(map(len, per_symbol)) for per_symbol in signals.trades]
    metrics.index = pd.RangeIndex(combo_offset, combo_offset + n, name="combo")
    eq = None
    if keep_equity:
        times, equity = equity_from_trades(trades, panel.close, close_times, n, init_cash)
        eq = pd.DataFrame(
            equity, index=pd.to_datetime(times, utc=True), columns=metrics.index
        ).rename_axis("time")
    trades["combo"] += combo_offset
    trades["col"] += combo_offset * len(panel.symbols)  # column numbers of the whole grid
    extras = _Extras(init_cash, panel=panel, orders=orders, signals=signals)
    return SweepResult(list(params_list), metrics, trades, window, eq, extras)


class _Extras(dict):
    """Run internals (panel, orders, signals); "portfolio", the vectorbt Portfolio, is built
    on first access: it copies the closes to rows x columns, which costs more than the sweep."""

    def __init__(self, init_cash: float, **items: object) -> None:
        super().__init__(**items)
        self.init_cash = init_cash

    def __missing__(self, key: str) -> object:
        if key != "portfolio":
            raise KeyError(key)
        signals = self["signals"]
        pf = portfolio(self["panel"], self["orders"], len(signals.timing), self.init_cash)
        self["portfolio"] = pf
        return pf


@dataclass
class BacktestResult:
    """One parameter set: metrics, calendar-time equity and drawdown, trade list."""

    params: TokenUnlockParams
    metrics: pd.Series
    equity: pd.Series
    drawdown: pd.Series
    trades: pd.DataFrame


def backtest(
    candles: Mapping[str, pd.DataFrame],
    calendar: UnlockCalendar | Sequence[UnlockEvent],
    params: TokenUnlockParams,
    costs: Costs | None = None,
    init_cash: float = DEFAULT_CASH,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> BacktestResult:
    """Backtest one parameter set (the same code path as a sweep of one)."""
    events = list(calendar.events if isinstance(calendar, UnlockCalendar) else calendar)
    window = window_for(events, [params], start, end)
    result = run_sweep(candles, events, [params], costs, init_cash, window, keep_equity=True)
    assert result.equity is not None
    equity = result.equity.iloc[:, 0].rename("equity")
    start_row = pd.Series([init_cash], index=[window.start])
    equity = pd.concat([start_row, equity]).rename("equity")
    metrics = result.metrics.iloc[0][[*METRIC_COLUMNS, "n_events"]]
    return BacktestResult(params, metrics, equity, drawdown_series(equity), result.trades)


TRADE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "side",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "exit_reason",
)


def backtest_trades(
    candles: Mapping[str, pd.DataFrame],
    calendar: UnlockCalendar | Sequence[UnlockEvent],
    params: TokenUnlockParams,
    costs: Costs | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Trades for the engine parity test: symbol, side, entry/exit time (candle close, UTC),
    entry/exit price (fills incl. slippage), exit_reason (time, stop_loss, trailing_stop,
    take_profit, window_end), sorted by entry time."""
    trades = backtest(candles, calendar, params, costs, start=start, end=end).trades
    out = trades.loc[:, list(TRADE_COLUMNS)]
    return out.sort_values(["entry_time", "symbol"], kind="stable").reset_index(drop=True)
