"""Backtests on real candles: signal parity, stops, costs, broadcast sweep, splits, metrics."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from tradelib.backtest import (
    TRADE_COLUMNS,
    Costs,
    backtest,
    backtest_trades,
    compare_to_targets,
    load_candles,
)
from tradelib.backtest.metrics import equity_stats
from tradelib.backtest.splits import walk_forward_splits
from tradelib.backtest.sweep import param_grid, sweep
from tradelib.errors import DataError
from tradelib.strategy import TokenUnlockParams, TokenUnlockStrategy, load_calendar

CALENDAR = load_calendar()
CANDLES = load_candles(sorted(CALENDAR.symbols))
PARAMS = TokenUnlockParams()


@pytest.fixture(scope="module")
def default_run():  # type: ignore[no-untyped-def]
    return backtest(CANDLES, CALENDAR, PARAMS)


def test_trades_follow_the_strategy_signals(default_run) -> None:  # type: ignore[no-untyped-def]
    table = TokenUnlockStrategy(PARAMS, CALENDAR).signals(CANDLES, CALENDAR, PARAMS)
    expected = sorted(
        (symbol, t + pd.Timedelta(hours=1))
        for symbol in CALENDAR.symbols
        for t in table.index[table[(symbol, "enter_short")]]
    )
    trades = default_run.trades
    assert sorted(zip(trades["symbol"], trades["entry_time"], strict=True)) == expected
    assert len(trades) == len(CALENDAR)  # every default event has candles, so one trade each
    assert (trades["side"] == "short").all()


def test_trade_list_for_engine_parity() -> None:
    trades = backtest_trades(CANDLES, CALENDAR, PARAMS)
    assert tuple(trades.columns) == TRADE_COLUMNS
    assert (trades["exit_time"] >= trades["entry_time"]).all()
    assert trades["entry_time"].is_monotonic_increasing
    assert str(trades["entry_time"].dt.tz) == "UTC"
    assert set(trades["exit_reason"]) <= {
        "time",
        "stop_loss",
        "trailing_stop",
        "take_profit",
        "window_end",
    }
    assert "window_end" not in set(trades["exit_reason"])


def test_stop_exits_respect_their_levels(default_run) -> None:  # type: ignore[no-untyped-def]
    # Stops are judged on candle closes (as the engine does each cycle), measured from the
    # entry fill, and fill at the deciding close plus slippage.
    trades = default_run.trades
    slip = Costs().slippage
    for row in trades.itertuples():
        closes = CANDLES[row.symbol]["close"]
        entry = row.entry_price  # the fill, slippage included
        raw_exit = row.exit_price / (1 + slip)  # buying back a short pays the slippage
        assert raw_exit == pytest.approx(closes.loc[row.exit_time - pd.Timedelta(hours=1)])
        move = 1 - raw_exit / entry  # profit of a short, before costs
        if row.exit_reason == "stop_loss":
            assert move <= -PARAMS.stop_loss_pct / 100 + 1e-9
        elif row.exit_reason == "take_profit":
            assert move >= PARAMS.take_profit_pct / 100 - 1e-9
        elif row.exit_reason == "trailing_stop":
            # trailing only starts once a close was 3 % in profit (3 % under the entry)
            seen = closes.loc[row.entry_time : row.exit_time - pd.Timedelta(hours=2)]
            assert seen.min() <= entry * (1 - PARAMS.trailing_activation_pct / 100) + 1e-12
            assert -PARAMS.stop_loss_pct / 100 < move < PARAMS.take_profit_pct / 100


def test_costs_lower_the_result(default_run) -> None:  # type: ignore[no-untyped-def]
    free = backtest(CANDLES, CALENDAR, PARAMS, costs=Costs(fees=0.0, slippage=0.0))
    assert free.metrics["total_return_pct"] > default_run.metrics["total_return_pct"]
    stops_only = default_run.trades["exit_reason"] == "stop_loss"
    # A 2 % stop costs 2 % plus 0.1 % fee on each side plus slippage.
    assert (default_run.trades.loc[stops_only, "return_pct"] < -2.1).all()


def test_equity_and_metrics_agree(default_run) -> None:  # type: ignore[no-untyped-def]
    equity = default_run.equity
    total = (equity.iloc[-1] / equity.iloc[0] - 1) * 100
    assert default_run.metrics["total_return_pct"] == pytest.approx(total)
    assert default_run.metrics["max_drawdown_pct"] == pytest.approx(
        -default_run.drawdown.min(), rel=1e-9
    )
    pnl = default_run.trades["pnl"].sum()
    assert equity.iloc[-1] - equity.iloc[0] == pytest.approx(pnl, rel=1e-9)


def test_broadcast_sweep_matches_single_runs() -> None:
    grid = param_grid(days_before=[1, 3], days_after=[0, 2], stop_loss_pct=[2, 4])
    result = sweep(CANDLES, CALENDAR, grid)
    assert len(result.metrics) == 8
    assert {"days_before", "days_after", "stop_loss_pct", "sharpe"} <= set(result.metrics)
    for k in (0, 5):
        single = backtest(
            CANDLES, CALENDAR, grid[k], start=result.window.start, end=result.window.end
        )
        got = result.metrics.loc[k]
        for name in ("total_return_pct", "max_drawdown_pct", "n_trades", "win_rate_pct", "sharpe"):
            assert got[name] == pytest.approx(single.metrics[name], rel=1e-9, nan_ok=True), name


def test_param_grid_skips_invalid_spot_combinations() -> None:
    grid = param_grid(direction=["spot"], days_after=[0.5, 3], spot_entry_delay_hours=[24])
    assert [p.days_after for p in grid] == [3.0]


def test_walk_forward_splits_embargo_train_events() -> None:
    splits = walk_forward_splits(CALENDAR, ["2024-07-01"], max_days_before=7, max_days_after=3)
    (split,) = splits
    assert split.train and split.test
    for event in split.train:
        assert pd.Timestamp(event.unlock_time) + pd.Timedelta(days=4) < split.test_start
    for event in split.test:
        assert pd.Timestamp(event.unlock_time) - pd.Timedelta(days=8) >= split.test_start
    with pytest.raises(DataError, match="increasing"):
        walk_forward_splits(CALENDAR, ["2025-01-01", "2024-01-01"])


def test_equity_stats_on_a_known_curve() -> None:
    day = 86_400_000_000_000
    times = np.array([day * 1, day * 2, day * 3], dtype=np.int64)
    equity = np.array([[110.0], [88.0], [99.0]])
    stats = equity_stats(times, equity, 100.0, 0, day * 3).iloc[0]
    assert stats["total_return_pct"] == pytest.approx(-1.0)
    assert stats["max_drawdown_pct"] == pytest.approx(20.0)


def test_compare_to_targets_reports_values_not_verdicts_in_data() -> None:
    table = compare_to_targets({"monthly_return_pct": 6, "max_drawdown_pct": 12, "sharpe": 0.5})
    assert list(table.columns) == ["metric", "value", "comparison", "target", "met", "source"]
    met = dict(zip(table["metric"], table["met"], strict=True))
    assert met == {
        "monthly_return_pct": True,
        "max_drawdown_pct": False,
        "win_rate_pct": False,
        "sharpe": False,
        "total_return_pct": False,
    }


def test_compare_to_targets_takes_the_configured_targets() -> None:
    from tradelib.config import TargetSettings

    metrics = {"win_rate_pct": 35.0, "sharpe": 0.8}
    seed = compare_to_targets(metrics).set_index("metric")
    mine = compare_to_targets(
        metrics, TargetSettings(win_rate_pct=Decimal(30), sharpe=Decimal("0.5"))
    ).set_index("metric")
    assert not seed.loc["win_rate_pct", "met"] and mine.loc["win_rate_pct", "met"]
    assert not seed.loc["sharpe", "met"] and mine.loc["sharpe", "met"]
    assert mine.loc["win_rate_pct", "target"] == 30.0
    assert set(mine.loc[mine.index != "total_return_pct", "source"]) == {"settings [targets]"}


def test_cached_kernel_equals_portfolio_from_signals() -> None:
    """Our disk-cached wrapper must give exactly what vbt.Portfolio.from_signals gives."""
    import vectorbt as vbt

    from tradelib.backtest import stops
    from tradelib.backtest.data import build_panel
    from tradelib.backtest.engine import SignalSource, simulate

    events = list(CALENDAR.events)
    grid = param_grid(days_before=[1, 3], stop_loss_pct=[2, 4], trailing_activation_pct=[0, 3])
    panel = build_panel(CANDLES, events, 3, 1)
    signals = SignalSource(CANDLES, events, panel).signals(grid)
    ours = simulate(panel, signals, grid)

    n_sym = len(panel.symbols)

    def tile(a: np.ndarray) -> np.ndarray:
        return np.tile(a, (1, len(grid)))

    def per_col(name: str) -> np.ndarray:
        return np.repeat([getattr(p, name) / 100 for p in grid], n_sym)

    # Stops are judged on closes (the engine's cadence): no intrabar open/high/low.
    reference = vbt.Portfolio.from_signals(
        close=tile(panel.close),
        entries=signals.long_entries,
        exits=signals.long_exits,
        short_entries=signals.short_entries,
        short_exits=signals.short_exits,
        size=np.inf,
        fees=Costs().fees,
        slippage=Costs().slippage,
        sl_stop=per_col("stop_loss_pct")[None, :],
        sl_trail=True,
        tp_stop=per_col("take_profit_pct")[None, :],
        stop_entry_price="fillprice",
        stop_exit_price="close",
        adjust_sl_func_nb=stops.trailing_after_activation_nb,
        adjust_sl_args=(
            per_col("stop_loss_pct"),
            per_col("trailing_activation_pct"),
            per_col("trailing_distance_pct"),
        ),
        init_cash=10_000.0 / n_sym,
        cash_sharing=False,
        freq="1h",
    )
    a, b = ours.orders.records, reference.orders.records
    assert len(a) == len(b) > 0
    for name in ("col", "idx", "size", "price", "fees", "side"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, err_msg=name)


def test_equity_from_trades_equals_vectorbt_sleeve_values() -> None:
    from tradelib.backtest.run import run_sweep

    grid = param_grid(days_before=[1, 3], days_after=[0, 2], direction=["short", "spot"])
    result = run_sweep(CANDLES, CALENDAR, grid, keep_equity=True)
    panel, pf = result.extras["panel"], result.extras["portfolio"]
    values = pf.value().to_numpy()
    n_sym = len(panel.symbols)
    times = panel.close_times()
    assert result.equity is not None
    for combo in range(len(grid)):
        # vectorbt's own value of each sleeve at its candle closes, summed at the last candle
        # of every symbol at or before each reconstructed time
        at = pd.DatetimeIndex(result.equity.index).asi8
        total = np.zeros(len(at))
        for j in range(n_sym):
            t = times[: len(panel.times[j]), j]
            pos = np.searchsorted(t, at, side="right") - 1
            sleeve = values[: len(t), combo * n_sym + j]
            total += np.where(pos >= 0, sleeve[np.maximum(pos, 0)], 10_000.0 / n_sym)
        np.testing.assert_allclose(result.equity[combo].to_numpy(), total, rtol=1e-10)
