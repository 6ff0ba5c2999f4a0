"""A sweep split across a dask LocalCluster gives the same numbers as the local sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from tradelib.backtest import load_candles
from tradelib.backtest.sweep import param_grid, sweep
from tradelib.strategy import load_calendar

distributed = pytest.importorskip("dask.distributed")


@pytest.mark.slow
def test_dask_sweep_equals_local_sweep() -> None:
    calendar = load_calendar()
    candles = load_candles(sorted(calendar.symbols))
    grid = param_grid(
        days_before=[1, 3], days_after=[0, 1, 2], stop_loss_pct=[2, 4], take_profit_pct=[5, 10]
    )
    local = sweep(candles, calendar, grid)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = sweep(candles, calendar, grid, client=client, chunk_size=7)
    assert len(remote.metrics) == len(grid) == 24
    pd.testing.assert_frame_equal(local.metrics, remote.metrics)
    pd.testing.assert_frame_equal(local.trades, remote.trades)
    assert local.best() == remote.best()
