"""The owner's side of DuckDB store sharing: one Unix socket server per file, on daemon threads.

The first DuckDB store a process opens on a file starts the server (later ones in the same
process share it; the last `close()` stops it). It serves through its own handle of the file.
Each client connection gets a thread and a `Session`: a standalone call is one transaction, as
it would be in the owner; `begin` opens a real transaction in that thread, which holds the
file's lock until `commit` or `rollback`, so the owner's own calls wait exactly as they wait
for a second thread of the owner. A client that disconnects inside a transaction, stays
silent in it longer than TX_IDLE_LIMIT_S or leaves an answer unread that long is rolled back:
no client can freeze the engine.

A plain accept loop rather than socketserver: shutting the listening socket down wakes it at
once, so `close()` does not wait for a poll interval.

The server never needs the owner's asyncio loop: it answers while a strategy hangs or spins
(only code that holds the GIL inside a C extension for long would delay it).
"""

from __future__ import annotations

import atexit
import inspect
import os
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from functools import cache
from typing import Any

from tradelib.errors import StoreError, StoreUnavailable
from tradelib.logs import get_logger
from tradelib.store import share_wire as wire
from tradelib.store.base import Store

log = get_logger(__name__)

TX_IDLE_LIMIT_S = 10.0
_SEND_LIMIT_S = 60.0  # outside a transaction a stuck reader only costs its own thread
_NOT_SERVED = frozenset({"close", "transaction", "migrate"})  # the owner's business alone


@cache
def served_methods() -> frozenset[str]:
    """The `Store` methods a client may call: every public one but close/transaction/migrate."""
    public = {n for n in dir(Store) if not n.startswith("_")}
    return frozenset(n for n in public if inspect.isfunction(getattr(Store, n))) - _NOT_SERVED


class _Rollback(Exception):
    """Thrown into a held transaction to roll it back."""


class Session:
    """One client line to a store, always used from one thread: calls, or one open transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tx: AbstractContextManager[None] | None = None
        self._aborted: str | None = None  # why the owner rolled back a transaction still open

    @property
    def holds_transaction(self) -> bool:
        """True while this session's transaction holds the store (and its lock)."""
        return self._tx is not None

    def handle(self, op: str, body: tuple[Any, ...]) -> Any:
        """Carry out one request and return its result (errors propagate)."""
        if op == "call":
            name, args, kwargs = body
            if name not in served_methods():
                raise StoreError(
                    f"{name!r} is not a store method this owner serves; do both processes run "
                    "the same tradelib?"
                )
            self._check_open()
            return getattr(self.store, name)(*args, **kwargs)
        if op == "execute":
            self._check_open()
            return self.store._query(*body)
        if op == "begin":
            if self._tx is not None or self._aborted is not None:
                raise StoreError("begin inside an open transaction of this line")
            tx = self.store.transaction()
            tx.__enter__()
            self._tx = tx
            return None
        if op == "commit":
            try:
                self._check_open()  # a transaction the owner rolled back cannot commit
            finally:
                self._aborted = None
            held, self._tx = self._tx, None
            if held is None:
                raise StoreError("commit without a transaction")
            held.__exit__(None, None, None)
            return None
        if op == "rollback":
            self._aborted = None
            self.abort()
            return None
        if op == "applied":
            return sorted(self.store._applied_versions())
        raise StoreError(f"unknown store request {op!r}; do both processes run the same tradelib?")

    def abort(self, reason: str | None = None) -> None:
        """Roll back the open transaction, if any; with a reason, the client hears it next."""
        tx, self._tx = self._tx, None
        if tx is None:
            return
        try:
            tx.__exit__(_Rollback, _Rollback(reason or "rollback"), None)
        except Exception as exc:  # the store may be closing; the lock is released either way
            log.warning("rolling back a client's transaction failed", error=str(exc))
        if reason is not None:
            self._aborted = reason

    def _check_open(self) -> None:
        # Until the client ends its block, every call in it fails: run alone, it would commit.
        if self._aborted is not None:
            raise StoreError(
                f"transaction rolled back: {self._aborted}; nothing from this block was saved"
            )


