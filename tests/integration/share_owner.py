"""A process that owns a DuckDB store like an engine does, for the store-sharing tests.

Run as ``python share_owner.py STORE_URL [IDLE_LIMIT_S]``. It opens the store (so it owns and
serves the file), prints ``ready <pid>``, then runs an engine-like asyncio loop on its main
thread: each cycle reads the kill switch and, while it is off, writes one open paper order and
one audit entry. Commands arrive on stdin (one per line, read on another thread); each prints
one answer line, prefixed with ">> " (log lines go to the same stdout):

- ``count``: orders the engine wrote so far, and whether it saw the kill switch engaged;
- ``freeze`` / ``thaw``: the engine's loop spins in pure Python (a hung strategy) / resumes;
- ``write COID``: insert one order from this (command) thread; ``ok`` once it is stored;
- ``count_up N``: N read-modify-write transactions on the control "counter";
- ``hold`` / ``release``: this thread opens a transaction and keeps it open / ends it;
- ``busy``: wait until the server carries out at least one client request, then answer;
- ``exit``: close the store (from the command thread: the engine may be waiting for a
  client's transaction), let the engine notice, and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tradelib.audit import AuditLog
from tradelib.domain import ClientOrderId, Mode, Order, OrderStatus, OrderType, Side, StrategyId
from tradelib.errors import StoreError
from tradelib.store import Store, open_store, share_server
from tradelib.store.duckdb_store import _path_from_url

STRATEGY = StrategyId("share_test")


def order(coid: str, status: OrderStatus = OrderStatus.OPEN) -> Order:
    """A resting paper limit order far below the market."""
    return Order(
        client_order_id=ClientOrderId(coid),
        symbol="ARB/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal(10),
        price=Decimal("0.3"),
        created_at=datetime.now(UTC),
        strategy_id=STRATEGY,
        exchange="binance",
        mode=Mode.PAPER,
        status=status,
    )


class Engine:
    """The engine-like loop and what the command thread may ask of it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.audit = AuditLog(store)
        self.written = 0
        self.saw_kill = False
        self.frozen = threading.Event()
        self.spinning = threading.Event()
        self.closing = threading.Event()

    async def run(self) -> None:
        """Write one order and one audit entry per cycle while the kill switch is off."""
        while True:
            if self.frozen.is_set():
                self.spinning.set()
                while self.frozen.is_set():  # the event loop is stuck, as with a hung strategy
                    pass
                self.spinning.clear()
            try:
                self.cycle()
            except StoreError:
                if self.closing.is_set():
                    return  # `exit` closed the store under the engine's feet
                raise
            await asyncio.sleep(0.01)

    def cycle(self) -> None:
        """What the engine does each cycle: obey the kill switch, else send (store) one order."""
        kill = self.store.get_control("kill_switch")
        self.saw_kill = bool(kill and kill.get("engaged"))
        if not self.saw_kill:
            self.store.insert_order(order(f"engine-{os.getpid()}-{self.written}"))
            self.audit.record("engine", "order_sent", {"n": self.written}, datetime.now(UTC))
            self.written += 1


def command(store: Store, engine: Engine, line: str, held: list[Any]) -> str:
    """Carry out one stdin command and return its answer line."""
    word, _, arg = line.strip().partition(" ")
    if word == "count":
        return f"{engine.written} {engine.saw_kill}"
    if word == "freeze":
        engine.frozen.set()
        engine.spinning.wait(120)
        return "frozen"
    if word == "thaw":
        engine.frozen.clear()
        return "thawed"
    if word == "write":
        store.insert_order(order(arg))
        return "ok"
    if word == "count_up":
        for _ in range(int(arg)):
            with store.transaction():
                value = (store.get_control("counter") or {"n": 0})["n"]
                store.set_control("counter", {"n": value + 1}, datetime.now(UTC), "owner")
        return "counted"
    if word == "hold":
        tx = store.transaction()
        tx.__enter__()
        store.append_event("held", {}, datetime.now(UTC))
        held.append(tx)
        return "holding"
    if word == "release":
        held.pop().__exit__(None, None, None)
        return "released"
    if word == "busy":
        server = share_server.server_for(_path_from_url(sys.argv[1]))
        assert server is not None
        while server.in_flight < 1:
            threading.Event().wait(0.01)
        return "busy"
    return f"unknown command {word!r}"


async def main() -> None:
    """Own the store, run the engine, obey stdin until `exit`."""
    if len(sys.argv) > 2:
        share_server.TX_IDLE_LIMIT_S = float(sys.argv[2])
    store = open_store(sys.argv[1])
    store.ensure_strategy(STRATEGY, {})
    engine = Engine(store)
    print(f">> ready {os.getpid()}", flush=True)

    def commands() -> None:
        held: list[Any] = []
        for line in sys.stdin:
            if line.strip() == "exit":
                break
            print(f">> {command(store, engine, line, held)}", flush=True)
        engine.closing.set()
        engine.frozen.clear()
        store.close()
        print(">> closed", flush=True)

    obeying = threading.Thread(target=commands, daemon=True)
    obeying.start()
    await engine.run()  # ends once `exit` closed the store
    obeying.join()


if __name__ == "__main__":
    asyncio.run(main())
