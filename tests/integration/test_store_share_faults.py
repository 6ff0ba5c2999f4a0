"""Store sharing when things go wrong: clients and owners that die, freeze or stop reading,
holders that do not serve, other users, stale sockets, forks, schema mismatches.

Real processes, real DuckDB, real sockets; work sized by events, timeouts only as fail-safes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from share_fixtures import (
    FAIL_SAFE_S,
    ROOT,
    Owner,
    client_script,
    remote,
    wait_until,
)
from share_owner import order

from tradelib.domain import OrderStatus
from tradelib.errors import (
    StoreError,
    StoreLocked,
    StoreUnavailable,
)
from tradelib.store import DuckDBStore, RemoteStore, open_store, share_server
from tradelib.store import share_wire as wire
from tradelib.store.duckdb_store import _path_from_url
from tradelib.store.migrations import load_migrations

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # runs as another user (the venv's base may be unreadable)


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
        [*client_script(_DOOMED), url],
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
        store = remote(duckdb_store_url, owner)
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
        store = remote(duckdb_store_url, owner)
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
        store = remote(duckdb_store_url, owner)
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
    store = remote(duckdb_store_url, owner)
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
        [*client_script("print(store.url)\n"), duckdb_store_url],
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
    store = remote(duckdb_store_url, owner)
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
    store = remote(duckdb_store_url, first)
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
        store = remote(duckdb_store_url, owner)
        assert store.list_orders() is not None
        store.close()
    finally:
        owner.kill(tidy=False)
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
    # stopped on a thread of its own: deregistered first, the socket removed just after
    wait_until(lambda: share_server.server_for(path) is None and not os.path.exists(sock_path))

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
            [*client_script("print(len(store.list_orders()))\n"), duckdb_store_url],
            cwd=ROOT, capture_output=True, text=True, timeout=FAIL_SAFE_S,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["RemoteStore", "0"]


def test_a_forked_child_of_a_client_leaves_the_parents_transaction_alone(
    duckdb_store_url: str, owner: Owner
) -> None:
    import multiprocessing

    store = remote(duckdb_store_url, owner)
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
