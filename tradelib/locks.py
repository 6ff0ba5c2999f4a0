"""Run locks: one holder per name across processes and machines (an account's engine, a job).

`acquire_lock(store_url, name, purpose)` takes the lock that belongs to the store:

* PostgreSQL: a session advisory lock held by a connection of its own (not one of the store's
  pooled connections, whose transactions come and go). The lock lives exactly as long as that
  session: if the process dies or the connection breaks, PostgreSQL releases it — so a holder
  must call `check()` before it acts; a broken session raises `LockLost`.
* DuckDB file: an OS file lock (`flock`) on `<store file>.locks/<name>.lock`, released by the
  kernel when the process dies. It is deliberately not the DuckDB file itself: another process
  may open that file through the store-sharing socket without being the account's engine.
* DuckDB in memory: a lock inside this process (nothing else can see such a store).

A refusal (`AlreadyRunning`) says who holds the lock: host, pid and what it is doing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tradelib.domain import Mode
from tradelib.errors import AlreadyRunning, ConfigError, LockLost, StoreError
from tradelib.logs import get_logger

log = get_logger(__name__)

_MEMORY_LOCKS: dict[str, str] = {}
_MEMORY_GUARD = threading.Lock()


def account_lock_name(mode: Mode | str, exchange: str) -> str:
    """Lock name of one account's engine: two engines must never trade one account."""
    return f"engine:{Mode(mode).value}:{exchange}"


def job_lock_name(job: str) -> str:
    """Lock name of a scheduled job: a job never runs twice at once."""
    return f"job:{job}"


def holder_text(purpose: str) -> str:
    """Who is asking, as a refusal shows it: purpose, host and pid."""
    return f"{purpose} (pid {os.getpid()} on {socket.gethostname()})"


class _Backend(Protocol):
    def check(self) -> None: ...

    def release(self) -> None: ...


@dataclass
class RunLock:
    """A held lock; `check()` before acting, `release()` (or `with`) when done."""

    name: str
    holder: str
    since: datetime
    _backend: _Backend = field(repr=False)
    released: bool = False

    def check(self) -> None:
        """Raise LockLost when the lock is no longer held (its session or file is gone)."""
        if self.released:
            raise LockLost(f"run lock {self.name!r} was released")
        self._backend.check()

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if not self.released:
            self.released = True
            self._backend.release()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_lock(store_url: str, name: str, purpose: str) -> RunLock:
    """Take the run lock `name` of the store at `store_url`, or raise AlreadyRunning."""
    holder = holder_text(purpose)
    scheme = store_url.split("://", 1)[0].lower() if "://" in store_url else ""
    backend: _Backend
    if scheme in ("postgresql", "postgres"):
        backend = _PostgresLock(store_url, name, holder)
    elif scheme == "duckdb":
        path = _duckdb_path(store_url)
        backend = _MemoryLock(name, holder) if path is None else _FileLock(path, name, holder)
    else:
        raise ConfigError(f"no run lock for store URL scheme {scheme!r} (duckdb or postgresql)")
    log.info("run lock taken", lock=name, holder=holder)
    return RunLock(name, holder, datetime.now(UTC), backend)


# -- PostgreSQL ---------------------------------------------------------------------------------


def _lock_key(schema: str, name: str) -> int:
    digest = hashlib.md5(f"tradelib:{schema}:{name}".encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _PostgresLock:
    def __init__(self, url: str, name: str, holder: str) -> None:
        import psycopg

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        schema = query.pop("schema", None) or "public"
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
        self.name = name
        self.key = _lock_key(schema, name)
        try:
            # Keepalives and a TCP user timeout make a dead server or a cut cable show up as a
            # broken session within seconds, instead of a check() that hangs.
            self.conn = psycopg.connect(
                conninfo, autocommit=True, connect_timeout=5, application_name=holder[:63],
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                tcp_user_timeout=10_000,
            )  # fmt: skip
        except psycopg.Error as exc:
            raise StoreError(f"cannot take run lock {name!r}: PostgreSQL unreachable: "
                             f"{_first_line(exc)}") from None  # fmt: skip
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not (row and row[0]):
            who = self._who()
            self.conn.close()
            raise AlreadyRunning(f"{name} is already running: held by {who}")

    def _who(self) -> str:
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        row = self.conn.execute(
            "SELECT a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1",
            (classid, objid),
        ).fetchone()
        if row is None:
            return "another session (it has just ended: try again)"
        app, addr, since = row
        where = f" from {addr}" if addr else ""
        return f"{app or 'a session'}{where} since {since:%Y-%m-%d %H:%M:%S %Z}"

    def check(self) -> None:
        import psycopg

        try:
            if self.conn.closed or self.conn.broken:
                raise psycopg.OperationalError("session closed")
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LockLost(
                f"run lock {self.name!r} lost: its PostgreSQL session ended "
                f"({_first_line(exc)}); another process may take the account now"
            ) from None

    def release(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):
            if not self.conn.closed and not self.conn.broken:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self.conn.close()


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# -- DuckDB file and memory ---------------------------------------------------------------------


def _duckdb_path(url: str) -> Path | None:
    path = urlsplit(url).path
    if path in ("/:memory:", ":memory:"):
        return None
    return Path("/" + path.lstrip("/"))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class _FileLock:
    def __init__(self, store_path: Path, name: str, holder: str) -> None:
        folder = store_path.parent / f"{store_path.name}.locks"
        self.name = name
        self.path = folder / f"{_safe(name)}.lock"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = self._who()
            os.close(self.fd)
            raise AlreadyRunning(f"{name} is already running: held by {who}") from None
        self.inode = os.fstat(self.fd).st_ino
        info = {"holder": holder, "since": datetime.now(UTC).isoformat()}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def _who(self) -> str:
        try:
            info: dict[str, Any] = json.loads(os.pread(self.fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            info = {}
        holder = info.get("holder", "another process")
        return f"{holder} since {info['since']}" if "since" in info else str(holder)

    def check(self) -> None:
        try:
            same = os.stat(self.path).st_ino == self.inode
        except OSError:
            same = False
        if not same:
            raise LockLost(
                f"run lock {self.name!r} lost: {self.path} was removed or replaced, so another "
                "process could take it"
            )

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _MemoryLock:
    def __init__(self, name: str, holder: str) -> None:
        self.name = name
        with _MEMORY_GUARD:
            if name in _MEMORY_LOCKS:
                raise AlreadyRunning(f"{name} is already running: held by {_MEMORY_LOCKS[name]}")
            _MEMORY_LOCKS[name] = holder

    def check(self) -> None:
        if self.name not in _MEMORY_LOCKS:
            raise LockLost(f"run lock {self.name!r} lost")

    def release(self) -> None:
        with _MEMORY_GUARD:
            _MEMORY_LOCKS.pop(self.name, None)
