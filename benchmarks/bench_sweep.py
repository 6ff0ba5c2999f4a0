"""Benchmark: broadcast sweep vs one sweep call per combination; cold vs warm numba.

Run: python benchmarks/bench_sweep.py [--sample 50] [--skip-cold]
Prints absolute times and ratios measured in this run (a busy shared box shifts the absolute
numbers; the ratios are the point).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from tradelib.backtest import load_candles
from tradelib.backtest.run import run_sweep, window_for
from tradelib.backtest.sweep import param_grid
from tradelib.strategy import load_calendar

SINGLE = """
import json, sys, time
t0 = time.perf_counter()
from tradelib.backtest import backtest, load_candles
from tradelib.strategy import TokenUnlockParams, load_calendar
cal = load_calendar(); candles = load_candles(sorted(cal.symbols))
t1 = time.perf_counter()
backtest(candles, cal, TokenUnlockParams())
t2 = time.perf_counter()
backtest(candles, cal, TokenUnlockParams(days_before=2))
t3 = time.perf_counter()
times = {"import_load_s": t1 - t0, "first_backtest_s": t2 - t1, "second_backtest_s": t3 - t2}
print(json.dumps(times))
"""


def _subprocess(cache_dir: str) -> dict[str, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", SINGLE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=50, help="combos timed one call each")
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args()

    calendar = load_calendar()
    candles = load_candles(sorted(calendar.symbols))
    grid = param_grid(
        days_before=[1, 2, 3, 5, 7],
        days_after=[0, 1, 2, 3],
        stop_loss_pct=[1.5, 2, 3, 5],
        take_profit_pct=[3, 5, 10, 20],
        trailing_distance_pct=[1, 2, 3, 5],
    )
    events = list(calendar.events)
    window = window_for(events, grid)
    print(f"grid: {len(grid)} combinations x {len(calendar.symbols)} symbols, {len(events)} events")

    t = time.perf_counter()
    run_sweep(candles, events, grid[:2], window=window)  # compile / load the numba cache
    print(f"warm-up (compile or cache load) in this process: {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    result = run_sweep(candles, events, grid, window=window)
    broadcast = time.perf_counter() - t
    print(
        f"broadcast: {len(grid)} combos in one sweep call: {broadcast:.2f} s "
        f"({broadcast / len(grid) * 1000:.2f} ms per combo)"
    )

    sample = random.Random(7).sample(grid, min(args.sample, len(grid)))
    t = time.perf_counter()
    for params in sample:
        run_sweep(candles, events, [params], window=window)
    per_call = (time.perf_counter() - t) / len(sample)
    loop = per_call * len(grid)
    print(
        f"one call per combo: timed a random sample of {len(sample)} combos "
        f"({per_call * 1000:.0f} ms each) and EXTRAPOLATED to {len(grid)}: {loop:.1f} s"
    )
    print(f"ratio loop / broadcast: {loop / broadcast:.1f}x")
    best = result.metrics.loc[result.best()]
    print(f"(best in-sample-of-everything by Sharpe, not an OOS result: {best['sharpe']:.2f})")

    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as empty:
            cold = _subprocess(empty)
        warm = _subprocess(os.environ.get("NUMBA_CACHE_DIR", ""))
        print(
            f"one backtest in a fresh process, EMPTY numba cache: {cold['first_backtest_s']:.1f} s "
            f"(imports+data {cold['import_load_s']:.1f} s)"
        )
        print(
            f"one backtest in a fresh process, WARM numba cache: {warm['first_backtest_s']:.1f} s "
            f"(imports+data {warm['import_load_s']:.1f} s)"
        )
        print(f"second backtest in the same process: {warm['second_backtest_s']:.2f} s")
        cold_warm = cold["first_backtest_s"] / warm["first_backtest_s"]
        first_second = warm["first_backtest_s"] / warm["second_backtest_s"]
        print(f"ratio cold / warm-cache first backtest: {cold_warm:.1f}x")
        print(f"ratio warm-cache first / in-process second: {first_second:.1f}x")


if __name__ == "__main__":
    main()
