"""Order-state writes per second, durable (one transaction per state change, through the Store)
vs a plain INSERT loop on the same database, for DuckDB and PostgreSQL. Prints ratios.

    python benchmarks/bench_order_writes.py [--orders 200]

Each order goes pending -> open -> partially_filled -> filled with one fill recorded: four
state changes, each its own transaction, as the executor writes them. The baseline inserts
rows of the same width with autocommit INSERTs on the same connection type.
"""

from __future__ import annotations

import argparse
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

PG = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2024, 3, 16, tzinfo=UTC)


def order_lifecycle(store: Store, n: int) -> float:
    """Seconds for n orders x 4 durable state changes (+ 1 fill)."""
    store.ensure_strategy("bench", {})
    started = time.perf_counter()
    for i in range(n):
        coid = ClientOrderId(f"bench-{uuid.uuid4().hex[:20]}-{i}")
        order = Order(coid, "ARB/USDT", Side.BUY, OrderType.LIMIT, Decimal(10), T0,
                      price=Decimal("1.5"), strategy_id="bench")  # type: ignore[arg-type]  # fmt: skip
        store.insert_order(order)
        order = order.transition(OrderStatus.OPEN, T0)
        store.update_order(order)
        fill = Fill(f"t-{coid}", coid, "ARB/USDT", Side.BUY, Decimal(4), Decimal("1.5"),
                    Decimal("0.006"), "USDT", T0)  # fmt: skip
        with store.transaction():
            store.record_fill(fill, "binance", "paper")
            order = order.apply_fill(fill)
            store.update_order(order)
        store.update_order(replace(order, status=OrderStatus.FILLED, filled_quantity=Decimal(10)))
    return time.perf_counter() - started


def plain_inserts_duckdb(path: Path, rows: int) -> float:
    """Seconds for `rows` autocommit INSERTs into a fresh DuckDB table."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (id VARCHAR, qty DECIMAL(20,8), price DECIMAL(20,8), s VARCHAR)")
    started = time.perf_counter()
    for i in range(rows):
        con.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?)", (f"r{i}", Decimal(10), Decimal("1.5"), "open")
        )
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def plain_inserts_postgres(rows: int) -> float:
    """Seconds for `rows` autocommit INSERTs into a fresh PostgreSQL table."""
    table = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(
            f"CREATE TABLE {table} (id TEXT, qty NUMERIC(20,8), price NUMERIC(20,8), s TEXT)"
        )
        started = time.perf_counter()
        for i in range(rows):
            con.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                        (f"r{i}", Decimal(10), Decimal("1.5"), "open"))  # fmt: skip
        elapsed = time.perf_counter() - started
        con.execute(f"DROP TABLE {table}")
    return elapsed


def main() -> None:
    """Run both backends and print writes/s and the ratio to the plain INSERT loop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    n = parser.parse_args().orders
    writes = n * 4
    rows: list[tuple[str, float, float]] = []
    with TemporaryDirectory() as tmp:
        store = open_store(f"duckdb:///{Path(tmp) / 'bench.duckdb'}")
        durable = order_lifecycle(store, n)
        store.close()
        plain = plain_inserts_duckdb(Path(tmp) / "plain.duckdb", writes)
        rows.append(("duckdb", writes / durable, writes / plain))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = open_store(f"{PG}?schema={schema}")
    durable = order_lifecycle(store, n)
    store.close()
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
    rows.append(("postgresql", writes / durable, writes / plain_inserts_postgres(writes)))
    print(f"{n} orders x 4 state changes, one transaction each")
    print(f"{'store':<12}{'durable writes/s':>18}{'plain INSERT/s':>16}{'ratio':>8}")
    for name, durable_rate, plain_rate in rows:
        print(
            f"{name:<12}{durable_rate:>18.1f}{plain_rate:>16.1f}{durable_rate / plain_rate:>8.2f}"
        )


if __name__ == "__main__":
    main()
