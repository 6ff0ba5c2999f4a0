"""`RemoteStore`: the store of a process using a DuckDB file that another local process owns.

`open_store("duckdb:///file")` opens the file when it can. When another process holds it and
serves it (every tradelib process does, see tradelib.store.share_server), it returns a
`RemoteStore` whose public methods run in the owner, one round trip each; `transaction()` runs
a real transaction there (nested blocks join it, `lock()` works inside it). Each thread of this
process has its own connection, so threads' transactions stay apart as with PostgreSQL.

When the owner goes away (exits, is killed, closes the store):
- a call it had received and not answered raises `StoreUnavailable` (temporary): whether it
  took effect is unknown, so it is never repeated behind the caller's back;
- inside `transaction()`, the block fails with `StoreUnavailable`: nothing of it was saved
  (unless it was the commit itself that went unanswered; the message then says so);
- between transactions the next call reconnects on its own: to the new owner when another
  process took the file, or, when nobody holds it, this process opens the file and becomes the
  owner (serving the others from then on). A request that never reached the owner is sent again.

Schema: a remote store never migrates the owner's file. `open_store` (migrate=True) refuses an
owner whose schema has migrations this tradelib does not know, or lacks ones it needs.
"""

from __future__ import annotations

import abc
import functools
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, ItemsView, Iterator, KeysView, Sequence, ValuesView
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from tradelib.errors import DataError, StoreError, StoreLocked, StoreUnavailable
from tradelib.logs import get_logger
from tradelib.store import share_wire as wire
from tradelib.store.base import Store
from tradelib.store.core import Row, StoreCore, redact_url, register_backend
from tradelib.store.duckdb_store import MEMORY, DuckDBStore, _path_from_url
from tradelib.store.migrations import load_migrations
from tradelib.store.share_server import Session, served_methods

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

LOCATE_S = 3.0  # how long a holder may take to start (or stop) serving before StoreLocked
HELLO_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 60.0  # a fail-safe against a frozen owner, far above any store call
_RETRY_EVERY_S = 0.05
_WHAT = {
    "execute": "a SQL statement",
    "begin": "the start of a transaction",
    "applied": "a schema check",
}


class _NotServing(Exception):
    """Nobody answers on the file's socket (the reason says why)."""


class _Line:
    """A greeted connection to the owner of a DuckDB file."""

    def __init__(self, sock: socket.socket, pid: int, instance: str) -> None:
        self.sock = sock
        self.pid = pid
        self.instance = instance  # the serving process's server, so a new owner is noticed
        self._opened_by = os.getpid()
        self._close = weakref.finalize(self, sock.close)  # a thread that ends drops its line
        _LINES.add(self)

    @classmethod
    def open(cls, sock_path: str, db_path: str) -> _Line:
        """Connect and greet; _NotServing when nobody (of this user) answers there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(HELLO_TIMEOUT_S)
        try:
            pid = cls._connect(sock, sock_path)
            try:
                wire.send(sock, ("hello", (wire.PROTOCOL, os.path.realpath(db_path))))
                ok, value = wire.receive(sock)
            except TimeoutError:
                raise _NotServing(
                    f"process {pid} accepted the connection on {sock_path} but did not answer "
                    f"within {HELLO_TIMEOUT_S:g} s (is it stopped?)"
                ) from None
            except ConnectionError as exc:
                raise _NotServing(f"process {pid} closed the connection ({exc})") from None
            except wire.Undecodable as exc:
                raise StoreError(
                    f"process {pid} serves the store but its greeting does not decode ({exc}); "
                    "run the same tradelib in both processes"
                ) from None
            if not ok:
                raise wire.rebuild(value)
            return cls(sock, pid if pid is not None else int(value["pid"]), value["instance"])
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _connect(sock: socket.socket, sock_path: str) -> int | None:
        try:
            sock.connect(sock_path)
        except FileNotFoundError:
            raise _NotServing(f"nothing listens on {sock_path}") from None
        except ConnectionRefusedError:
            raise _NotServing(f"{sock_path} is stale: the process that made it is gone") from None
        except TimeoutError:
            raise _NotServing(f"{sock_path} takes no connections (owner stopped?)") from None
        except OSError as exc:
            raise _NotServing(f"cannot connect to {sock_path}: {exc}") from None
        pid, uid = wire.peer_credentials(sock)
        if uid is not None and uid != os.getuid():
            raise _NotServing(f"{sock_path} is served by uid {uid}, not by this user")
        return pid

    def request(self, payload: bytes) -> tuple[bool, Any]:
        """Send one request and wait for its answer (NotDelivered, PeerGone, TimeoutError)."""
        self.sock.settimeout(CALL_TIMEOUT_S)
        wire.send_frame(self.sock, payload)
        answer: tuple[bool, Any] = wire.receive(self.sock)
        return answer

    def close(self) -> None:
        """Hang up (the owner rolls back a transaction this line still held)."""
        if os.getpid() == self._opened_by:  # a forked child must not cut its parent's line
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self._close()


_LINES: weakref.WeakSet[_Line] = weakref.WeakSet()


def _close_after_fork() -> None:
    """A forked child drops its copies of the parent's lines: the owner sees the parent alone."""
    for line in list(_LINES):
        line.close()


