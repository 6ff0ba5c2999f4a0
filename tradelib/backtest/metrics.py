"""Backtest metrics on calendar time, and the seed's targets as data to compare against."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tradelib.config import TargetSettings

_DAY_NS = 86_400_000_000_000
DAYS_PER_MONTH = 365.25 / 12

_TARGET_ROWS = (  # metric, how it must compare: TargetSettings holds the numbers
    ("monthly_return_pct", ">="),
    ("max_drawdown_pct", "<"),
    ("win_rate_pct", ">"),
    ("sharpe", ">"),
)


def target_table(targets: TargetSettings | None = None) -> pd.DataFrame:
    """The targets (settings `[targets]`, the seed's by default) as rows to compare against."""
    chosen = targets or TargetSettings()
    return pd.DataFrame(
        {
            "metric": [m for m, _ in _TARGET_ROWS],
            "comparison": [op for _, op in _TARGET_ROWS],
            "target": [float(getattr(chosen, m)) for m, _ in _TARGET_ROWS],
            "source": ["seed target" if targets is None else "settings [targets]"] * 4,
        }
    )


# Phase-1 backtest of token-unlock front-running reported +0.51 % (total return).
PHASE1_BASELINE = pd.DataFrame(
    {
        "metric": ["total_return_pct"],
        "comparison": [">"],
        "target": [0.51],
        "source": ["phase-1 backtest"],
    }
)
METRIC_COLUMNS: tuple[str, ...] = (
    "total_return_pct",
    "monthly_return_pct",
    "max_drawdown_pct",
    "sharpe",
    "n_trades",
    "win_rate_pct",
    "avg_trade_return_pct",
)
_OPS = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}


