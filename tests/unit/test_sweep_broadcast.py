"""The broadcast sweep gives exactly what one backtest call per parameter set gives."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from tradelib.backtest import load_candles
from tradelib.backtest.data import build_panel
from tradelib.backtest.engine import SignalSource, simulate
from tradelib.backtest.run import run_sweep, window_for
from tradelib.backtest.sweep import param_grid
from tradelib.strategy import load_calendar

CALENDAR = load_calendar()
CANDLES = load_candles(sorted(CALENDAR.symbols))
EVENTS = list(CALENDAR.events)
# Both directions, several timings sharing stops and stops sharing timings, the volume filter.
GRID = param_grid(
    days_before=[1, 3],
    days_after=[0, 2],
    direction=["short", "spot"],
    stop_loss_pct=[2, 4],
    trailing_activation_pct=[0, 3],
    min_quote_volume_24h=[0, 5e6],
)


def test_broadcast_sweep_equals_one_call_per_combo_exactly() -> None:
    window = window_for(EVENTS, GRID)
    full = run_sweep(CANDLES, EVENTS, GRID, window=window, keep_equity=True)
    assert full.equity is not None
    assert full.metrics["n_trades"].sum() > 0
    for combo in random.Random(14).sample(range(len(GRID)), 10):
        one = run_sweep(CANDLES, EVENTS, [GRID[combo]], window=window, keep_equity=True)
        assert one.equity is not None
        pd.testing.assert_series_equal(
            one.metrics.iloc[0], full.metrics.loc[combo], check_exact=True, check_names=False
        )
        mine = full.trades.loc[full.trades["combo"] == combo].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            one.trades.drop(columns=["combo", "col"]),
            mine.drop(columns=["combo", "col"]),
            check_exact=True,
        )
        # equity at the times this set's equity moves (the sweep also has every other set's)
        theirs = full.equity[combo].loc[one.equity.index]
        np.testing.assert_array_equal(theirs.to_numpy(), one.equity.iloc[:, 0].to_numpy())


def test_order_records_equal_one_simulation_per_combo() -> None:
    """Kernel runs per (timing, symbol) on live rows equal a separate run per parameter set."""
    panel = build_panel(CANDLES, EVENTS, 3, 2)
    source = SignalSource(CANDLES, EVENTS, panel)
    together = simulate(panel, source.signals(GRID), GRID).orders.records
    n_sym = len(panel.symbols)
    assert len(together) > 0
    for combo in random.Random(7).sample(range(len(GRID)), 8):
        alone = simulate(panel, source.signals([GRID[combo]]), [GRID[combo]]).orders.records
        mine = together[together["col"] // n_sym == combo]
        assert len(mine) == len(alone)
        for name in ("idx", "size", "price", "fees", "side"):
            np.testing.assert_array_equal(mine[name], alone[name], err_msg=name)
        np.testing.assert_array_equal(mine["col"] % n_sym, alone["col"])