os.register_at_fork(after_in_child=_close_after_fork)


def locate(url: str, owner_first: bool) -> DuckDBStore | _Line:
    """Open the DuckDB file of `url`, or connect to the process that serves it.

    Retries for LOCATE_S while the holder may be starting (or stopping) to serve it, then
    raises StoreLocked saying which process holds the file and why it cannot be used.
    """
    path = _path_from_url(url)
    sock_path = wire.socket_path(path)
    locked: StoreLocked | None = None
    why: _NotServing | None = None

    def own() -> DuckDBStore:
        return DuckDBStore(url)

    def join() -> _Line:
        return _Line.open(sock_path, path)

    attempts: tuple[Callable[[], DuckDBStore | _Line], ...] = (
        (own, join) if owner_first else (join, own)
    )
    deadline = time.monotonic() + LOCATE_S
    while True:
        for attempt in attempts:
            try:
                return attempt()
            except StoreLocked as exc:
                locked = exc
            except _NotServing as exc:
                why = exc
        if time.monotonic() >= deadline:
            holder = locked.holder if locked else "another process"
            raise StoreLocked(
                f"the DuckDB store {path} is in use by {holder}, which does not serve it to "
                f"this process ({why}). Stop that process and try again: a tradelib process "
                "holding the file serves it to the others. Processes on several machines need "
                "PostgreSQL (TRADELIB_STORE_URL=postgresql://user@host:5432/db)",
                holder,
            )
        time.sleep(_RETRY_EVERY_S)


def open_duckdb(url: str) -> StoreCore:
    """The duckdb:// backend of open_store: own the file, or use the process that owns it."""
    if _path_from_url(url) == MEMORY:
        return DuckDBStore(url)
    found = locate(url, owner_first=True)
    return found if isinstance(found, DuckDBStore) else RemoteStore(url, found)


