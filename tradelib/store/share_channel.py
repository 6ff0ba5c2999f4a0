"""One thread's line to the process that owns a DuckDB file, and what happens when it goes away.

`locate` finds where a file lives now: this process opens it, or connects (and greets) the
process serving it, retrying for LOCATE_S while a holder starts or stops serving. A `Channel`
carries one thread's requests: over its `Line` to the owner, or, once this process owns the
file, straight into a `Session` on its own handle. It decides what a failure means: a request
that never left is sent again to whoever holds the file now; one that left and got no answer
raises `StoreUnavailable` (its outcome is unknown); inside a transaction every later request of
the block fails until the block ends. Timeouts are fail-safes, not expectations.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from tradelib.errors import DataError, StoreError, StoreLocked, StoreUnavailable
from tradelib.store import share_wire as wire
from tradelib.store.duckdb_store import DuckDBStore, _path_from_url
from tradelib.store.share_server import Session

if TYPE_CHECKING:
    from tradelib.store.share_client import RemoteStore

LOCATE_S = 3.0  # how long a holder may take to start (or stop) serving before StoreLocked
HELLO_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 60.0  # a fail-safe against a frozen owner, far above any store call
_RETRY_EVERY_S = 0.05
_WHAT = {
    "execute": "a SQL statement",
    "begin": "the start of a transaction",
    "applied": "a schema check",
}


class NotServing(Exception):
    """Nobody answers on the file's socket (the reason says why)."""


class Line:
    """A greeted connection to the owner of a DuckDB file."""

    def __init__(self, sock: socket.socket, pid: int, instance: str) -> None:
        self.sock = sock
        self.pid = pid
        self.instance = instance  # the serving process's server, so a new owner is noticed
        self._opened_by = os.getpid()
        self._close = weakref.finalize(self, sock.close)  # a thread that ends drops its line
        _LINES.add(self)

    @classmethod
    def open(cls, sock_path: str, db_path: str) -> Line:
        """Connect and greet; NotServing when nobody (of this user) answers there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(HELLO_TIMEOUT_S)
        try:
            pid = cls._connect(sock, sock_path)
            try:
                wire.send(sock, ("hello", (wire.PROTOCOL, os.path.realpath(db_path))))
                ok, value = wire.receive(sock)
            except TimeoutError:
                raise NotServing(
                    f"process {pid} accepted the connection on {sock_path} but did not answer "
                    f"within {HELLO_TIMEOUT_S:g} s (is it stopped?)"
                ) from None
            except ConnectionError as exc:
                raise NotServing(f"process {pid} closed the connection ({exc})") from None
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
            raise NotServing(f"nothing listens on {sock_path}") from None
        except ConnectionRefusedError:
            raise NotServing(f"{sock_path} is stale: the process that made it is gone") from None
        except TimeoutError:
            raise NotServing(f"{sock_path} takes no connections (owner stopped?)") from None
        except OSError as exc:
            raise NotServing(f"cannot connect to {sock_path}: {exc}") from None
        pid, uid = wire.peer_credentials(sock)
        if uid is not None and uid != os.getuid():
            raise NotServing(f"{sock_path} is served by uid {uid}, not by this user")
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


_LINES: weakref.WeakSet[Line] = weakref.WeakSet()


def _close_after_fork() -> None:
    """A forked child drops its copies of the parent's lines: the owner sees the parent alone."""
    for line in list(_LINES):
        line.close()


os.register_at_fork(after_in_child=_close_after_fork)


def locate(url: str, owner_first: bool) -> DuckDBStore | Line:
    """Open the DuckDB file of `url`, or connect to the process that serves it.

    Retries for LOCATE_S while the holder may be starting (or stopping) to serve it, then
    raises StoreLocked saying which process holds the file and why it cannot be used.
    """
    path = _path_from_url(url)
    sock_path = wire.socket_path(path)
    locked: StoreLocked | None = None
    why: NotServing | None = None

    def own() -> DuckDBStore:
        return DuckDBStore(url)

    def join() -> Line:
        return Line.open(sock_path, path)

    attempts: tuple[Callable[[], DuckDBStore | Line], ...] = (
        (own, join) if owner_first else (join, own)
    )
    deadline = time.monotonic() + LOCATE_S
    while True:
        for attempt in attempts:
            try:
                return attempt()
            except StoreLocked as exc:
                locked = exc
            except NotServing as exc:
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


class Channel:
    """One thread's way to the store: a line to the owner, or a session on this process's own
    handle once it owns the file."""

    def __init__(self, store: RemoteStore) -> None:
        self.store = store
        self.line: Line | None = None
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
        if isinstance(found, Line):
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
