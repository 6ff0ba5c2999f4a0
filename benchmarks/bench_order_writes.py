"""Order-state writes per second, durable (one transaction per state change, through the Store)
vs a plain INSERT loop on the same database, for DuckDB and PostgreSQL. Prints ratios.

    python benchmarks/bench_order_writes.py [--orders 200]

Each order goes pending -> open -> partially_filled -> filled with one fill recorded: four
state changes, each its own transaction, as the executor writes them. The baseline inserts
4-column rows with autocommit INSERTs on the same connection type. Also printed: the median
`insert_order` latency (the write before an order is sent), and the floor under both, measured
in the same run: one fdatasync of 1 KB in the DuckDB store's folder (each durable commit waits
for one), and a bare DuckDB autocommit INSERT of one live_orders-wide row (23 columns).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg

from tradelib.domain import ClientOrderId, Fill, Order, OrderStatus, OrderType, Side
from tradelib.store import Store, open_store
from tradelib.store.duckdb_store import DuckDBStore

PG = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2024, 3, 16, tzinfo=UTC)


def order_lifecycle(store: Store, n: int) -> tuple[float, list[float]]:
    """Seconds for n orders x 4 durable state changes (+ 1 fill), and each insert_order's."""
    store.ensure_strategy("bench", {})
    inserts: list[float] = []
    started = time.perf_counter()
    for i in range(n):
        coid = ClientOrderId(f"bench-{uuid.uuid4().hex[:20]}-{i}")
        order = Order(coid, "ARB/USDT", Side.BUY, OrderType.LIMIT, Decimal(10), T0,
                      price=Decimal("1.5"), strategy_id="bench")  # type: ignore[arg-type]  # fmt: skip
        sent = time.perf_counter()
        store.insert_order(order)
        inserts.append(time.perf_counter() - sent)
        order = order.transition(OrderStatus.OPEN, T0)
        store.update_order(order)
        fill = Fill(f"t-{coid}", coid, "ARB/USDT", Side.BUY, Decimal(4), Decimal("1.5"),
                    Decimal("0.006"), "USDT", T0)  # fmt: skip
        with store.transaction():
            store.record_fill(fill, "binance", "paper")
            order = order.apply_fill(fill)
            store.update_order(order)
        store.update_order(replace(order, status=OrderStatus.FILLED, filled_quantity=Decimal(10)))
    return time.perf_counter() - started, inserts


def fdatasync_floor(folder: Path, n: int) -> float:
    """Seconds per write + fdatasync of 1 KB to a file in `folder` (a durable commit's wait)."""
    fd = os.open(folder / "sync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        started = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 1024)
            os.fdatasync(fd)
        return (time.perf_counter() - started) / n
    finally:
        os.close(fd)


def wide_row_duckdb(path: Path, n: int) -> float:
    """Seconds per autocommit INSERT of one live_orders row into a bare DuckDB file."""
    import duckdb

    from tradelib.store.migrations import load_migrations
    from tradelib.store.orders import _INSERT_COLUMNS, _INSERT_PLACES

    con = duckdb.connect(str(path))
    for statement in load_migrations()[0].statements(DuckDBStore.dialect):
        con.execute(statement)
    con.execute("DROP INDEX live_orders_status")  # as the store does (its update cost)
    sql = f"INSERT INTO live_orders ({_INSERT_COLUMNS}) VALUES (?, {_INSERT_PLACES})"
    started = time.perf_counter()
    for i in range(n):
        con.execute(sql, (1, None, "binance", "ARB/USDT", "buy", "limit", Decimal(10),
                          Decimal("1.5"), "pending", None, T0, T0, None, f"w{i}", Decimal(0),
                          None, Decimal(0), None, "paper", "GTC", False, None, None))  # fmt: skip
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed / n


def plain_inserts_duckdb(path: Path, rows: int) -> float:
    """Seconds for `rows` autocommit INSERTs into a DuckDB table (created on first use)."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE IF NOT EXISTS t (id VARCHAR, qty DECIMAL(20,8), price DECIMAL(20,8), "
        "s VARCHAR)"
    )
    started = time.perf_counter()
    for i in range(rows):
        con.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?)", (f"r{i}", Decimal(10), Decimal("1.5"), "open")
        )
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def plain_inserts_postgres(table: str, rows: int) -> float:
    """Seconds for `rows` autocommit INSERTs into a PostgreSQL table (created on first use)."""
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(id TEXT, qty NUMERIC(20,8), price NUMERIC(20,8), s TEXT)"
        )
        started = time.perf_counter()
        for i in range(rows):
            con.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                        (f"r{i}", Decimal(10), Decimal("1.5"), "open"))  # fmt: skip
        return time.perf_counter() - started


def main() -> None:
    """Run both backends; print writes/s, the ratio to the plain INSERT loop, and the floors.

    A shared box's disk speed drifts by the second: each measure runs in --rounds slices
    alternating with its baseline, and the totals are compared.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.orders, args.rounds
    part = max(1, n // rounds)
    writes = part * rounds * 4
    rows: list[tuple[str, float, float, float]] = []
    inserts: list[float] = []
    durable = plain = sync = wide = 0.0
    with TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = open_store(f"duckdb:///{folder / 'bench.duckdb'}")
        for r in range(rounds):
            seconds, latencies = order_lifecycle(store, part)
            durable, inserts = durable + seconds, inserts + latencies
            plain += plain_inserts_duckdb(folder / "plain.duckdb", part * 4)
            sync += fdatasync_floor(folder, part * 4) * part * 4
            wide += wide_row_duckdb(folder / f"wide{r}.duckdb", part * 4) * part * 4
        store.close()
        rows.append(("duckdb", writes / durable, writes / plain, statistics.median(inserts)))
    schema, table = f"bench_{uuid.uuid4().hex[:8]}", f"bench_{uuid.uuid4().hex[:8]}"
    store = open_store(f"{PG}?schema={schema}")
    durable = plain = 0.0
    inserts = []
    for _ in range(rounds):
        seconds, latencies = order_lifecycle(store, part)
        durable, inserts = durable + seconds, inserts + latencies
        plain += plain_inserts_postgres(table, part * 4)
    store.close()
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.execute(f"DROP TABLE {table}")
    rows.append(("postgresql", writes / durable, writes / plain, statistics.median(inserts)))
    print(f"{part * rounds} orders x 4 state changes, one transaction each, in {rounds} rounds")
    print(f"{'store':<12}{'durable writes/s':>18}{'plain INSERT/s':>16}{'ratio':>8}"
          f"{'insert_order ms':>17}")  # fmt: skip
    for name, durable_rate, plain_rate, insert in rows:
        print(
            f"{name:<12}{durable_rate:>18.1f}{plain_rate:>16.1f}"
            f"{durable_rate / plain_rate:>8.2f}{insert * 1e3:>17.2f}"
        )
    sync, wide = sync / writes, wide / writes
    print(f"floor: write + fdatasync of 1 KB {sync * 1e3:.2f} ms "
          f"(at most {1 / sync:.0f} durable commits/s on this disk)")  # fmt: skip
    print(f"floor: bare DuckDB autocommit INSERT of one live_orders row {wide * 1e3:.2f} ms "
          f"({1 / wide:.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