class StoreServer:
    """Serves one DuckDB file of this process on its Unix socket (see the module docstring)."""

    def __init__(self, db_path: str, store: Store) -> None:
        self.db_path = os.path.realpath(db_path)
        self.path = wire.socket_path(self.db_path)
        self.store = store
        self.pid = os.getpid()
        self.instance = uuid.uuid4().hex  # tells clients whether the owner changed
        self._lines: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._stopping = False
        self._busy = 0
        wire.ensure_private_dir(os.path.dirname(self.path))
        self._listener = self._bind()
        self._inode = os.stat(self.path).st_ino
        self._thread = threading.Thread(
            target=self._accept, name="tradelib-store-server", daemon=True
        )
        self._thread.start()

    @property
    def in_flight(self) -> int:
        """Requests being carried out right now (each in its client's thread)."""
        return self._busy

    def _bind(self) -> socket.socket:
        if os.path.lexists(self.path):
            if _answers(self.path):  # we hold the database file, so it cannot be serving it
                log.warning("replacing a store socket that still answers", socket=self.path)
            else:
                log.info("replacing a stale store socket (its process is gone)", socket=self.path)
        temp = f"{self.path}.{self.pid}"
        with suppress(FileNotFoundError):
            os.unlink(temp)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(temp)
            os.chmod(temp, 0o600)
            listener.listen(64)
            os.replace(temp, self.path)  # atomic: clients see the old socket or ours, never none
        except BaseException:
            listener.close()
            with suppress(OSError):
                os.unlink(temp)
            raise
        return listener

    def _accept(self) -> None:
        while True:
            try:
                line, _ = self._listener.accept()
            except OSError as exc:
                if self._stopping:
                    return
                log.error("store socket accept failed", socket=self.path, error=str(exc))
                threading.Event().wait(0.1)  # e.g. out of file descriptors: do not spin
                continue
            with self._guard:
                if self._stopping:
                    line.close()
                    return
                self._lines.add(line)
            threading.Thread(
                target=self._serve, args=(line,), name="tradelib-store-client", daemon=True
            ).start()

    def _serve(self, line: socket.socket) -> None:
        session = Session(self.store)
        try:
            if self._greet(line):
                self._converse(line, session)
        finally:
            session.abort()
            with self._guard:
                self._lines.discard(line)
            line.close()

    def _greet(self, line: socket.socket) -> bool:
        pid, uid = wire.peer_credentials(line)
        if uid is not None and uid != os.getuid():
            log.warning("refused a store client of another user", uid=uid, pid=pid)
            self._refuse(
                line,
                f"refused: the DuckDB store {self.db_path} is served only to processes of uid "
                f"{os.getuid()}, and process {pid} runs as uid {uid}",
            )
            return False
        try:
            op, body = wire.receive(line)
        except (ConnectionError, wire.Undecodable, ValueError, TypeError):
            return False  # a probe that connected and left, or not a tradelib client
        if op != "hello" or tuple(body)[:1] != (wire.PROTOCOL,):
            self._refuse(
                line,
                f"the owner of {self.db_path} (pid {self.pid}) speaks store protocol "
                f"{wire.PROTOCOL} and was greeted with {op!r} {body!r}: run the same tradelib "
                "in both processes",
            )
            return False
        if tuple(body)[1:] != (self.db_path,):
            self._refuse(line, f"this socket serves {self.db_path}, not {body[1]!r}")
            return False
        try:
            wire.send(line, (True, {"pid": self.pid, "instance": self.instance}))
        except ConnectionError:
            return False
        return True

    @staticmethod
    def _refuse(line: socket.socket, message: str) -> None:
        with suppress(ConnectionError):
            wire.send_frame(line, wire.answer(False, wire.describe(StoreError(message))))

    def _converse(self, line: socket.socket, session: Session) -> None:
        while True:
            line.settimeout(TX_IDLE_LIMIT_S if session.holds_transaction else None)
            try:
                request = wire.receive(line)
            except TimeoutError:
                session.abort(
                    f"the client was idle for more than {TX_IDLE_LIMIT_S:g} s inside "
                    f"store.transaction(), so the owner (pid {self.pid}) rolled it back to "
                    "keep its own work going"
                )
                continue
            except wire.Undecodable as exc:
                reply = wire.answer(
                    False,
                    wire.describe(
                        StoreError(
                            f"the owner (pid {self.pid}) cannot read this request ({exc}); run "
                            "the same tradelib in both processes"
                        )
                    ),
                )
            except ConnectionError:
                return  # the client left (or was killed): `_serve` rolls back what it held
            else:
                reply = self._carry_out(session, request)
            # A client that stops reading must not keep a transaction (and the owner) waiting.
            line.settimeout(TX_IDLE_LIMIT_S if session.holds_transaction else _SEND_LIMIT_S)
            try:
                wire.send_frame(line, reply)
            except ConnectionError:
                return  # `_serve` rolls back what it held

    def _carry_out(self, session: Session, request: Any) -> bytes:
        with self._guard:
            self._busy += 1
        try:
            op, body = request
            return wire.answer(True, session.handle(op, tuple(body)))
        except Exception as exc:
            error: Exception = exc
            if self._stopping:
                error = StoreUnavailable(
                    f"the process that owns {self.db_path} (pid {self.pid}) is closing the store"
                )
            return wire.answer(False, wire.describe(error))
        finally:
            with self._guard:
                self._busy -= 1

    def stop(self) -> None:
        """Stop serving: no new clients, open transactions rolled back, own handle closed."""
        if os.getpid() != self.pid:
            return  # a forked child: the socket and the threads belong to the parent
        with self._guard:
            if self._stopping:
                return
            self._stopping = True
            lines = list(self._lines)
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        with suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:  # never remove a successor's socket
                os.unlink(self.path)
        for line in lines:
            with suppress(OSError):
                line.shutdown(socket.SHUT_RDWR)  # their threads roll back and end
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.store.close()  # waits for a client call still running to finish

    def forget(self) -> None:
        """In a forked child: close our copies of the sockets (never shut the parent's down)."""
        self._listener.close()
        for line in list(self._lines):
            line.close()


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


