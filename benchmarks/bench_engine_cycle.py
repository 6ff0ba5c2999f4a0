"""One paper engine cycle on a DuckDB file store vs the same cycle on an in-memory store.

    python benchmarks/bench_engine_cycle.py [--cycles 60] [--rounds 3]

The engine trades ARB/USDT on the paper exchange over the recorded candles (data/), one bar
per cycle, in hours with no unlock event: the steady state of a running engine (refresh the
candles, sync, exits, signals, snapshot, breakers, persist). Measured in one run, rounds
alternating: the cycle on a DuckDB file (what `tradelib run` does), the same cycle on
duckdb:///:memory: (no disk: the baseline), and, inside the file cycle, the time spent reading
controls (kill switch, breakers, halt, pause, limit overrides). Medians per cycle are printed,
with the ratio file / memory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from tradelib.config import load_settings
from tradelib.engine import Engine
from tradelib.exchange.paper import PaperExchange
from tradelib.exchange.paper_data import ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.store import Store, open_store
from tradelib.strategy.calendar import UnlockCalendar, load_calendar
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy

DATA = Path(__file__).resolve().parents[1] / "data"
BAR = timedelta(hours=1)
CONTROL_READS = ("get_control", "get_control_record", "list_controls", "controls")


def _quiet_calendar() -> tuple[UnlockCalendar, Any]:
    """ARB's first 2024 unlock; the cycles run in the days before it (nothing to trade)."""
    full = load_calendar()
    event = next(e for e in full.events if e.symbol == "ARB" and e.unlock_time.year == 2024)
    return UnlockCalendar([event], full.known_symbols), event.unlock_time


class _Timed:
    """Wraps the store's control reads to add up the time spent in them."""

    def __init__(self, store: Store) -> None:
        self.seconds = 0.0
        self._depth = 0  # get_control calls get_control_record: count the outer call only
        for name in CONTROL_READS:
            method = getattr(store, name, None)
            if method is not None:
                setattr(store, name, self._wrap(method))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self._depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1
                if not self._depth:
                    self.seconds += time.perf_counter() - started

        return timed


async def cycles(url: str, n: int) -> tuple[float, float]:
    """Median seconds per cycle and mean seconds of control reads per cycle, over n cycles."""
    calendar, unlock = _quiet_calendar()
    start = unlock - timedelta(days=10)
    replay = ReplayMarket.from_data_dir(DATA, start=start - BAR * 48, symbols=["ARB/USDT"])
    paper = PaperExchange(
        ReplayMarketData(replay), balances={"USDT": Decimal(10_000)}, exchange_id="bench"
    )
    store = open_store(url)
    try:
        settings = load_settings(store_url=store.url)
        params = TokenUnlockParams(direction="spot", days_after=4.0)
        engine = Engine(
            settings, store, paper, TokenUnlockStrategy(params, calendar),
            symbols=["ARB/USDT"], clock=lambda: replay.now, history=24 * 7,
        )  # fmt: skip
        await paper.advance_to(start)
        for _ in range(3):  # start, reconcile, first candle load: not the steady state
            await engine.run_once()
            await paper.advance_to(replay.now + BAR)
        timer = _Timed(store)
        times: list[float] = []
        for _ in range(n):
            started = time.perf_counter()
            report = await engine.run_once()
            times.append(time.perf_counter() - started)
            assert report.halted is None and not report.orders, report
            await paper.advance_to(replay.now + BAR)
        return statistics.median(times), timer.seconds / n
    finally:
        await paper.close()
        store.close()


def main() -> None:
    """Alternate file and memory rounds; print the medians, the control reads and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    on_file: list[float] = []
    in_memory: list[float] = []
    reads: list[float] = []
    with TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            cycle, control = asyncio.run(
                cycles(f"duckdb:///{Path(tmp) / f'engine{i}.duckdb'}", args.cycles)
            )
            on_file.append(cycle)
            reads.append(control)
            in_memory.append(asyncio.run(cycles("duckdb:///:memory:", args.cycles))[0])
    file_ms, memory_ms = statistics.median(on_file) * 1e3, statistics.median(in_memory) * 1e3
    print(f"{args.cycles} quiet paper cycles x {args.rounds} rounds, ARB/USDT, 1h bars")
    print(f"{'store':<22}{'ms/cycle':>10}{'control reads ms':>18}")
    print(f"{'duckdb file':<22}{file_ms:>10.2f}{statistics.median(reads) * 1e3:>18.2f}")
    print(f"{'duckdb :memory: (base)':<22}{memory_ms:>10.2f}{'':>18}")
    print(f"ratio file / memory: {file_ms / memory_ms:.2f}x")


if __name__ == "__main__":
    main()
