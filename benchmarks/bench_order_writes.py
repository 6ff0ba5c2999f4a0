"""Order-state writes per second, durable (one transaction per state change, through the Store)
vs a plain INSERT loop on the same database, for DuckDB and PostgreSQL. Prints ratios.

    python benchmarks/bench_order_writes.py [--orders 200]

Each order goes pending -> open -> partially_filled -> filled with one fill recorded: four
state changes, each its own transaction, as the executor writes them. Two baselines, measured
in the same run and alternating with it: a plain loop of autocommit INSERTs of 4-column rows
on the same connection type, and the "bare schema" floor: the same rows and commits as the
durable path written with bare driver statements and no tradelib code (what this schema costs
on this database). Also printed: the median `insert_order` latency (the write before an order
is sent) and one fdatasync of 1 KB in the DuckDB store's folder (each durable commit waits for
one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg

from tradelib.domain import ClientOrderId, Fill, Order, OrderStatus, OrderType, Side
from tradelib.store import Store, open_store
from tradelib.store.orders import _INSERT_COLUMNS, _INSERT_PLACES

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


_BARE_FILL = (
    "INSERT INTO order_fills (trade_id, exchange, client_order_id, symbol, side, quantity, price, "
    "fee, fee_currency, is_maker, executed_at, mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BARE_UPDATE = "UPDATE live_orders SET status = ?, filled_quantity = ?, updated_at = ? WHERE id = ?"


def bare_lifecycle(
    execute: Callable[[str, tuple[Any, ...]], Any], tag: str, n: int, first_id: int
) -> float:
    """Seconds for n order lifecycles written with bare driver statements, no tradelib code.

    The same rows and commits as `order_lifecycle` (a 23-column live_orders INSERT, three
    status UPDATEs by primary key, the fill INSERT and its UPDATE in one transaction), without
    any check, notification or lookup: the floor of this schema on this database.
    """
    insert = f"INSERT INTO live_orders (id, {_INSERT_COLUMNS}) VALUES (?, ?, {_INSERT_PLACES})"
    started = time.perf_counter()
    for i in range(n):
        row_id = first_id + i
        coid = f"bare-{tag}-{i}"
        execute(insert, (row_id, 1, None, "binance", "ARB/USDT", "buy", "limit", Decimal(10),
                         Decimal("1.5"), "pending", None, T0, T0, None, coid, Decimal(0), None,
                         Decimal(0), None, "paper", "GTC", False, None, None))  # fmt: skip
        execute(_BARE_UPDATE, ("open", Decimal(0), T0, row_id))
        execute("BEGIN", ())
        fill = (f"t-{coid}", "binance", coid, "ARB/USDT", "buy", Decimal(4), Decimal("1.5"),
                Decimal("0.006"), "USDT", False, T0, "paper")  # fmt: skip
        execute(_BARE_FILL, fill)
        execute(_BARE_UPDATE, ("partially_filled", Decimal(4), T0, row_id))
        execute("COMMIT", ())
        execute(_BARE_UPDATE, ("filled", Decimal(10), T0, row_id))
    return time.perf_counter() - started


def bare_lifecycle_duckdb(path: Path, n: int) -> float:
    """`bare_lifecycle` on a fresh DuckDB file with the store's schema."""
    import duckdb

    store = open_store(f"duckdb:///{path}")  # the schema exactly as the store leaves it
    store.ensure_strategy("bench", {})
    store.close()
    con = duckdb.connect(str(path))
    try:
        return bare_lifecycle(
            lambda sql, params: con.execute(sql, list(params)), path.stem, n, 10_000_000
        )
    finally:
        con.close()


def bare_lifecycle_postgres(schema: str, n: int, round_: int) -> float:
    """`bare_lifecycle` through psycopg in autocommit on the store's PostgreSQL schema."""
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f'SET search_path TO "{schema}"')
        return bare_lifecycle(
            lambda sql, params: con.execute(sql.replace("?", "%s"), params or None),
            f"r{round_}",
            n,
            10_000_000 * (round_ + 1),
        )


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
    """Run both backends; print writes/s, the ratios to the plain loop and the floor, the floors.

    A shared box's disk speed drifts by the second: each measure runs in --rounds slices
    alternating with its baselines, and the totals are compared.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.orders, args.rounds
    part = max(1, n // rounds)
    writes = part * rounds * 4
    rows: list[tuple[str, float, float, float, float]] = []
    inserts: list[float] = []
    durable = plain = sync = bare = 0.0
    with TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = open_store(f"duckdb:///{folder / 'bench.duckdb'}")
        for r in range(rounds):
            seconds, latencies = order_lifecycle(store, part)
            durable, inserts = durable + seconds, inserts + latencies
            plain += plain_inserts_duckdb(folder / "plain.duckdb", part * 4)
            sync += fdatasync_floor(folder, part * 4) * part * 4
            bare += bare_lifecycle_duckdb(folder / f"bare{r}.duckdb", part)
        store.close()
        rows.append(("duckdb", writes / durable, writes / plain, writes / bare,
                     statistics.median(inserts)))  # fmt: skip
    schema, table = f"bench_{uuid.uuid4().hex[:8]}", f"bench_{uuid.uuid4().hex[:8]}"
    store = open_store(f"{PG}?schema={schema}")
    store.ensure_strategy("bench", {})
    durable = plain = bare = 0.0
    inserts = []
    for r in range(rounds):
        seconds, latencies = order_lifecycle(store, part)
        durable, inserts = durable + seconds, inserts + latencies
        plain += plain_inserts_postgres(table, part * 4)
        bare += bare_lifecycle_postgres(schema, part, r)
    store.close()
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.execute(f"DROP TABLE {table}")
    rows.append(("postgresql", writes / durable, writes / plain, writes / bare,
                 statistics.median(inserts)))  # fmt: skip
    print(f"{part * rounds} orders x 4 state changes, one transaction each, in {rounds} rounds")
    print(f"{'store':<12}{'durable/s':>11}{'plain INSERT/s':>16}{'ratio':>7}"
          f"{'bare schema/s':>15}{'ratio':>7}{'insert_order ms':>17}")  # fmt: skip
    for name, durable_rate, plain_rate, bare_rate, insert in rows:
        print(
            f"{name:<12}{durable_rate:>11.1f}{plain_rate:>16.1f}"
            f"{durable_rate / plain_rate:>7.2f}{bare_rate:>15.1f}"
            f"{durable_rate / bare_rate:>7.2f}{insert * 1e3:>17.2f}"
        )
    sync /= writes
    print(f"floor: write + fdatasync of 1 KB {sync * 1e3:.2f} ms "
          f"(at most {1 / sync:.0f} durable commits/s on this disk)")  # fmt: skip
    print("bare schema: the same rows and commits as the durable path, written with bare driver "
          "statements (no check, lookup or notification): the floor of this schema")  # fmt: skip


if __name__ == "__main__":
    main()
