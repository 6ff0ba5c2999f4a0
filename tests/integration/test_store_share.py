"""Several processes on one DuckDB file: the holder serves it, the others use it through it.

Real processes, real DuckDB, real sockets. An owner process (share_owner.py) holds the file and
runs an engine-like loop that keeps writing orders and audit entries; this process, the real
`tradelib` CLI and short client scripts use the store through `open_store` meanwhile. Work is
sized by events (answers of the owner, rows in the store); timeouts are fail-safes only.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from share_owner import order

from tradelib.audit import AuditLog
from tradelib.domain import Mode, OrderStatus
from tradelib.errors import (
    DataError,
    DuplicateOrder,
    IllegalTransition,
    StoreError,
    StoreLocked,
    StoreUnavailable,
)
from tradelib.store import DuckDBStore, RemoteStore, Store, open_store, share_server
from tradelib.store import share_wire as wire
from tradelib.store.duckdb_store import _path_from_url
from tradelib.store.migrations import load_migrations

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLI = [sys.executable, "-c", "from tradelib.cli import app; app()"]  # the `tradelib` command
FAIL_SAFE_S = 120.0  # against hangs only; nothing here measures time
_OPEN = [s for s in OrderStatus if not s.is_terminal]
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # runs as another user (the venv's base may be unreadable)


class Owner:
    """share_owner.py in a subprocess: holds and serves the file, answers commands."""

    def __init__(self, url: str, idle_limit: float | None = None):
        args = [sys.executable, str(HERE / "share_owner.py"), url]
        if idle_limit is not None:
            args.append(str(idle_limit))
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.answer()
        assert ready == f"ready {self.proc.pid}", ready
        self.pid = self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(">> "):
                self._answers.put(line[3:].rstrip("\n"))
        self._answers.put(None)

    def answer(self) -> str:
        """The next answer line (fails when the owner died without one)."""
        line = self._answers.get(timeout=FAIL_SAFE_S)
        assert line is not None, f"the owner exited with {self.proc.wait(FAIL_SAFE_S)}"
        return line

    def ask(self, command: str) -> str:
        """Send one command and return its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def wait_for_orders(self, n: int) -> int:
        """Ask until the engine has written at least `n` orders; return how many it has."""
        while True:
            written = int(self.ask("count").split()[0])
            if written >= n:
                return written
            threading.Event().wait(0.05)

    def exit(self) -> None:
        """Close the store and end the process."""
        assert self.ask("exit") == "closed"
        assert self.proc.wait(FAIL_SAFE_S) == 0

    def kill(self) -> None:
        """SIGKILL: no close, no atexit, the socket file stays behind."""
        self.proc.kill()
        self.proc.wait(FAIL_SAFE_S)


@pytest.fixture
def owner(duckdb_store_url: str) -> Iterator[Owner]:
    """An engine-like process holding a fresh DuckDB file."""
    held = Owner(duckdb_store_url)
    try:
        yield held
    finally:
        if held.proc.poll() is None:
            held.kill()


def _client_script(body: str) -> list[str]:
    prelude = (
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from share_owner import order\n"
        "from tradelib.store import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "print(type(store).__name__, flush=True)\n"
    )
    return [sys.executable, "-c", prelude + body]


def _remote(url: str, owner: Owner) -> RemoteStore:
    store = open_store(url)
    assert isinstance(store, RemoteStore), store
    assert store.owner_pid == owner.pid
    return store


def _token_other_than(store: Store, token: int) -> int:
    """The store's change token once it differs from `token` (PostgreSQL delivers a moment late)."""
    return int(_wait_until(lambda: store.change_token() != token and store.change_token()))


def _wait_until(check: Any) -> Any:
    """Poll `check()` until it returns something truthy (a fail-safe bounds the wait)."""
    deadline = datetime.now(UTC) + timedelta(seconds=FAIL_SAFE_S)
    while not (result := check()):
        assert datetime.now(UTC) < deadline, "condition never became true"
        threading.Event().wait(0.02)
    return result


# -- one process owns, another reads and writes through it ----------------------------------


