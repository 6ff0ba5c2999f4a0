"""Several processes on one DuckDB file: the holder serves it, the others use it through it.

Real processes, real DuckDB, real sockets. An owner process (share_owner.py) holds the file and
runs an engine-like loop that keeps writing orders and audit entries; this process and the real
`tradelib` CLI use the store through `open_store` meanwhile. Faults (clients or owners dying,
other users, stale sockets) are in test_store_share_faults.py. Work is sized by events (answers
of the owner, rows in the store); timeouts are fail-safes only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from share_fixtures import (
    FAIL_SAFE_S,
    ROOT,
    Owner,
    remote,
    token_other_than,
    wait_until,
)
from share_owner import order

from tradelib.audit import AuditLog
from tradelib.domain import Mode, OrderStatus
from tradelib.errors import (
    DataError,
    DuplicateOrder,
    IllegalTransition,
    StoreError,
)
from tradelib.store import Store, open_store

CLI = [sys.executable, "-c", "from tradelib.cli import app; app()"]  # the `tradelib` command
_OPEN = [s for s in OrderStatus if not s.is_terminal]


# -- one process owns, another reads and writes through it ----------------------------------


def test_a_second_process_uses_every_kind_of_store_call_while_the_owner_writes(
    duckdb_store_url: str, owner: Owner
) -> None:
    owner.wait_for_orders(3)
    store = remote(duckdb_store_url, owner)
    assert f"(served by pid {owner.pid})" in repr(store) and f"pid {owner.pid}" in store.url
    assert store.health()["ok"] is True and store.health()["served_by"] == owner.pid
    assert store.migrate() == []  # never migrates: the owner did

    # orders: exact round trip, the owner's own rules and error classes
    mine = order("client-1", OrderStatus.PENDING)
    store.insert_order(mine, intent={"size": Decimal("12.5"), "why": "test"})
    assert store.get_order("client-1") == replace(mine, updated_at=mine.created_at)
    assert store.get_order_intent("client-1") == {"size": "12.5", "why": "test"}
    opened = mine.transition(OrderStatus.OPEN, datetime.now(UTC))
    store.update_order(opened)
    with pytest.raises(DuplicateOrder, match="client-1 is already in the store"):
        store.insert_order(mine)
    with pytest.raises(IllegalTransition, match="cannot become pending"):
        store.update_order(replace(opened, status=OrderStatus.PENDING))
    with pytest.raises(DataError, match="mode must be 'paper' or 'live'"):
        store.list_orders(mode="moon")
    wanted = {OrderStatus.OPEN: 1, OrderStatus.PARTIALLY_FILLED: 2}
    assert opened in store.list_orders(statuses=(s for s in wanted), mode=Mode.PAPER)
    assert opened in store.list_orders(statuses=wanted.keys(), mode=Mode.PAPER)
    with pytest.raises(DataError, match="cannot be sent to the process that serves the store"):
        store.append_event("bad", {"f": lambda: 0}, at=datetime.now(UTC))

    # events and controls
    at = datetime(2024, 3, 1, tzinfo=UTC)
    event_id = store.append_event("from-client", {"n": Decimal("1.5")}, at, source="test")
    assert [(e.id, e.payload) for e in store.list_events(kind="from-client")] == [
        (event_id, {"n": "1.5"})
    ]
    store.set_control("dashboard", {"on": True}, at, "client")
    record = store.get_control_record("dashboard")
    assert record is not None and record.value == {"on": True} and record.updated_by == "client"

    # candles as DataFrames, both ways
    times = pd.date_range("2024-03-01", periods=24, freq="1h", tz="UTC")
    frame = pd.DataFrame(
        {"open_time": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}
    )
    assert store.write_candles("binance", frame, symbol="ARB/USDT", timeframe="1h") == 24
    read = store.read_candles("binance", "ARB/USDT", "1h")
    expected = frame.set_index("open_time")
    expected.index = expected.index.astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(read, expected, check_freq=False)
    assert store.candle_range("binance", "ARB/USDT", "1h") == (times[0], times[-1])

    # audit: both processes append to one chain at once, through transaction() + lock()
    audit = AuditLog(store)
    before = owner.wait_for_orders(0)
    for i in range(15):
        audit.record("client", "checked", {"i": i}, datetime.now(UTC))
    assert owner.wait_for_orders(before + 3) > before  # the engine kept writing meanwhile
    report = audit.verify()
    assert report.ok, report
    actors = [row.actor for row in store.list_audit()]
    assert actors.count("client") == 15 and actors.count("engine") >= before + 3

    # nothing the client wrote was lost among the engine's writes
    orders = {o.client_order_id for o in store.list_orders(mode=Mode.PAPER)}
    assert "client-1" in orders and {f"engine-{owner.pid}-{i}" for i in range(before + 3)} <= orders
    store.close()


def test_change_token_follows_writes_of_both_processes(duckdb_store_url: str, owner: Owner) -> None:
    store = remote(duckdb_store_url, owner)
    assert owner.ask("freeze") == "frozen"  # the engine stops writing
    token = store.change_token()
    store.list_orders()
    store.get_control("kill_switch")
    assert store.change_token() == token  # reading changes nothing
    store.append_event("x", {}, datetime.now(UTC))
    after_mine = store.change_token()
    assert after_mine > token
    with pytest.raises(RuntimeError), store.transaction():
        store.append_event("rolled back", {}, datetime.now(UTC))
        raise RuntimeError("abandon")
    assert store.change_token() == after_mine  # a rollback changed nothing
    assert owner.ask("write from-owner") == "ok"
    assert store.change_token() > after_mine  # the owner's own write counts too
    assert owner.ask("thaw") == "thawed"
    store.close()


def test_transactions_of_two_processes_never_lose_an_update(
    duckdb_store_url: str, owner: Owner
) -> None:
    rounds = 60
    store = remote(duckdb_store_url, owner)
    assert owner.ask("freeze") == "frozen"
    owner_done: list[str] = []
    counting = threading.Thread(target=lambda: owner_done.append(owner.ask(f"count_up {rounds}")))
    counting.start()
    for _ in range(rounds):
        with store.transaction():
            store.lock("counter")
            with store.transaction():  # nested: joins the outer block
                value = (store.get_control("counter") or {"n": 0})["n"]
            store.set_control("counter", {"n": value + 1}, datetime.now(UTC), "client")
    counting.join(FAIL_SAFE_S)
    assert owner_done == ["counted"]
    assert store.get_control("counter") == {"n": 2 * rounds}

    with pytest.raises(RuntimeError), store.transaction():
        store.insert_order(order("never-1"))
        with store.transaction():
            store.insert_order(order("never-2"))
        raise RuntimeError("the whole block goes")
    assert store.get_order("never-1") is None and store.get_order("never-2") is None
    with pytest.raises(StoreError, match="transaction rolled back"), store.transaction():
        store.insert_order(order("never-3"))
        with pytest.raises(StoreError):
            store._query("INSERT INTO no_such_table VALUES (1)")
    assert store.get_order("never-3") is None
    with pytest.raises(StoreError, match=r"must be called inside store.transaction\(\)"):
        store.lock("outside")
    assert owner.ask("thaw") == "thawed"
    store.close()


def test_threads_of_the_client_have_separate_transactions(
    duckdb_store_url: str, owner: Owner
) -> None:
    store = remote(duckdb_store_url, owner)
    inside, leave = threading.Event(), threading.Event()
    seen: list[Any] = []

    def holder() -> None:
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_order(order("thread-a"))
            inside.set()
            leave.wait(FAIL_SAFE_S)
            raise RuntimeError("roll it back")

    worker = threading.Thread(target=holder)
    worker.start()
    inside.wait(FAIL_SAFE_S)
    assert not store.in_transaction()  # the other thread's block is not this thread's
    reader = threading.Thread(target=lambda: seen.append(store.get_order("thread-a")))
    reader.start()
    assert owner.ask("busy") == "busy"  # the read waits in the owner for the first block's lock
    leave.set()
    worker.join(FAIL_SAFE_S)
    reader.join(FAIL_SAFE_S)
    assert seen == [None]  # it never saw the other thread's uncommitted row
    store.close()


# -- the CLI while an engine holds the file and its loop is stuck -----------------------------


def test_cli_status_and_kill_work_while_the_engine_holds_the_file_and_hangs(
    duckdb_store_url: str, owner: Owner
) -> None:
    owner.wait_for_orders(3)
    assert owner.ask("freeze") == "frozen"  # a hung strategy: the engine's loop spins
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELIB_")}
    env["TRADELIB_MODE"] = "paper"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args, "--store", duckdb_store_url],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=FAIL_SAFE_S,
        )  # fmt: skip

    status = cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"(served by pid {owner.pid})" in status.stdout
    assert [line.split()[:3] for line in status.stdout.splitlines() if "kill switch" in line] == [
        ["kill", "switch", "off"]
    ]

    store = remote(duckdb_store_url, owner)
    resting = store.list_orders(statuses=_OPEN, mode=Mode.PAPER)
    assert len(resting) >= 3
    killed = cli("kill", "--reason", "drill from another process", "--by", "desk")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert "KILL SWITCH ENGAGED" in killed.stdout
    assert killed.stdout.count("cancel_order") == len(resting)
    assert store.list_orders(statuses=_OPEN, mode=Mode.PAPER) == []
    for before in resting:
        after = store.get_order(before.client_order_id)
        assert after is not None and after.status is OrderStatus.CANCELLED

    status = cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ENGAGED" in status.stdout and "drill from another process" in status.stdout

    assert owner.ask("thaw") == "thawed"  # the engine wakes up and sees the switch
    wait_until(lambda: owner.ask("count").split()[1] == "True")
    assert store.list_orders(statuses=_OPEN, mode=Mode.PAPER) == []
    store.close()


# -- change token on both backends, in one process --------------------------------------------


def test_change_token_moves_only_after_committed_writes(store: Store, store_url: str) -> None:
    token = store.change_token()
    store.list_orders()
    store.list_events()
    assert store.change_token() == token
    with pytest.raises(RuntimeError), store.transaction():
        store.append_event("rolled back", {}, datetime.now(UTC))
        raise RuntimeError("abandon")
    store.append_event("kept", {}, datetime.now(UTC))
    after = token_other_than(store, token)
    assert after == token + 1  # one commit, the rolled-back block sent nothing

    other = open_store(store_url)  # another connection (PostgreSQL) / handle (DuckDB)
    try:
        other.set_control("k", {"v": 1}, datetime.now(UTC), "other")
        later = token_other_than(store, after)
        assert later > after
        if store.backend == "postgresql":  # the listening session dies: the token must move
            listener = store._listener  # type: ignore[attr-defined]
            other._query("SELECT pg_terminate_backend(?)", (listener.info.backend_pid,))
            relistened = token_other_than(store, later)
            assert relistened > later
            other.set_control("k", {"v": 2}, datetime.now(UTC), "other")
            assert token_other_than(store, relistened) == relistened + 1
    finally:
        other.close()
