"""Backtest metrics on calendar time, and the seed's targets as data to compare against."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

_DAY_NS = 86_400_000_000_000
DAYS_PER_MONTH = 365.25 / 12

# The seed's targets (DESIGN.md). Data, not verdicts: compare_to_targets shows the numbers.
SEED_TARGETS = pd.DataFrame(
    {
        "metric": ["monthly_return_pct", "max_drawdown_pct", "win_rate_pct", "sharpe"],
        "comparison": [">=", "<", ">", ">"],
        "target": [5.0, 10.0, 40.0, 1.0],
        "source": ["seed target"] * 4,
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


def combine_sleeves(
    values: np.ndarray,
    times: list[np.ndarray],
    n_combos: int,
    sleeve_cash: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Calendar-time equity of each parameter set as the sum of its symbol sleeves.

    `values` is (rows, combos * symbols), symbols inner; row k of symbol s is valued at
    `times[s][k]`. A sleeve's value only changes on its own rows, so summing the changes of
    all sleeves in time order gives the exact combined equity at every time any sleeve moved.
    Returns (sorted unique times, equity array of shape (times, combos)).
    """
    n_sym = len(times)
    deltas, stamps = [], []
    for s, t in enumerate(times):
        v = values[: len(t), s::n_sym]
        d = np.diff(v, axis=0, prepend=np.full((1, n_combos), sleeve_cash))
        deltas.append(d)
        stamps.append(t)
    all_t = np.concatenate(stamps)
    order = np.argsort(all_t, kind="stable")
    all_t = all_t[order]
    equity = sleeve_cash * n_sym + np.cumsum(np.concatenate(deltas)[order], axis=0)
    last = np.r_[all_t[1:] != all_t[:-1], True]
    return all_t[last], equity[last]


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
    std = rets.std(axis=0, ddof=1) if len(rets) > 1 else np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, rets.mean(axis=0) / std * np.sqrt(365.0), np.nan)
    return pd.DataFrame(
        {
            "total_return_pct": total * 100,
            "monthly_return_pct": monthly * 100,
            "max_drawdown_pct": drawdown * 100,
            "sharpe": sharpe,
        }
    )


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
    targets: pd.DataFrame = SEED_TARGETS,
    baselines: pd.DataFrame = PHASE1_BASELINE,
) -> pd.DataFrame:
    """One row per target: metric, value, comparison, target, source and whether it is met."""
    table = pd.concat([targets, baselines], ignore_index=True)
    values = [float(metrics.get(m, np.nan)) for m in table["metric"]]
    met = [
        bool(_OPS[op](v, t)) if np.isfinite(v) else False
        for v, op, t in zip(values, table["comparison"], table["target"], strict=True)
    ]
    return table.assign(value=values, met=met)[
        ["metric", "value", "comparison", "target", "met", "source"]
    ]


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Drawdown in percent below the running peak, for plotting."""
    peak = equity.cummax()
    return (equity / peak - 1.0) * 100