def equity_from_trades(
    trades: pd.DataFrame,
    close: np.ndarray,
    close_times: np.ndarray,
    n_combos: int,
    init_cash: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Calendar-time equity of each parameter set: init cash plus its open and closed trades.

    A sleeve is flat outside its trades, so its value only moves on the candles a trade
    spans: entry_fees off, then size x (close - entry price) (sign by side) while open, and
    the trade's pnl from the exit on. Summing those moves over all sleeves in time order gives
    exactly vectorbt's summed sleeve values, without materialising rows x columns values.
    `close` and `close_times` are (rows, symbols); trades carry col/entry_idx/exit_idx.
    Returns (sorted times with a move, equity array of shape (times, combos)).
    """
    if trades.empty:
        return np.array([], dtype=np.int64), np.empty((0, n_combos))
    n_sym = close.shape[1]
    entry = trades["entry_idx"].to_numpy(np.int64)
    exit_ = trades["exit_idx"].to_numpy(np.int64)
    sym = trades["col"].to_numpy(np.int64) % n_sym
    lengths = exit_ - entry + 1
    k = np.repeat(np.arange(len(trades)), lengths)
    offset = np.arange(len(k)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = entry[k] + offset
    sign = np.where(trades["side"].to_numpy() == "short", -1.0, 1.0)
    path = -trades["entry_fees"].to_numpy()[k] + sign[k] * trades["size"].to_numpy()[k] * (
        close[rows, sym[k]] - trades["entry_price"].to_numpy()[k]
    )
    last = np.cumsum(lengths) - 1
    path[last] = trades["pnl"].to_numpy()
    delta = np.diff(path, prepend=0.0)
    delta[last - lengths + 1] = path[last - lengths + 1]  # first candle of each trade: from 0
    stamps = close_times[rows, sym[k]]
    times = np.unique(stamps)
    moves = np.zeros((len(times), n_combos))
    np.add.at(moves, (np.searchsorted(times, stamps), trades["combo"].to_numpy(np.int64)[k]), delta)
    return times, init_cash + np.cumsum(moves, axis=0)


def daily_equity(
    times: np.ndarray, equity: np.ndarray, start_ns: int, end_ns: int, init: float
) -> np.ndarray:
    """Equity at the end of each UTC day in [start, end] (flat days included)."""
    first = start_ns - start_ns % _DAY_NS + _DAY_NS
    day_ends = np.arange(first, end_ns + _DAY_NS, _DAY_NS, dtype=np.int64)
    pos = np.searchsorted(times, day_ends, side="right") - 1
    padded = np.vstack([np.full((1, equity.shape[1]), init), equity])
    return padded[pos + 1]


def equity_stats(
    times: np.ndarray, equity: np.ndarray, init: float, start_ns: int, end_ns: int
) -> pd.DataFrame:
    """Total and monthly return, max drawdown and daily Sharpe (x sqrt(365)) per column."""
    n = equity.shape[1]
    if len(times) == 0:
        equity = np.full((1, n), init)
        times = np.array([start_ns], dtype=np.int64)
    final = equity[-1]
    total = final / init - 1.0
    span_days = max((end_ns - start_ns) / _DAY_NS, 1.0)
    monthly = np.sign(1 + total) * np.abs(1 + total) ** (DAYS_PER_MONTH / span_days) - 1.0
    curve = np.vstack([np.full((1, n), init), equity])
    peak = np.maximum.accumulate(curve, axis=0)
    drawdown = (1.0 - curve / peak).max(axis=0)
    daily = daily_equity(times, equity, start_ns, end_ns, init)
    rets = np.diff(np.vstack([np.full((1, n), init), daily]), axis=0) / np.vstack(
        [np.full((1, n), init), daily[:-1]]
    )
    # One contiguous row per set: numpy sums a contiguous row pairwise but a column of a wide
    # array one by one, so reducing rows keeps a set's Sharpe independent of how many sets
    # run alongside it (a sweep and one backtest per set agree to the last bit).
    by_set = np.ascontiguousarray(rets.T)
    std = by_set.std(axis=1, ddof=1) if len(rets) > 1 else np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, by_set.mean(axis=1) / std * np.sqrt(365.0), np.nan)
    return pd.DataFrame(
        {
            "total_return_pct": total * 100,
            "monthly_return_pct": monthly * 100,
            "max_drawdown_pct": drawdown * 100,
            "sharpe": sharpe,
        }
    )


def sweep_equity_stats(
    trades: pd.DataFrame,
    close: np.ndarray,
    close_times: np.ndarray,
    n_combos: int,
    init_cash: float,
    start_ns: int,
    end_ns: int,
    block: int = 64,
) -> pd.DataFrame:
    """equity_stats of every parameter set, `block` sets at a time: the same numbers.

    The (times x sets) equity of a big sweep is hundreds of MB, and each statistic is another
    pass over it; a block's equity stays in cache. Each set's numbers only depend on its own
    trades (in the same order) and on the times its equity moves, so blocks change nothing.
    `trades` must be sorted by combo (trade_table's order).
    """
    combo = trades["combo"].to_numpy(np.int64)
    parts = []
    for lo in range(0, n_combos, block):
        hi = min(lo + block, n_combos)
        first, last = np.searchsorted(combo, [lo, hi])
        part = trades.iloc[first:last]
        part = part.assign(combo=combo[first:last] - lo)
        times, equity = equity_from_trades(part, close, close_times, hi - lo, init_cash)
        parts.append(equity_stats(times, equity, init_cash, start_ns, end_ns))
    return pd.concat(parts, ignore_index=True)


def trade_stats(trades: pd.DataFrame, n_combos: int) -> pd.DataFrame:
    """Number of closed trades, win rate (pnl > 0) and mean trade return per parameter set."""
    closed = trades.loc[trades["closed"]]
    combo = closed["combo"].to_numpy(dtype=np.int64)
    count = np.bincount(combo, minlength=n_combos)
    wins = np.bincount(combo, weights=(closed["pnl"].to_numpy() > 0), minlength=n_combos)
    ret = np.bincount(combo, weights=closed["return_pct"].to_numpy(), minlength=n_combos)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame(
            {
                "n_trades": count,
                "win_rate_pct": np.where(count > 0, wins / count * 100, np.nan),
                "avg_trade_return_pct": np.where(count > 0, ret / count, np.nan),
            }
        )


def compare_to_targets(
    metrics: Mapping[str, float] | pd.Series,
    targets: TargetSettings | None = None,
    baselines: pd.DataFrame = PHASE1_BASELINE,
) -> pd.DataFrame:
    """One row per target: metric, value, comparison, target, source and whether it is met.

    A metric that is missing or None (no trades: no win rate, no Sharpe) shows as NaN, not met.
    """
    table = pd.concat([target_table(targets), baselines], ignore_index=True)
    values = [_number(metrics.get(m)) for m in table["metric"]]
    met = [
        bool(_OPS[op](v, t)) if np.isfinite(v) else False
        for v, op, t in zip(values, table["comparison"], table["target"], strict=True)
    ]
    return table.assign(value=values, met=met)[
        ["metric", "value", "comparison", "target", "met", "source"]
    ]


def _number(value: object) -> float:
    try:
        return float(value) if value is not None else np.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Drawdown in percent below the running peak, for plotting."""
    peak = equity.cummax()
    return (equity / peak - 1.0) * 100
