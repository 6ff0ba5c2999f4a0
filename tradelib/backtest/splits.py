"""Out-of-sample evaluation: split events by date, tune on train, report on test.

Events are assigned to a fold by their unlock time. A train event is kept only when its
whole trade window (up to days_after + 1 day after the unlock) ends before the test period
starts, so no train trade sees a test-period candle. Parameters are chosen on train only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradelib.backtest.data import as_utc
from tradelib.backtest.engine import DEFAULT_CASH, Costs
from tradelib.backtest.metrics import METRIC_COLUMNS, equity_stats
from tradelib.backtest.run import MARGIN_DAYS, backtest
from tradelib.backtest.sweep import sweep
from tradelib.errors import DataError
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent
from tradelib.strategy.params import TokenUnlockParams


@dataclass(frozen=True)
class Split:
    """Train events before `test_start` (embargoed), test events in [test_start, test_end)."""

    name: str
    train: tuple[UnlockEvent, ...]
    test: tuple[UnlockEvent, ...]
    train_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def walk_forward_splits(
    calendar: UnlockCalendar | Sequence[UnlockEvent],
    test_starts: Sequence[pd.Timestamp | str],
    end: pd.Timestamp | str | None = None,
    max_days_before: float = 7.0,
    max_days_after: float = 7.0,
) -> list[Split]:
    """Anchored walk-forward: fold k trains on every event before test_starts[k] and tests on
    the events up to the next start (the last fold up to `end` or the last event)."""
    events = sorted(
        calendar.events if isinstance(calendar, UnlockCalendar) else calendar,
        key=lambda e: e.unlock_time,
    )
    if not events:
        raise DataError("no events to split")
    starts = [as_utc(s) for s in test_starts]
    if starts != sorted(starts):
        raise DataError(f"test_starts must be increasing, got {[s.isoformat() for s in starts]}")
    last = pd.Timestamp(events[-1].unlock_time) + pd.Timedelta(days=max_days_after + MARGIN_DAYS)
    ends = [*starts[1:], as_utc(end) if end is not None else last]
    first = pd.Timestamp(events[0].unlock_time) - pd.Timedelta(days=max_days_before + MARGIN_DAYS)
    embargo = pd.Timedelta(days=max_days_after + MARGIN_DAYS)
    splits = []
    for k, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        train = tuple(e for e in events if pd.Timestamp(e.unlock_time) + embargo < lo)
        # A test trade may start up to max_days_before before its unlock: keep it inside.
        lead = pd.Timedelta(days=max_days_before + MARGIN_DAYS)
        test = tuple(e for e in events if lo + lead <= pd.Timestamp(e.unlock_time) < hi - embargo)
        splits.append(Split(f"fold{k + 1}", train, test, first, lo, hi))
    return splits


@dataclass
class FoldResult:
    """Chosen parameters and their train and test metrics for one split."""

    split: Split
    best: TokenUnlockParams
    train: pd.Series
    test: pd.Series
    test_equity: pd.Series
    test_trades: pd.DataFrame


def walk_forward(
    candles: Mapping[str, pd.DataFrame],
    splits: Sequence[Split],
    params_list: Sequence[TokenUnlockParams],
    objective: str = "sharpe",
    min_trades: int = 3,
    costs: Costs | None = None,
    init_cash: float = DEFAULT_CASH,
    client: Any = None,
) -> list[FoldResult]:
    """For each split: sweep on train, pick the best by `objective`, backtest it on test."""
    folds = []
    for split in splits:
        if not split.train or not split.test:
            raise DataError(
                f"{split.name}: {len(split.train)} train / {len(split.test)} test events; "
                "move the test start so both sides have events"
            )
        found = sweep(
            candles,
            list(split.train),
            params_list,
            costs,
            init_cash,
            client=client,
            start=split.train_start,
            end=split.test_start,
        )
        best_id = found.best(objective, min_trades)
        best = found.params[best_id - int(found.metrics.index[0])]
        test = backtest(
            candles, list(split.test), best, costs, init_cash, split.test_start, split.test_end
        )
        train_row = pd.Series(found.metrics.loc[best_id, [*METRIC_COLUMNS, "n_events"]])
        folds.append(FoldResult(split, best, train_row, test.metrics, test.equity, test.trades))
    return folds


def summarize(folds: Sequence[FoldResult], init_cash: float = DEFAULT_CASH) -> pd.DataFrame:
    """One row per fold (train and test metrics side by side) plus the chained test total."""
    rows = []
    for f in folds:
        row: dict[str, Any] = {
            "fold": f.split.name,
            "test_start": f.split.test_start,
            "test_end": f.split.test_end,
            "train_events": len(f.split.train),
            "test_events": len(f.split.test),
        }
        row.update({f"train_{k}": v for k, v in f.train.items()})
        row.update({f"test_{k}": v for k, v in f.test.items()})
        row["params"] = f.best.to_dict()
        rows.append(row)
    table = pd.DataFrame(rows)
    chained = chain_test_equity(folds, init_cash)
    start = folds[0].split.test_start.value
    end = folds[-1].split.test_end.value
    stats = equity_stats(
        pd.DatetimeIndex(chained.index).asi8, chained.to_numpy()[:, None], init_cash, start, end
    ).iloc[0]
    trades = pd.concat([f.test_trades for f in folds], ignore_index=True)
    closed = trades.loc[trades["closed"]]
    total: dict[str, Any] = {
        "fold": "all test folds (chained)",
        "test_start": folds[0].split.test_start,
    }
    total["test_end"] = folds[-1].split.test_end
    total["test_events"] = sum(len(f.split.test) for f in folds)
    total.update({f"test_{k}": v for k, v in stats.items()})
    total["test_n_trades"] = len(closed)
    total["test_win_rate_pct"] = float((closed["pnl"] > 0).mean() * 100) if len(closed) else np.nan
    total["test_avg_trade_return_pct"] = (
        float(closed["return_pct"].mean()) if len(closed) else np.nan
    )
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def chain_test_equity(folds: Sequence[FoldResult], init_cash: float = DEFAULT_CASH) -> pd.Series:
    """The test equity curves end to end: each fold starts with the previous fold's end."""
    pieces, scale = [], 1.0
    for f in folds:
        curve = f.test_equity * scale
        pieces.append(curve)
        scale = float(curve.iloc[-1]) / init_cash
    out = pd.concat(pieces)
    return out[~out.index.duplicated(keep="last")].sort_index().rename("equity")
