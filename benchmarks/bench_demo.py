"""Benchmark: `tradelib demo` end to end in a fresh process, cold and warm numba cache.

Run: python benchmarks/bench_demo.py [--events N] [--repeat 1]

Each measurement is a new process on a fresh DuckDB store (offline, bundled data). Measured in
one run, so the ratios hold on a busy shared box where absolute seconds drift:

* import: `python -c "import tradelib.cli"` (the baseline: interpreter and package start-up);
* replay: `tradelib demo --no-backtest` (paper engine, comparison table and report; no vectorbt);
* demo cold: `tradelib demo` with an empty numba cache (NUMBA_CACHE_DIR), as on a fresh venv;
* demo warm: `tradelib demo` again on the same numba cache.

Wall seconds, CPU seconds (user + system of the process and its children: the backtest runs in
a second process) and the 1-minute load average before each run are printed, then the ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = "import sys; from tradelib.cli import app; sys.argv[0] = 'tradelib'; app()"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one process (and its children), and its stdout."""
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[3:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done.stdout


def _demo(folder: Path, name: str, extra: list[str]) -> list[str]:
    store = f"duckdb:///{folder / f'{name}.duckdb'}"
    return [sys.executable, "-c", CLI, "demo", "--store", store, "--out", str(folder), *extra]


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="replay only the first N")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement")
    args = parser.parse_args()
    extra = [] if args.events is None else ["--events", str(args.events)]
    rows: dict[str, list[tuple[float, float, float]]] = {}
    summary = ""
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        folder = Path(tmp)
        env = dict(os.environ, NO_COLOR="1")
        env.pop("TRADELIB_STORE_URL", None)
        for n in range(args.repeat):
            cache = folder / f"numba-{n}"
            env["NUMBA_CACHE_DIR"] = str(cache)  # empty: the first demo compiles, cold
            plan = [
                ("import", [sys.executable, "-c", "import tradelib.cli"]),
                ("replay (--no-backtest)", _demo(folder, f"replay-{n}", [*extra, "--no-backtest"])),
                ("demo cold", _demo(folder, f"cold-{n}", extra)),
                ("demo warm", _demo(folder, f"warm-{n}", extra)),
            ]
            for label, argv in plan:
                load = os.getloadavg()[0]
                wall, cpu, out = _run(argv, env)
                rows.setdefault(label, []).append((wall, cpu, load))
                print(f"  {label:<24} {wall:7.1f} s wall {cpu:7.1f} s cpu  (load {load:.1f})")
                if label == "demo warm":
                    summary = "\n".join(
                        line for line in out.splitlines() if line.split()[:1] == ["trades"]
                    )
    print(f"\n{os.cpu_count()} cores; median of {args.repeat} run(s) each\n")
    base_wall = statistics.median(r[0] for r in rows["import"])
    replay_wall = statistics.median(r[0] for r in rows["replay (--no-backtest)"])
    print(f"{'measure':<24} {'wall s':>8} {'cpu s':>8} {'x import':>9} {'x replay':>9}")
    for label, runs in rows.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"{label:<24} {wall:8.1f} {cpu:8.1f} {wall / base_wall:9.1f} {wall / replay_wall:9.2f}"
        )
    result = re.sub(r"\s+", " ", summary).strip()
    print(f"\ndemo result (warm run): {result}")


if __name__ == "__main__":
    main()
