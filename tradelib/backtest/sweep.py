"""Parameter sweeps: a grid of TokenUnlockParams, run by broadcasting, optionally on Dask.

Locally the whole grid is one broadcast sweep. With a dask.distributed Client the grid is cut
into chunks, each chunk is still one broadcast call on a worker, and the results are
concatenated; every chunk uses the window of the whole grid, so the numbers are identical.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import pandas as pd

from tradelib.backtest.engine import DEFAULT_CASH, Costs
from tradelib.backtest.run import SweepResult, Window, run_sweep, window_for
from tradelib.errors import ConfigError
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent
from tradelib.strategy.params import TokenUnlockParams


def param_grid(
    base: TokenUnlockParams | None = None, skip_invalid: bool = True, **values: Sequence[Any]
) -> list[TokenUnlockParams]:
    """Cartesian product of `values` (field name -> list) over `base`.

    Combinations the parameters reject (e.g. a spot exit before the spot entry) are left out
    when skip_invalid is true, otherwise the first one raises ConfigError.
    """
    base = base or TokenUnlockParams()
    known = {f.name for f in fields(TokenUnlockParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} in the grid; known: {sorted(known)}")
    names = list(values)
    out: list[TokenUnlockParams] = []
    for combo in itertools.product(*(values[n] for n in names)):
        try:
            out.append(
                TokenUnlockParams.from_dict(
                    {**base.to_dict(), **dict(zip(names, combo, strict=True))}
                )
            )
        except ConfigError:
            if not skip_invalid:
                raise
    if not out:
        raise ConfigError("the parameter grid is empty (every combination was invalid)")
    return out


def _run_chunk(
    candles: Mapping[str, pd.DataFrame],
    events: list[UnlockEvent],
    params_list: list[TokenUnlockParams],
    costs: Costs | None,
    init_cash: float,
    window: Window,
    offset: int,
    keep_equity: bool,
) -> SweepResult:
    from tradelib.backtest.numba_cache import configure_numba_cache

    configure_numba_cache()
    result = run_sweep(
        candles, events, params_list, costs, init_cash, window, keep_equity, combo_offset=offset
    )
    result.extras.clear()  # the panel stays on the worker
    return result


def sweep(
    candles: Mapping[str, pd.DataFrame],
    calendar: UnlockCalendar | Sequence[UnlockEvent],
    params_list: Sequence[TokenUnlockParams],
    costs: Costs | None = None,
    init_cash: float = DEFAULT_CASH,
    client: Any = None,
    chunk_size: int | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    keep_equity: bool = False,
) -> SweepResult:
    """Backtest every parameter set; locally in one call, on `client`'s workers in chunks."""
    events = list(calendar.events if isinstance(calendar, UnlockCalendar) else calendar)
    params_list = list(params_list)
    window = window_for(events, params_list, start, end)
    if client is None:
        return run_sweep(candles, events, params_list, costs, init_cash, window, keep_equity)
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    size = chunk_size or max(1, -(-len(params_list) // workers))
    symbols = {e.symbol for e in events}
    shared = client.scatter({s: c for s, c in candles.items() if s in symbols}, broadcast=True)
    futures = [
        client.submit(
            _run_chunk,
            shared,
            events,
            params_list[i : i + size],
            costs,
            init_cash,
            window,
            i,
            keep_equity,
            pure=False,
        )
        for i in range(0, len(params_list), size)
    ]
    parts: list[SweepResult] = client.gather(futures)
    return concat_results(parts, params_list, window)


def concat_results(
    parts: Sequence[SweepResult], params_list: Sequence[TokenUnlockParams], window: Window
) -> SweepResult:
    """Join chunk results (already numbered by their offsets) into one SweepResult."""
    metrics = pd.concat([p.metrics for p in parts]).sort_index()
    trades = pd.concat([p.trades for p in parts], ignore_index=True)
    trades = trades.sort_values(["combo", "entry_time", "symbol"], kind="stable")
    equity = None
    if all(p.equity is not None for p in parts):
        equity = pd.concat([p.equity for p in parts], axis=1).sort_index().ffill()
    return SweepResult(list(params_list), metrics, trades.reset_index(drop=True), window, equity)