_SERVERS: dict[str, tuple[StoreServer, int]] = {}
_REGISTRY = threading.Lock()


def serve(db_path: str, open_private: Callable[[], Store]) -> bool:
    """Count one more store of this process on `db_path`; the first one starts the server.

    False when it cannot serve (the owner keeps working; other processes get StoreLocked).
    """
    key = os.path.realpath(db_path)
    with _REGISTRY:
        entry = _SERVERS.get(key)
        if entry is not None:
            server, count = entry
            if server.pid != os.getpid():
                log.warning("a forked child does not serve its parent's DuckDB store", path=key)
                return False
            _SERVERS[key] = (server, count + 1)
            return True
        store = open_private()
        try:
            server = StoreServer(key, store)
        except (OSError, StoreError) as exc:
            store.close()
            log.error(
                "cannot serve the DuckDB store to other processes; they will get StoreLocked",
                path=key,
                error=str(exc),
            )
            return False
        _SERVERS[key] = (server, 1)
        return True


def unserve(db_path: str) -> None:
    """Count one store of this process on `db_path` less; the last one stops the server."""
    key = os.path.realpath(db_path)
    with _REGISTRY:
        entry = _SERVERS.get(key)
        if entry is None:
            return
        server, count = entry
        if count > 1 and server.pid == os.getpid():
            _SERVERS[key] = (server, count - 1)
            return
        del _SERVERS[key]
    server.stop()


def unserve_soon(db_path: str) -> None:
    """`unserve` on a thread of its own: for garbage collection, which may run anywhere
    (even inside `serve` holding the registry lock)."""
    threading.Thread(target=unserve, args=(db_path,), name="tradelib-store-unserve").start()


def server_for(db_path: str) -> StoreServer | None:
    """This process's server of `db_path`, if it serves it."""
    with _REGISTRY:
        entry = _SERVERS.get(os.path.realpath(db_path))
    return entry[0] if entry is not None and entry[0].pid == os.getpid() else None


def _forget_after_fork() -> None:
    """A forked child must not keep its parent's sockets open: clients would wait on them."""
    for server, _ in list(_SERVERS.values()):  # no lock: the child has one thread
        server.forget()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _stop_all() -> None:
    """Remove this process's sockets at exit, so nobody mistakes them for a live owner."""
    with _REGISTRY:
        servers = [server for server, _ in _SERVERS.values()]
        _SERVERS.clear()
    for server in servers:
        server.stop()
