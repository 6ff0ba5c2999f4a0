"""Per-call cost of a DuckDB store used through its owner (RemoteStore) vs in the owner itself.

    python benchmarks/bench_store_share.py [--calls 500] [--rounds 3]

One owner process opens a fresh DuckDB file (and so serves it). In the same run it times its
own `insert_order` / `get_order` calls (the engine's write-before-send path stays local like
this), and this process times the same calls through `open_store` (a RemoteStore: one socket
round trip each). Rounds alternate owner and client; the median per-call cost is printed with
the ratio and the time the socket adds. Also shown: `change_token()` (what a dashboard polls)
and a 1,000-candle `read_candles` DataFrame, both ways.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd

from tradelib.domain import ClientOrderId, Mode, Order, OrderType, Side, StrategyId
from tradelib.store import RemoteStore, Store, open_store

T0 = datetime(2024, 3, 16, tzinfo=UTC)
_OWNER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from bench_store_share import timings
from tradelib.store import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    print(" ".join(f"{v:.9f}" for v in timings(store, line.split()[0], int(line.split()[1]))),
          flush=True)
store.close()
"""


def make_order(coid: str) -> Order:
    """A paper limit order like the executor writes before sending."""
    return Order(
        client_order_id=ClientOrderId(coid), symbol="ARB/USDT", side=Side.BUY,
        type=OrderType.LIMIT, quantity=Decimal(10), price=Decimal("1.5"), created_at=T0,
        strategy_id=StrategyId("bench"), exchange="binance", mode=Mode.PAPER,
    )  # fmt: skip


def timings(store: Store, tag: str, calls: int) -> tuple[float, float, float, float]:
    """Seconds per call of insert_order, get_order, change_token, read_candles (1,000 rows)."""

    def per_call(fn: Callable[[int], object], n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        return (time.perf_counter() - started) / n

    insert = per_call(lambda i: store.insert_order(make_order(f"{tag}-{i}")), calls)
    get = per_call(lambda i: store.get_order(f"{tag}-{i}"), calls)
    token = per_call(lambda i: store.change_token(), calls)
    candles = per_call(lambda i: store.read_candles("binance", "ARB/USDT", "1m"), 20)
    return insert, get, token, candles


def seed(store: Store) -> None:
    """Strategy row, 1,000 candles and warm caches, so no round pays first-use costs."""
    store.ensure_strategy("bench", {})
    times = [T0 + timedelta(minutes=i) for i in range(1000)]
    frame = pd.DataFrame(
        {"open_time": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}
    )
    store.write_candles("binance", frame, symbol="ARB/USDT", timeframe="1m")
    timings(store, "warm", 20)


def main() -> None:
    """Run the comparison and print per-call costs and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with TemporaryDirectory() as folder:
        url = f"duckdb:///{Path(folder) / 'bench.duckdb'}"
        owner = subprocess.Popen(
            [sys.executable, "-c", _OWNER, url, str(Path(__file__).parent)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert owner.stdin is not None and owner.stdout is not None
        try:
            while owner.stdout.readline().strip() != "ready":
                pass
            client = open_store(url)
            assert isinstance(client, RemoteStore), client
            seed(client)
            local: list[tuple[float, ...]] = []
            remote: list[tuple[float, ...]] = []
            for r in range(args.rounds):
                owner.stdin.write(f"owner{r} {args.calls}\n")
                owner.stdin.flush()
                answer = owner.stdout.readline().split()
                while len(answer) != 4:  # log lines share the owner's stdout
                    answer = owner.stdout.readline().split()
                local.append(tuple(float(v) for v in answer))
                remote.append(timings(client, f"client{r}", args.calls))
            client.close()
        finally:
            owner.stdin.close()
            owner.wait(120)
    print(f"DuckDB store, {args.calls} calls x {args.rounds} rounds, median per call")
    print(f"{'call':<24}{'in the owner':>14}{'remote':>12}{'ratio':>9}{'added':>12}")
    names = ("insert_order", "get_order", "change_token", "read_candles (1,000)")
    for i, name in enumerate(names):
        mine = statistics.median(row[i] for row in local)
        theirs = statistics.median(row[i] for row in remote)
        print(
            f"{name:<24}{mine * 1e6:>11.1f} µs{theirs * 1e6:>9.1f} µs{theirs / mine:>8.2f}x"
            f"{(theirs - mine) * 1e6:>9.1f} µs"
        )


if __name__ == "__main__":
    main()