def test_a_second_process_uses_every_kind_of_store_call_while_the_owner_writes(
    duckdb_store_url: str, owner: Owner
) -> None:
    owner.wait_for_orders(3)
    store = _remote(duckdb_store_url, owner)
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
    store = _remote(duckdb_store_url, owner)
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
    store = _remote(duckdb_store_url, owner)
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
    store = _remote(duckdb_store_url, owner)
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

    store = _remote(duckdb_store_url, owner)
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
    _wait_until(lambda: owner.ask("count").split()[1] == "True")
    assert store.list_orders(statuses=_OPEN, mode=Mode.PAPER) == []
    store.close()


# -- clients that die or freeze inside a transaction ----------------------------------------

_DOOMED = """
with store.transaction():
    store.insert_order(order("doomed"))
    print("inside", flush=True)
    sys.stdin.readline()
    try:
        store.insert_order(order("doomed-2"))
        print("second insert ok", flush=True)
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        raise
"""


def _doomed_client(url: str) -> subprocess.Popen[str]:
    client = subprocess.Popen(
        [*_client_script(_DOOMED), url],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "RemoteStore"
    assert client.stdout.readline().strip() == "inside"
    return client


def test_a_client_killed_inside_a_transaction_does_not_block_the_owner(
    duckdb_store_url: str,
) -> None:
    owner = Owner(duckdb_store_url, idle_limit=3600)  # only the hang-up can release the lock
    try:
        client = _doomed_client(duckdb_store_url)
        client.kill()
        client.wait(FAIL_SAFE_S)
        assert owner.ask("write after-kill") == "ok"  # would wait forever if still locked
        store = _remote(duckdb_store_url, owner)
        assert store.get_order("doomed") is None
        assert store.get_order("after-kill") is not None
        store.close()
    finally:
        owner.kill()


def test_a_frozen_client_is_rolled_back_after_the_idle_bound(duckdb_store_url: str) -> None:
    owner = Owner(duckdb_store_url, idle_limit=5)
    try:
        client = _doomed_client(duckdb_store_url)
        os.kill(client.pid, signal.SIGSTOP)
        assert owner.ask("write after-freeze") == "ok"  # the owner is free again
        store = _remote(duckdb_store_url, owner)
        assert store.get_order("doomed") is None
        os.kill(client.pid, signal.SIGCONT)
        out, _ = client.communicate("go\n", timeout=FAIL_SAFE_S)
        assert (
            "error: StoreError: transaction rolled back: the client was idle for more than 5 s "
            "inside store.transaction()"
        ) in out
        assert store.get_order("doomed-2") is None
        store.close()
    finally:
        owner.kill()


def test_a_client_that_stops_reading_inside_a_transaction_is_rolled_back(
    duckdb_store_url: str,
) -> None:
    owner = Owner(duckdb_store_url, idle_limit=3)
    try:
        store = _remote(duckdb_store_url, owner)
        times = pd.date_range("2020-01-01", periods=50_000, freq="1min", tz="UTC")
        store.write_candles(
            "binance",
            pd.DataFrame({"open_time": times, "open": 1.0, "high": 2.0, "low": 0.5,
                          "close": 1.5, "volume": 3.0}),
            symbol="ARB/USDT", timeframe="1m",
        )  # fmt: skip
        db_path = _path_from_url(duckdb_store_url)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(wire.socket_path(db_path))
            wire.send(sock, ("hello", (wire.PROTOCOL, os.path.realpath(db_path))))
            assert wire.receive(sock)[0] is True
            wire.send(sock, ("begin", ()))
            assert wire.receive(sock) == (True, None)
            wire.send(sock, ("call", ("append_event", ("unread", {}, datetime.now(UTC)), {})))
            assert wire.receive(sock)[0] is True
            # ~2 MB of answer, far more than the socket buffers: the owner's send blocks
            wire.send(sock, ("call", ("read_candles", ("binance", "ARB/USDT", "1m"), {})))
            assert owner.ask("write after-stall") == "ok"  # the stalled transaction was undone
        assert "unread" not in [e.kind for e in store.list_events()]
        store.close()
    finally:
        owner.kill()


# -- the owner goes away ----------------------------------------------------------------------


def test_owner_exit_inside_a_transaction_is_a_clear_error_then_this_process_takes_over(
    duckdb_store_url: str, owner: Owner
) -> None:
    store = _remote(duckdb_store_url, owner)
    store.insert_order(order("kept"))
    with pytest.raises(StoreUnavailable) as lost, store.transaction():
        store.insert_order(order("lost-1"))
        owner.exit()
        store.insert_order(order("lost-2"))
    message = str(lost.value)
    assert f"process {owner.pid}, which served the DuckDB store" in message
    assert "nothing of this block was saved" in message

    # Between transactions the store reconnects: nobody holds the file, so this process does.
    assert store.get_order("kept") is not None
    assert store.get_order("lost-1") is None
    assert store.owner_pid is None and "served by" not in store.url
    assert store.migrate() == []  # migrating the file it now owns applies nothing new
    helper = subprocess.run(
        [*_client_script("print(store.url)\n"), duckdb_store_url],
        cwd=ROOT, capture_output=True, text=True, timeout=FAIL_SAFE_S,
    )  # fmt: skip
    assert helper.returncode == 0, helper.stderr
    assert helper.stdout.split("\n")[:2] == [
        "RemoteStore",
        f"{store.url} (served by pid {os.getpid()})",
    ]
    store.close()
    assert share_server.server_for(_path_from_url(duckdb_store_url)) is None


def test_owner_killed_during_a_call_says_the_outcome_is_unknown(
    duckdb_store_url: str, owner: Owner
) -> None:
    store = _remote(duckdb_store_url, owner)
    store.insert_order(order("x"))
    assert owner.ask("hold") == "holding"  # the owner's own transaction holds the file lock
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(store.update_order(order("x", OrderStatus.CANCELLED)))
        except StoreUnavailable as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert owner.ask("busy") == "busy"  # the owner is carrying out our call (waiting to lock)
    owner.kill()
    caller.join(FAIL_SAFE_S)
    assert isinstance(outcome[0], StoreUnavailable), outcome
    assert f"process {owner.pid}" in str(outcome[0])
    assert "during store.update_order(): whether it took effect is unknown" in str(outcome[0])

    again = store.get_order("x")  # the next call reconnects: the file is free, we own it now
    assert again is not None and again.status is OrderStatus.OPEN
    assert "held" not in [e.kind for e in store.list_events()]  # the dead owner's block is gone
    store.close()


def test_a_new_owner_is_used_transparently_between_calls(duckdb_store_url: str) -> None:
    first = Owner(duckdb_store_url)
    store = _remote(duckdb_store_url, first)
    assert first.ask("write one") == "ok"
    first.exit()
    second = Owner(duckdb_store_url)  # took the file before this process asked again
    try:
        assert store.get_order("one") is not None
        assert store.owner_pid == second.pid and f"pid {second.pid}" in store.url
        store.close()
    finally:
        second.kill()


_PLAIN_HOLDER = """
import sys
from tradelib.store import open_store
store = open_store(sys.argv[1], migrate=sys.argv[2] == "migrate")
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def _plain_holder(url: str, migrate: bool) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _PLAIN_HOLDER, url, "migrate" if migrate else "no"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    while holder.stdout.readline().strip() != "ready":
        assert holder.poll() is None, "the holder died"
    return holder


def test_a_client_never_migrates_and_refuses_a_schema_it_does_not_match(
    duckdb_store_url: str,
) -> None:
    shipped = [m.version for m in load_migrations()]
    holder = _plain_holder(duckdb_store_url, migrate=False)  # e.g. `tradelib db status`
    try:
        with pytest.raises(
            StoreError, match=rf"lacks schema migrations {re.escape(str(shipped))}.*{holder.pid}"
        ):
            open_store(duckdb_store_url)
        with open_store(duckdb_store_url, migrate=False) as looking:
            assert isinstance(looking, RemoteStore)
            assert looking.pending_migrations() == shipped and looking.schema_version() == 0
            assert looking.health()["ok"] is False
            with pytest.raises(StoreError, match="lacks schema migrations"):
                looking.migrate()
            assert looking.pending_migrations() == shipped  # nothing was applied
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(FAIL_SAFE_S)

    holder = _plain_holder(duckdb_store_url, migrate=True)
    try:
        with open_store(duckdb_store_url) as store:
            assert store.schema_version() == max(shipped)
            store._query(  # a newer tradelib migrated the file further
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'x', ?)",
                (datetime.now(UTC),),
            )
        with pytest.raises(StoreError, match=r"migrations \[999\] that this tradelib does not"):
            open_store(duckdb_store_url)
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(FAIL_SAFE_S)


# -- who may use a file, and stale or foreign holders ----------------------------------------


def _duckdb_holder(path: str) -> subprocess.Popen[str]:
    """A process that holds the file with plain DuckDB (no tradelib: it serves nobody)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_holder_that_does_not_serve_the_file_is_named_in_store_locked(
    duckdb_store_url: str,
) -> None:
    holder = _duckdb_holder(_path_from_url(duckdb_store_url))
    try:
        with pytest.raises(StoreLocked) as locked:
            open_store(duckdb_store_url)
    finally:
        holder.kill()
        holder.wait(FAIL_SAFE_S)
    message = str(locked.value)
    assert f"in use by process {holder.pid} (" in message
    assert "does not serve it to this process" in message and "nothing listens on" in message
    assert "TRADELIB_STORE_URL=postgresql://" in message


def test_a_stale_socket_is_replaced_by_the_next_owner(duckdb_store_url: str) -> None:
    path = wire.socket_path(_path_from_url(duckdb_store_url))
    wire.ensure_private_dir(os.path.dirname(path))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # what a killed owner leaves behind: a socket file nobody listens on
    dead.close()
    with pytest.raises(ConnectionRefusedError), socket.socket(socket.AF_UNIX) as probe:
        probe.connect(path)
    owner = Owner(duckdb_store_url)
    try:
        store = _remote(duckdb_store_url, owner)
        assert store.list_orders() is not None
        store.close()
    finally:
        owner.kill()
    assert os.path.exists(path)  # SIGKILL left it stale again...
    with open_store(duckdb_store_url) as mine:  # ...and the next owner replaces it again
        assert isinstance(mine, DuckDBStore)
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(path)


_NOBODY_CLIENT = """
import pickle, socket, struct, sys
with socket.socket(socket.AF_UNIX) as sock:
    sock.settimeout(120)
    sock.connect(sys.argv[1])
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
(size,) = struct.unpack("!Q", data[:8])
print(pickle.loads(data[8 : 8 + size]))
"""

_NOBODY_SERVER = """
import socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
print("listening", flush=True)
while True:
    server.accept()
"""


def _as_nobody(script: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SYSTEM_PYTHON, "-c", script, *args],
        user=NOBODY, group=NOBODY, extra_groups=[], text=True, **popen,
    )  # fmt: skip