class _Channel:
    """One thread's way to the store: a line to the owner, or a session on this process's own
    handle once it owns the file."""

    def __init__(self, store: RemoteStore) -> None:
        self.store = store
        self.line: _Line | None = None
        self.session: Session | None = None
        self.in_tx = False
        self.lost: str | None = None  # why the open transaction is gone

    def request(self, op: str, *body: Any) -> Any:
        """Carry out one request where the store is; see the module docstring for failures."""
        if op == "rollback" and not self.in_tx:
            return None  # nothing is open (the commit failed, or the owner rolled it back)
        if self.in_tx and self.session is None and self.line is None:
            if self.lost is None:
                self.lost = (
                    "the connection to the store's owner was dropped inside store.transaction() "
                    "(interrupted?): nothing of this block was saved"
                )
            return self._after_loss(op)
        if self.session is not None:
            return self._local(op, body)
        try:
            payload = wire.encode((op, body))
        except Exception as exc:  # nothing was sent
            raise DataError(
                f"{self._what(op, body)}: the arguments cannot be sent to the process that "
                f"serves the store ({type(exc).__name__}: {wire.message_of(exc)})"
            ) from None
        if self.line is None and not self._reach():
            return self._local(op, body)
        assert self.line is not None
        try:
            ok, value = self.line.request(payload)
        except wire.NotDelivered:
            self.drop()
            if self.in_tx:
                self.lost = self._gone(op, body, sent=False)
                return self._after_loss(op)
            if not self._reach():  # never delivered: safe to send to whoever holds it now
                return self._local(op, body)
            assert self.line is not None
            try:
                ok, value = self.line.request(payload)
            except (ConnectionError, TimeoutError) as exc:
                raise self._failed(op, body, exc) from None
        except wire.Undecodable as exc:
            message = (
                f"the answer to {self._what(op, body)} from process {self.line.pid} does not "
                f"decode ({exc}); run the same tradelib in both processes"
            )
            self.drop()  # hanging up rolls back whatever the owner holds for this line
            if self.in_tx:
                self.lost = f"{message}; nothing of this block was saved"
            raise StoreError(message) from None
        except (ConnectionError, TimeoutError) as exc:
            raise self._failed(op, body, exc) from None
        except BaseException:
            self.drop()  # e.g. KeyboardInterrupt: an answer may still come, out of step
            raise
        self._track(op, ok)
        if ok:
            return value
        raise wire.rebuild(value)

    def _local(self, op: str, body: tuple[Any, ...]) -> Any:
        assert self.session is not None
        try:
            value = self.session.handle(op, body)
        except BaseException:
            self._track(op, ok=False)
            raise
        self._track(op, ok=True)
        return value

    def _track(self, op: str, ok: bool) -> None:
        if op == "begin":
            self.in_tx = ok
        elif op in ("commit", "rollback"):
            self.in_tx, self.lost = False, None

    def _reach(self) -> bool:
        """Connect this channel to the store's current home; False when that is this process."""
        found = self.store._locate()
        if isinstance(found, _Line):
            self.line = found
            return True
        self.session = Session(found)
        return False

    def _failed(self, op: str, body: tuple[Any, ...], exc: BaseException) -> StoreUnavailable:
        pid = self.line.pid if self.line else self.store._owner_pid
        self.drop()  # hanging up rolls back whatever the owner holds for this line
        if isinstance(exc, TimeoutError):
            message = (
                f"process {pid}, which serves {self.store._path}, did not answer "
                f"{self._what(op, body)} within {CALL_TIMEOUT_S:g} s (stopped, or stuck?); "
                "whether it took effect is unknown: check before repeating it"
            )
        else:
            message = self._gone(op, body, sent=True)
        if self.in_tx:
            self.lost = message
        return StoreUnavailable(message)

    def _gone(self, op: str, body: tuple[Any, ...], sent: bool) -> str:
        pid, path = self.store._owner_pid, self.store._path
        start = f"process {pid}, which served the DuckDB store {path}, went away"
        again = (
            "the next call reconnects (to the process that holds the file now, or this "
            "process opens it)"
        )
        if op == "commit":
            return (
                f"{start} during the commit: whether the transaction was saved is unknown; "
                f"check before repeating it ({again})"
            )
        if self.in_tx or op == "begin":
            return f"{start} inside store.transaction(): nothing of this block was saved; {again}"
        if not sent:
            return f"{start}; {again}"
        return (
            f"{start} during {self._what(op, body)}: whether it took effect is unknown; check "
            f"before repeating it ({again})"
        )

    def _after_loss(self, op: str) -> Any:
        if op == "rollback":
            self.in_tx, self.lost = False, None
            return None
        message = self.lost or "the transaction was lost"
        if op == "commit":
            self.in_tx, self.lost = False, None
        raise StoreUnavailable(message)

    @staticmethod
    def _what(op: str, body: tuple[Any, ...]) -> str:
        return f"store.{body[0]}()" if op == "call" else _WHAT.get(op, op)

    def drop(self) -> None:
        """Forget the line (hanging up); the next request outside a transaction reconnects."""
        if self.line is not None:
            self.line.close()
            self.line = None


