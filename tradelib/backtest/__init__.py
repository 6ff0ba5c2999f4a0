"""Backtests of TokenUnlockStrategy with vectorbt: runs, broadcast sweeps, splits, metrics.

Importing this package points numba's disk cache at ~/.cache/tradelib/numba (unless
NUMBA_CACHE_DIR is set) before vectorbt loads, so later processes skip the compilation.
"""

from tradelib.backtest.numba_cache import configure_numba_cache

configure_numba_cache()

from tradelib.backtest.data import available_symbols, load_candles  # noqa: E402
from tradelib.backtest.engine import BINANCE_TAKER_FEE, DEFAULT_SLIPPAGE, Costs  # noqa: E402
from tradelib.backtest.metrics import (  # noqa: E402
    PHASE1_BASELINE,
    compare_to_targets,
)
from tradelib.backtest.run import (  # noqa: E402
    TRADE_COLUMNS,
    BacktestResult,
    SweepResult,
    backtest,
    backtest_trades,
    run_sweep,
)

__all__ = [
    "BINANCE_TAKER_FEE",
    "DEFAULT_SLIPPAGE",
    "PHASE1_BASELINE",
    "TRADE_COLUMNS",
    "BacktestResult",
    "Costs",
    "SweepResult",
    "available_symbols",
    "backtest",
    "backtest_trades",
    "compare_to_targets",
    "configure_numba_cache",
    "load_candles",
    "run_sweep",
]