def _require_root_and_system_python() -> None:
    if os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(
            "OTHER-UID TEST SKIPPED: it runs a process as uid 65534 (nobody), which needs root "
            f"and {SYSTEM_PYTHON}; the peer uid checks were NOT exercised in this run"
        )


def test_the_owner_refuses_a_process_of_another_user(
    duckdb_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_root_and_system_python()
    private = tempfile.mkdtemp(prefix="tl-share-uid-")
    monkeypatch.setattr(wire, "runtime_dir", lambda: private)
    try:
        with open_store(duckdb_store_url) as store:
            assert isinstance(store, DuckDBStore)
            path = wire.socket_path(_path_from_url(duckdb_store_url))
            # Open the file-system gates on purpose: only the peer uid check is left.
            os.chmod(private, 0o711)
            os.chmod(path, 0o666)
            nobody = _as_nobody(_NOBODY_CLIENT, path, stdout=subprocess.PIPE)
            out, _ = nobody.communicate(timeout=FAIL_SAFE_S)
            assert nobody.returncode == 0
            assert "(False, {" in out
            assert f"served only to processes of uid 0, and process {nobody.pid}" in out
            assert f"runs as uid {NOBODY}" in out
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_a_client_refuses_a_socket_served_by_another_user(
    duckdb_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_root_and_system_python()
    theirs = tempfile.mkdtemp(prefix="tl-share-uid-")
    os.chown(theirs, NOBODY, NOBODY)
    monkeypatch.setattr(wire, "runtime_dir", lambda: theirs)
    db_path = _path_from_url(duckdb_store_url)
    fake = _as_nobody(_NOBODY_SERVER, wire.socket_path(db_path), stdout=subprocess.PIPE)
    holder = _duckdb_holder(db_path)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "listening"
        with pytest.raises(StoreLocked, match=f"is served by uid {NOBODY}, not by this user"):
            open_store(duckdb_store_url)
    finally:
        for proc in (fake, holder):
            proc.kill()
            proc.wait(FAIL_SAFE_S)
        shutil.rmtree(theirs, ignore_errors=True)


# -- the server's life inside the owner -------------------------------------------------------


def test_the_last_store_of_a_file_in_a_process_stops_serving_it(duckdb_store_url: str) -> None:
    path = _path_from_url(duckdb_store_url)
    sock_path = wire.socket_path(path)
    first = open_store(duckdb_store_url)
    second = open_store(duckdb_store_url)
    server = share_server.server_for(path)
    assert server is not None and os.path.exists(sock_path)
    assert (os.stat(sock_path).st_mode & 0o777) == 0o600
    assert (os.stat(os.path.dirname(sock_path)).st_mode & 0o777) == 0o700
    first.close()
    assert share_server.server_for(path) is server  # the second store still serves it
    second.close()
    assert share_server.server_for(path) is None and not os.path.exists(sock_path)

    dropped = open_store(duckdb_store_url)  # a store nobody closes, garbage-collected
    assert share_server.server_for(path) is not None
    del dropped
    import gc

    gc.collect()
    assert share_server.server_for(path) is None and not os.path.exists(sock_path)

    memory = open_store("duckdb:///:memory:")
    assert isinstance(memory, DuckDBStore) and share_server.server_for(":memory:") is None
    memory.close()


def test_a_forked_child_leaves_the_parents_server_alone(duckdb_store_url: str) -> None:
    import multiprocessing

    path = _path_from_url(duckdb_store_url)
    with open_store(duckdb_store_url) as store:
        ctx = multiprocessing.get_context("fork")
        child = ctx.Process(target=store.close)
        child.start()
        child.join(FAIL_SAFE_S)
        assert child.exitcode == 0
        assert share_server.server_for(path) is not None
        result = subprocess.run(
            [*_client_script("print(len(store.list_orders()))\n"), duckdb_store_url],
            cwd=ROOT, capture_output=True, text=True, timeout=FAIL_SAFE_S,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["RemoteStore", "0"]


def test_a_forked_child_of_a_client_leaves_the_parents_transaction_alone(
    duckdb_store_url: str, owner: Owner
) -> None:
    import multiprocessing

    store = _remote(duckdb_store_url, owner)
    with store.transaction():
        store.insert_order(order("before-fork"))
        child = multiprocessing.get_context("fork").Process(target=store.close)
        child.start()
        child.join(FAIL_SAFE_S)
        assert child.exitcode == 0
        store.insert_order(order("after-fork"))  # the parent's line and transaction live on
    assert store.get_order("before-fork") is not None
    assert store.get_order("after-fork") is not None
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
    after = _token_other_than(store, token)
    assert after == token + 1  # one commit, the rolled-back block sent nothing

    other = open_store(store_url)  # another connection (PostgreSQL) / handle (DuckDB)
    try:
        other.set_control("k", {"v": 1}, datetime.now(UTC), "other")
        later = _token_other_than(store, after)
        assert later > after
        if store.backend == "postgresql":  # the listening session dies: the token must move
            listener = store._listener  # type: ignore[attr-defined]
            other._query("SELECT pg_terminate_backend(?)", (listener.info.backend_pid,))
            relistened = _token_other_than(store, later)
            assert relistened > later
            other.set_control("k", {"v": 2}, datetime.now(UTC), "other")
            assert _token_other_than(store, relistened) == relistened + 1
    finally:
        other.close()