class RemoteStore(Store):
    """A DuckDB file store served by another local process (see the module docstring)."""

    backend = "duckdb"
    dialect = DuckDBStore.dialect

    def __init__(self, url: str, line: _Line) -> None:
        super().__init__(url)
        self._path = _path_from_url(url)
        self._owner_pid = line.pid
        self._owner_instance = line.instance
        self._local: DuckDBStore | None = None
        self._migrated = False
        self._guard = threading.RLock()
        self._mine = threading.local()
        self._channels: weakref.WeakSet[_Channel] = weakref.WeakSet()
        self._channel().line = line

    @property
    def url(self) -> str:
        """The store URL, saying which process serves it."""
        plain = redact_url(self._raw_url)
        return plain if self._local is not None else f"{plain} (served by pid {self._owner_pid})"

    @property
    def owner_pid(self) -> int | None:
        """The process that serves the file now; None once this process owns it."""
        return None if self._local is not None else self._owner_pid

    def _channel(self) -> _Channel:
        if self._closed:
            raise StoreError(f"store {self.url} is closed; open a new one with open_store()")
        channel: _Channel | None = getattr(self._mine, "channel", None)
        if channel is None:
            channel = self._mine.channel = _Channel(self)
            with self._guard:
                self._channels.add(channel)
        return channel

    def _locate(self) -> DuckDBStore | _Line:
        with self._guard:
            if self._local is not None:
                return self._local
            found = locate(self._raw_url, owner_first=False)
            if isinstance(found, _Line):
                self._owner_pid = found.pid
                if self._migrated and found.instance != self._owner_instance:
                    # A new owner: is its schema still the one this store was checked against?
                    try:
                        ok, applied = found.request(wire.encode(("applied", ())))
                        if not ok:
                            raise wire.rebuild(applied)
                        self._check_schema(set(applied))
                    except (ConnectionError, TimeoutError) as exc:
                        found.close()
                        raise StoreUnavailable(
                            f"process {found.pid}, which serves {self._path} now, did not "
                            f"answer a schema check ({exc}); try again"
                        ) from None
                    except BaseException:
                        found.close()
                        raise
                self._owner_instance = found.instance
                return found
            log.warning(
                "the process serving the DuckDB store went away; this process owns it now",
                store=redact_url(self._raw_url),
                previous_owner=self._owner_pid,
            )
            if self._migrated:
                try:
                    found.migrate()
                except BaseException:
                    found.close()
                    raise
            self._local = found
            return found

    def _check_schema(self, applied: set[int]) -> None:
        self._refuse_newer_schema(applied)
        missing = [m.version for m in load_migrations() if m.version not in applied]
        if missing:
            raise StoreError(
                f"store {self.url} lacks schema migrations {missing} that this tradelib needs; "
                "the owner applies migrations when it opens the store: stop process "
                f"{self._owner_pid} (or upgrade its tradelib) and open the store again"
            )

    # -- what stays in this process ---------------------------------------------------------

    def migrate(self) -> list[int]:
        """Never migrates the owner's file: checks that its schema is the one this code needs."""
        if self.in_transaction():
            raise StoreError("store.migrate() cannot run inside store.transaction()")
        applied = self._applied_versions()
        with self._guard:
            local = self._local
        if local is not None:
            return local.migrate()
        self._check_schema(applied)
        self._migrated = True
        return []

    def health(self) -> dict[str, Any]:
        """Like every store's health, plus `served_by` (the owner's pid) while remote."""
        report = super().health()
        if self.owner_pid is not None:
            report["served_by"] = self.owner_pid
        return report

    def change_token(self) -> int:
        """The owner's change token of the file (see StoreCore.change_token)."""
        return int(self._channel().request("call", "change_token", (), {}))

    def close(self) -> None:
        """Hang up every thread's connection (the owner keeps the file); close it if we own it."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            channels, local = list(self._channels), self._local
        for channel in channels:
            channel.drop()
        if local is not None:
            local.close()

    # -- StoreCore hooks: the transaction machinery runs here, the statements in the owner ----

    def _enter(self) -> Any:
        return self._channel()

    def _leave(self) -> None:
        """Nothing to release: the owner holds the lock while the transaction is open."""

    def _begin(self, conn: Any) -> None:
        conn.request("begin")

    def _commit(self, conn: Any) -> None:
        conn.request("commit")

    def _rollback(self, conn: Any) -> None:
        conn.request("rollback")

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Row]:
        rows: list[Row] = conn.request("execute", sql, list(params))
        return rows

    def _lock_name(self, conn: Any, name: str) -> None:
        conn.request("call", "lock", (name,), {})

    def _applied_versions(self) -> set[int]:
        return set(self._channel().request("applied"))

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        raise StoreError("a remote store never migrates: the process that owns the file does")
        yield  # pragma: no cover

    def _write_candle_frame(self, conn: Any, frame: pd.DataFrame) -> None:
        raise StoreError("internal: RemoteStore sends write_candles() to the owner whole")


def _portable(value: Any) -> Any:
    """Iterators and dict views (a filter given as a generator) travel as lists."""
    return list(value) if isinstance(value, Iterator | KeysView | ValuesView | ItemsView) else value


def _forwarder(name: str) -> Callable[..., Any]:
    @functools.wraps(getattr(Store, name))
    def forward(self: RemoteStore, *args: Any, **kwargs: Any) -> Any:
        args = tuple(_portable(a) for a in args)
        kwargs = {k: _portable(v) for k, v in kwargs.items()}
        return self._channel().request("call", name, args, kwargs)

    return forward


# Every other public Store method runs in the owner as one call (one round trip, its own
# transaction there unless this thread is inside transaction()). Base implementations kept:
# transaction/in_transaction/lock (via the hooks above), schema_version/pending_migrations.
_KEPT = frozenset({"transaction", "in_transaction", "lock", "schema_version", "pending_migrations"})
for _name in sorted(served_methods() - _KEPT):
    if _name not in vars(RemoteStore):
        setattr(RemoteStore, _name, _forwarder(_name))
abc.update_abstractmethods(RemoteStore)

register_backend("duckdb", open_duckdb)
