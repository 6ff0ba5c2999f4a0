"""Parity: the paper engine replayed over real candles makes the vectorbt backtest's trades.

Same parameters, same calendar, same candles. The backtest fills at the deciding close plus a
slippage fraction; the paper exchange fills the next instant against its book. So entry and
exit candles must be identical, and prices may differ only within the fee-and-slippage model;
an exit whose trigger level sits between the two entry prices' levels may close one candle
apart, and nothing else may differ.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tradelib.backtest import backtest_trades, load_candles
from tradelib.config import load_settings
from tradelib.engine.demo import run_demo
from tradelib.store import open_store
from tradelib.strategy.params import TokenUnlockParams

PRICE_BAND = 0.0025  # taker fee 0.1 % + slippage 0.05 % + the book's half-spread, rounded up
PARAMS = TokenUnlockParams(direction="spot", days_after=4.0)


@pytest.mark.slow
async def test_paper_engine_trades_equal_the_backtest(tmp_path: Path) -> None:
    # Breakers that would stop entries after losses are a live-only safety net the backtest
    # does not model; they are set out of reach so the comparison is about signals and fills.
    settings = load_settings(
        store_url=f"duckdb:///{tmp_path / 'parity.duckdb'}",
        risk={
            "max_consecutive_losses": 100,
            "daily_loss_limit_pct": 100,
            "drawdown_pause_pct": 100,
        },
    )
    store = open_store(settings.store_url)
    try:
        result = await run_demo(settings, store, params=PARAMS)
    finally:
        store.close()
    engine = result.trades.copy()
    for column in ("entry_time", "exit_time"):
        engine[column] = pd.to_datetime(engine[column], utc=True).astype("datetime64[ns, UTC]")
    candles = load_candles(sorted({e.symbol for e in result.event_list}))
    bt = backtest_trades(candles, result.event_list, PARAMS)
    bt["symbol"] = bt["symbol"] + "/USDT"
    for column in ("entry_time", "exit_time"):
        bt[column] = pd.to_datetime(bt[column], utc=True).astype("datetime64[ns, UTC]")

    assert len(engine) == len(bt) == result.events, "one trade per event on both sides"
    both = engine.merge(bt, on=["symbol", "entry_time"], suffixes=("", "_bt"), how="outer",
                        indicator=True)  # fmt: skip
    unmatched = both[both["_merge"] != "both"]
    assert unmatched.empty, f"entries differ:\n{unmatched.to_string()}"

    price_gap = (both["entry_price"] / both["entry_price_bt"] - 1).abs()
    assert (price_gap <= PRICE_BAND).all(), both.loc[price_gap > PRICE_BAND].to_string()

    differ = both[both["exit_time"] != both["exit_time_bt"]]
    for row in differ.itertuples():
        assert row.exit_reason in {"take_profit", "stop_loss", "trailing_stop"}, row
        gap = abs(row.exit_time - row.exit_time_bt)
        assert gap == pd.Timedelta(hours=1), f"{row.symbol} exits {gap} apart"
        # the deciding close lies between the two entries' levels: a fill-price effect only
        close = candles[row.symbol.split("/")[0]]["close"]
        early = min(row.exit_time, row.exit_time_bt) - pd.Timedelta(hours=1)
        pct = {"take_profit": PARAMS.take_profit_pct, "stop_loss": -PARAMS.stop_loss_pct}.get(
            row.exit_reason
        )
        if pct is not None:
            levels = sorted(p * (1 + pct / 100) for p in (row.entry_price, row.entry_price_bt))
            assert levels[0] <= close.loc[early] <= levels[1], row
    assert len(differ) <= max(1, len(both) // 20), differ.to_string()
    assert Decimal(str(result.summary["trades"])) == len(both)
