"""Backtests of TokenUnlockStrategy with vectorbt: runs, broadcast sweeps, splits, metrics.

Importing this package points numba's disk cache at ~/.cache/tradelib/numba (unless
NUMBA_CACHE_DIR is set) before vectorbt loads, so later processes skip the compilation.
The names below load their module on first use: vectorbt (with numba) takes seconds to
import, and callers such as `tradelib demo` only need the metrics table from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tradelib.backtest.numba_cache import configure_numba_cache

configure_numba_cache()

if TYPE_CHECKING:
    from tradelib.backtest.data import available_symbols, load_candles
    from tradelib.backtest.engine import BINANCE_TAKER_FEE, DEFAULT_SLIPPAGE, Costs
    from tradelib.backtest.metrics import PHASE1_BASELINE, compare_to_targets
    from tradelib.backtest.run import (
        TRADE_COLUMNS,
        BacktestResult,
        SweepResult,
        backtest,
        backtest_trades,
        run_sweep,
    )

_HOME = {
    "available_symbols": "data",
    "load_candles": "data",
    "BINANCE_TAKER_FEE": "engine",
    "DEFAULT_SLIPPAGE": "engine",
    "Costs": "engine",
    "PHASE1_BASELINE": "metrics",
    "compare_to_targets": "metrics",
    "TRADE_COLUMNS": "run",
    "BacktestResult": "run",
    "SweepResult": "run",
    "backtest": "run",
    "backtest_trades": "run",
    "run_sweep": "run",
}


def __getattr__(name: str) -> Any:
    """Load the submodule that holds `name` on first use (PEP 562)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


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
