"""Numba's on-disk cache for the backtest: set it up before vectorbt is imported.

vectorbt compiles its simulator on first use (~15-45 s on a busy 2-core box). Most of its
kernels are jitted without `cache=True`, so by default every new process (each papermill run)
pays that again. We point NUMBA_CACHE_DIR at a per-user folder and switch caching on for
vectorbt's kernels; the simulator itself is wrapped in our own cached kernel (engine.py)
because numba cannot reuse a cached function that receives other jitted functions as arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "tradelib" / "numba"


def configure_numba_cache(path: Path | str | None = None) -> Path:
    """Set NUMBA_CACHE_DIR (unless already set) and create it; return the folder in use."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        os.environ["NUMBA_CACHE_DIR"] = str(path or DEFAULT_CACHE_DIR)
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    if "numba" in sys.modules:
        # numba reads the variable once at import; keep its config in step for later kernels.
        from numba.core import config

        config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    return folder


def enable_vectorbt_caching() -> int:
    """Turn on numba's disk cache for every loaded vectorbt kernel; return how many."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    count = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("vectorbt") or module is None:
            continue
        for obj in list(vars(module).values()):
            cache = getattr(obj, "_cache", None)
            if isinstance(obj, Dispatcher) and isinstance(cache, NullCache):
                obj.enable_caching()
                count += 1
    return count
