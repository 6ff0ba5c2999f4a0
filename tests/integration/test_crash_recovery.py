"""Kill the trading process with SIGKILL at random moments, restart it, and check nothing is
lost or doubled: every planned intent executed exactly once on the exchange, every exchange
order known to the store, and positions and balances in the store equal to the exchange's.

The kill schedule follows the trader's own progress, not the wall clock: each life is killed a
random fraction of a step after its r-th step line (r in 0..3; r = 0 kills during start-up
and reconciliation), where "a step" is the median time this machine has taken per step so
far. A fast and a loaded machine therefore see the same number of steps per life, and the
plan (STEPS) always outlasts KILLS lives.

Seeded: set TRADELIB_CRASH_SEED to replay a failure; TRADELIB_CRASH_KILLS (default 30).
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from emulator_fixtures import EMULATOR_START

from tradelib.domain import Mode, OrderStatus
from tradelib.testing.binance_emulator import BinanceEmulator

TRADER = Path(__file__).with_name("crash_trader.py")
STEPS = 200  # a life does at most MAX_LINES + 1 steps: 30 lives never reach the end
MAX_LINES = 3
LIFE_TIMEOUT_S = 300  # only a hung trader gets here; progress is measured in steps
SEED = int(os.environ.get("TRADELIB_CRASH_SEED", "20261125"))
KILLS = int(os.environ.get("TRADELIB_CRASH_KILLS", "30"))
START_USDT = Decimal(10_000)


class ThreadedEmulator:
    """The emulator on its own event loop thread, so this test can block on subprocesses."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emulator = BinanceEmulator(
            balances={"USDT": START_USDT}, start=EMULATOR_START, symbols=["ARB/USDT"]
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BinanceEmulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self.loop).result(30)
        return self.emulator

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        async def run():  # type: ignore[no-untyped-def]
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)


@pytest.fixture
def threaded() -> Iterator[ThreadedEmulator]:
    runner = ThreadedEmulator()
    with runner:
        yield runner


def _start(store_url: str, emulator: BinanceEmulator) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(TRADER), store_url, emulator.base_url, emulator.api_key,
         emulator.api_secret, str(STEPS)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


class Life:
    """One trader process with its stdout lines timed as they arrive (a reader thread)."""

    def __init__(self, store_url: str, emulator: BinanceEmulator) -> None:
        self.started = time.monotonic()
        self.proc = _start(store_url, emulator)
        self.lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line))
        self.lines.put((time.monotonic(), None))

    def next_line(self, timeout: float) -> tuple[float, str | None]:
        """(arrival time, line), line None at the end of output; raises queue.Empty."""
        at, line = self.lines.get(timeout=timeout)
        if line is not None:
            self.output.append(line)
        return at, line

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    store_url: str, threaded: ThreadedEmulator
) -> None:
    emulator = threaded.emulator
    rng = random.Random(SEED)
    kills, crashed_runs = 0, 0
    startups: list[float] = []  # spawn -> first step line, per life
    steps: list[float] = []  # between two step lines
    log: list[str] = []
    while kills < KILLS:
        life = Life(store_url, emulator)
        # The first life measures both units (start-up, one step) before any random choice.
        lines = rng.randint(0, MAX_LINES) if steps else MAX_LINES
        fraction = rng.random()
        seen, last, ended = 0, life.started, False
        while seen < lines and not ended:
            at, line = life.next_line(LIFE_TIMEOUT_S)
            if line is None:
                ended = True
            elif line.startswith("step-") or line.startswith("rest "):
                (steps if seen else startups).append(at - last)
                seen, last = seen + 1, at
        if not ended:
            unit = statistics.median(steps if lines else startups)
            try:
                while True:  # wait `fraction` of a step for the end of output, else kill
                    _, line = life.next_line(max(0.0, last + fraction * unit - time.monotonic()))
                    if line is None:
                        ended = True
                        break
            except queue.Empty:
                life.kill()
                kills += 1
                log.append(f"kill {kills} after {seen} step line(s) + {fraction:.2f} x {unit:.3f}s")
                continue
        life.proc.wait()
        out = "".join(life.output)
        log.append(f"run finished before the kill (rc={life.proc.returncode}): {out[-300:]}")
        assert life.proc.returncode != 0, f"plan finished after {kills} kills: make it longer"
        crashed_runs += 1
        assert crashed_runs < 10, "\n".join(log)
    final = _start(store_url, emulator)
    out, _ = final.communicate(timeout=400)
    assert final.returncode == 0, f"final run failed (seed {SEED}):\n{out}\n" + "\n".join(log)
    assert "DONE" in out

    from tradelib.store import open_store

    venue_orders = threaded.call(emulator.orders)
    venue_trades = threaded.call(emulator.trades)
    venue_balances = threaded.call(emulator.balances)
    store = open_store(store_url)
    try:
        stored = {o.client_order_id: o for o in store.list_orders(mode=Mode.LIVE)}
        # No duplicate: each client order id reached the exchange at most once.
        dupes = [c for c, n in Counter(o.client_order_id for o in venue_orders).items() if n > 1]
        assert dupes == [], f"orders sent twice (seed {SEED}): {dupes}"
        # Nothing lost: every exchange order is in the store with the same outcome.
        for venue in venue_orders:
            mine = stored.get(venue.client_order_id)
            assert mine is not None, f"order {venue.client_order_id} lost by the store"
            assert mine.filled_quantity == venue.executed, venue.client_order_id
            assert mine.status.is_terminal
        # Every planned intent executed exactly once.
        intents = Counter(
            (store.get_order_intent(c) or {}).get("intent_key")
            for c, o in stored.items()
            if o.status is OrderStatus.FILLED
        )
        for i in range(STEPS):
            assert intents[f"step-{i}"] == 1, f"step-{i} filled {intents[f'step-{i}']} times"
        # Fills, positions and balances equal the exchange's to the last unit.
        fills = store.list_fills(mode=Mode.LIVE)
        assert sorted(f.trade_id for f in fills) == sorted(str(t.trade_id) for t in venue_trades)
        balances = store.list_balances(Mode.LIVE, exchange="binance")
        for asset, venue_balance in venue_balances.items():
            if venue_balance.total or asset in balances:
                assert balances[asset].free == venue_balance.free, asset
                assert balances[asset].locked == venue_balance.locked, asset
        positions = store.list_positions(Mode.LIVE)
        held = sum((p.quantity * p.side.sign for p in positions), Decimal(0))
        arb = venue_balances["ARB"].total if "ARB" in venue_balances else Decimal(0)
        assert held == arb, f"positions hold {held} ARB, the exchange {arb}"
    finally:
        store.close()
