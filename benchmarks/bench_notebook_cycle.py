"""Benchmark: one trading cycle as a papermill notebook (cold, warm) vs a plain Python call.

Run: python benchmarks/bench_notebook_cycle.py [--repeat 3]

Against the local emulator (started here in its own process, its replay clock on a test
unlock so every cycle buys once), on a fresh DuckDB store per measurement so every cycle does
the same work: reconcile, 720 candles, one entry, persist. Measured in one run:

* notebook cold: the first papermill run with an empty numba cache (NUMBA_CACHE_DIR);
* notebook warm: further papermill runs (new process and kernel each, same numba cache);
* python process: the same cycle as `python -c "...run_cycle(...)"` (new process, no kernel);
* in-process call: `await run_cycle(...)` in this already-warm process.

Absolute times drift on a busy shared box; the ratios are the point. It also reports whether
the cycle loaded numba at all (the trading cycle compiles nothing: vectorbt is research code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "production" / "trading_cycle.ipynb"
CALENDAR = (
    "token,symbol,unlock_time_utc,amount_tokens,pct_circulating,pct_basis,category,"
    "usd_value_approx,source_url,confidence,notes\n"
    "Arbitrum,ARB,2024-08-01T01:00:00Z,92650000,2.87,circulating,mixed,70000000,"
    "https://example.test/arb,high,benchmark event\n"
)
PARAMS = {
    "strategy": "token_unlock",
    "interface_version": 1,
    "params": {"direction": "spot", "spot_entry_delay_hours": 0, "days_after": 0.125},
}
PLAIN = """
import asyncio, json, sys, time
t0 = time.perf_counter()
from tradelib.config import load_settings
from tradelib.service import StrategyConfig
from tradelib.service.cycle import run_cycle
settings = load_settings(store_url=sys.argv[1], exchange={"base_url": sys.argv[2]})
config = StrategyConfig.from_mapping(json.loads(sys.argv[3]))
report = asyncio.run(run_cycle(settings, config))
print(json.dumps({"s": time.perf_counter() - t0, "orders": len(report.orders),
                  "numba": "numba" in sys.modules}))
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    cli = [sys.executable, "-c", "from tradelib.cli import app; app()"]
    proc = subprocess.Popen(
        [*cli, "emulator", "--port", str(port), "--start", "2024-08-01T00:00:00+00:00",
         "--api-key", "bench", "--api-secret", "bench-secret"],
        stdout=(folder / "emulator.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"{url}/_emulator/state", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    request = urllib.request.Request(f"{url}/_emulator/advance", data=b'{"steps": 1}',
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=30).read()  # the unlock candle has closed
    return proc, url


def _notebook(folder: Path, name: str, url: str, strategy: dict[str, str], cache: Path) -> float:
    out = folder / f"{name}.ipynb"
    store = f"duckdb:///{folder / name}.duckdb"
    params = json.dumps({"store_url": store, "base_url": url, "strategy": strategy})
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "-y", params,
         "--no-progress-bar", "--cwd", str(folder)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    took = time.perf_counter() - started
    shown = out.read_text()
    if "1 orders" not in shown:
        raise SystemExit(f"{name}: the cycle did not trade as expected; see {out}")
    return took


def _plain(folder: Path, name: str, url: str, strategy: dict[str, str], cache: Path) -> dict:  # type: ignore[type-arg]
    store = f"duckdb:///{folder / name}.duckdb"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PLAIN, store, url, json.dumps(strategy)],
                          env=env, check=True, capture_output=True, text=True)  # fmt: skip
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    result["wall_s"] = time.perf_counter() - started
    return result


async def _in_process(folder: Path, name: str, url: str, strategy: dict[str, str]) -> float:
    from tradelib.config import load_settings
    from tradelib.service import StrategyConfig
    from tradelib.service.cycle import run_cycle

    settings = load_settings(store_url=f"duckdb:///{folder / name}.duckdb",
                             exchange={"base_url": url})  # fmt: skip
    started = time.perf_counter()
    await run_cycle(settings, StrategyConfig.from_mapping(strategy))
    return time.perf_counter() - started


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="warm runs of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        folder = Path(tmp)
        (folder / "calendar.csv").write_text(CALENDAR)
        (folder / "params.json").write_text(json.dumps(PARAMS))
        strategy = {"params_file": str(folder / "params.json"),
                    "calendar_file": str(folder / "calendar.csv")}  # fmt: skip
        cache = folder / "numba-cache"
        emulator, url = _emulator(folder)
        try:
            cold = _notebook(folder, "cold", url, strategy, cache)
            cached = sum(1 for _ in cache.rglob("*")) if cache.exists() else 0
            warm = [_notebook(folder, f"warm{i}", url, strategy, cache)
                    for i in range(args.repeat)]  # fmt: skip
            plain = [_plain(folder, f"plain{i}", url, strategy, cache) for i in range(args.repeat)]
            asyncio.run(_in_process(folder, "inproc-warmup", url, strategy))
            inproc = [asyncio.run(_in_process(folder, f"inproc{i}", url, strategy))
                      for i in range(args.repeat)]  # fmt: skip
        finally:
            emulator.terminate()
            emulator.wait(30)
    warm_s = statistics.median(warm)
    plain_s = statistics.median(p["wall_s"] for p in plain)
    inproc_s = statistics.median(inproc)
    print(f"one cycle (reconcile, 720 candles, one entry, persist); median of {args.repeat}")
    print(f"  notebook cold (empty numba cache):  {cold:6.2f} s")
    print(f"  notebook warm (papermill, new kernel): {warm_s:6.2f} s   (runs: "
          + ", ".join(f"{w:.2f}" for w in warm) + ")")  # fmt: skip
    print(f"  python process (no kernel):         {plain_s:6.2f} s")
    print(f"  in-process call (warm):             {inproc_s:6.2f} s")
    print(f"ratio notebook cold / warm:           {cold / warm_s:6.2f}")
    print(f"ratio notebook warm / python process: {warm_s / plain_s:6.2f}")
    print(f"ratio notebook warm / in-process:     {warm_s / inproc_s:6.2f}")
    print(f"ratio python process / in-process:    {plain_s / inproc_s:6.2f}")
    loaded = any(p["numba"] for p in plain)
    print(f"numba loaded by the cycle: {loaded}; files in the numba cache after the cold run: "
          f"{cached}")  # fmt: skip


if __name__ == "__main__":
    main()
