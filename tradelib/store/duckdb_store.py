"""DuckDB backend: one embedded file (or :memory:), opened by one process at a time.

Threads: every store on the same file in this process shares one re-entrant lock, held for a
whole call or `transaction()` block. DuckDB would otherwise abort one of two concurrent writers
with a conflict error; order state changes are few, so serialising them costs nothing.
Other processes: DuckDB lets one process open the file. That process serves it to the others
over a Unix socket (tradelib.store.share_server), and `open_store` in another process returns
a `RemoteStore` speaking to it (tradelib.store.share_client); a client's transaction runs in a
server thread of the owner and takes the same lock, exactly like a second thread.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import duckdb

from tradelib.errors import ConfigError, DataError, StoreError, StoreLocked
from tradelib.store import share_server
from tradelib.store.base import PRICE_COLUMNS, Store
from tradelib.store.core import Row, redact_url
from tradelib.store.migrations import Dialect

if TYPE_CHECKING:
    import pandas as pd

MEMORY = ":memory:"
_HOLDER = re.compile(r"held in (.+?) \(PID (\d+)\)")


class _SharedFile:
    """What every store of this process on one file shares: the writer lock, the change count."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        # Starts at the wall clock in ns so that a later owner's tokens exceed an earlier one's.
        self._base = time.time_ns()
        self._changes = 0

    def changed(self) -> None:
        """Count one committed write transaction (called while `lock` is held)."""
        self._changes += 1

    def token(self) -> int:
        """The change token of this file (see StoreCore.change_token)."""
        return self._base + self._changes


_FILES: dict[str, _SharedFile] = {}
_FILES_GUARD = threading.Lock()


def _shared_file(path: str) -> _SharedFile:
    if path == MEMORY:
        return _SharedFile()
    with _FILES_GUARD:
        return _FILES.setdefault(os.path.realpath(path), _SharedFile())


def _path_from_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc or parts.query:
        raise ConfigError(
            f"DuckDB store URL {redact_url(url)!r} must look like duckdb:///absolute/path.duckdb "
            "or duckdb:///:memory: (three slashes, no host, no query)"
        )
    path = parts.path
    if path in ("/:memory:", ":memory:"):
        return MEMORY
    if not path.startswith("/"):
        raise ConfigError(f"DuckDB store URL {url!r} needs an absolute path after duckdb:///")
    # duckdb:////abs/path (what f"duckdb:///{Path('/abs/path')}" gives) means /abs/path.
    return "/" + path.lstrip("/")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _holder(exc: BaseException) -> str:
    found = _HOLDER.search(str(exc))
    return f"process {found.group(2)} ({found.group(1)})" if found else "another process"


class DuckDBStore(Store):
    """The embedded default store; the process that opens a file serves it to the others."""

    backend = "duckdb"
    dialect = Dialect("duckdb", "JSON", "BLOB")
    exact_change_token = True  # every writer's commit passes through this process's counter
    writers_take_turns = True  # one connection, one lock per file (see _enter)

    def __init__(self, url: str, *, serve: bool = True) -> None:
        super().__init__(url)
        self._path = _path_from_url(url)
        if self._path != MEMORY:
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {self._path}: {exc}") from None
        self._con = self._connect()
        self._pid = os.getpid()
        self._file = _shared_file(self._path)
        self._lock = self._file.lock
        self._unserve: weakref.finalize | None = None
        # The server gets its own handle of the file: this one may be closed before others.
        if (
            serve
            and self._path != MEMORY
            and share_server.serve(self._path, lambda: DuckDBStore(url, serve=False))
        ):
            # A store nobody closes stops counting once it is garbage-collected.
            self._unserve = weakref.finalize(self, share_server.unserve_soon, self._path)
            self._unserve.atexit = False  # share_server stops every server at exit

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            con = duckdb.connect(self._path)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                holder = _holder(exc)
                raise StoreLocked(
                    f"the DuckDB store {self._path} is in use by {holder}; DuckDB lets one "
                    "process open a file (open_store() uses the holder when it serves the file)",
                    holder,
                ) from None
            raise StoreError(f"cannot open the DuckDB store {self._path}: {_short(exc)}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the DuckDB store {self._path}: {_short(exc)}") from None
        con.execute("SET TimeZone = 'UTC'")
        return con

    def close(self) -> None:
        """Close the connection (other stores on the same file in this process stay open).

        The last store of this process on the file also stops serving it to other processes.
        """
        if self._unserve is not None and self._unserve.detach() is not None:  # once only
            share_server.unserve(self._path)  # a forked child never stops its parent's server
        with self._lock:
            if not self._closed:
                self._closed = True
                if os.getpid() == self._pid:  # a forked child must not checkpoint our file
                    self._con.close()

    def _enter(self) -> Any:
        if os.getpid() != self._pid:
            # A forked child shares the parent's DuckDB memory and file: writing would corrupt it.
            raise StoreError(
                f"this DuckDB store was opened by process {self._pid}; a child process must "
                "open its own store, and several processes need PostgreSQL "
                "(TRADELIB_STORE_URL=postgresql://user@host:5432/db)"
            )
        self._lock.acquire()
        if self._closed:
            self._lock.release()
            raise StoreError(f"store {self.url} is closed; open a new one with open_store()")
        return self._con

    def _leave(self) -> None:
        self._lock.release()

    def _begin(self, conn: Any) -> None:
        self._execute(conn, "BEGIN TRANSACTION", ())

    def _commit(self, conn: Any) -> None:
        self._execute(conn, "COMMIT", ())

    def _rollback(self, conn: Any) -> None:
        conn.execute("ROLLBACK")

    def _wrote(self) -> None:
        self._file.changed()

    def _alone(self, sql: str, params: Sequence[Any], write: bool) -> list[Row]:
        # DuckDB auto-commits a statement run outside BEGIN: its own transaction, the WAL
        # synced before execute() returns, rolled back whole if it fails. BEGIN and COMMIT
        # as statements cost two more parse-bind-execute rounds (~0.5 ms each) for nothing.
        conn = self._enter()
        try:
            rows = self._execute(conn, sql, params)
            if write:
                self._wrote()  # still under the lock: the token moves after the commit
            return rows
        finally:
            self._leave()

    def _changed_rows(self, sql: str, params: Sequence[Any] = ()) -> int:
        # DuckDB answers an UPDATE with its row count; RETURNING would make it rewrite every
        # column of the row (twice the cost of an order state change).
        rows = self._query(sql, params)
        return int(rows[0][0]) if rows else 0

    def change_token(self) -> int:
        """A number that grows after every committed write to this file (see StoreCore)."""
        return self._file.token()

    def _error(self, exc: duckdb.Error, sql: str) -> StoreError:
        statement = " ".join(sql.split())[:80]
        message = f"DuckDB store {self._path}: {_short(exc)} (in: {statement})"
        if isinstance(exc, duckdb.ConversionException | duckdb.OutOfRangeException):
            return StoreError(f"{message}; a number or time does not fit its column")
        return StoreError(message)

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            cursor = conn.execute(sql, list(params))
            return cursor.fetchall() if cursor.description else []
        except duckdb.Error as exc:
            raise self._error(exc, sql) from None

    def _select_frame(self, conn: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        try:
            return conn.execute(sql, list(params)).df()  # columnar fetch, no Python rows
        except duckdb.Error as exc:
            raise self._error(exc, sql) from None

    def _after_migrate(self) -> None:
        """Drop the live_orders (mode, status) index that migration 1 creates on both backends.

        DuckDB rewrites an UPDATE of an indexed column as a delete plus an insert of the whole
        23-column row, which tripled the cost of every order state change; its scans with
        zone maps read live_orders as fast without it. PostgreSQL keeps the index.
        """
        if self._one("SELECT 1 FROM duckdb_indexes() WHERE index_name = 'live_orders_status'"):
            self._query("DROP INDEX live_orders_status")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        # The file lock keeps other processes out; this keeps other threads out.
        with self._lock:
            yield

    def _lock_name(self, conn: Any, name: str) -> None:
        """Nothing to do: a transaction already holds the process-wide lock of the file."""

    def _write_candle_frame(self, conn: Any, frame: pd.DataFrame) -> None:
        casts = ", ".join(
            f"CAST({c} AS DECIMAL({30 if c == 'volume' else 20}, 8))" for c in PRICE_COLUMNS
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in PRICE_COLUMNS)
        sql = (
            "INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close, "
            f"volume) SELECT exchange, symbol, timeframe, open_time, {casts} FROM _tl_candles "
            f"ON CONFLICT (exchange, symbol, timeframe, open_time) DO UPDATE SET {updates}"
        )
        conn.register("_tl_candles", frame)
        try:
            conn.execute(sql)
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.ConversionException | duckdb.OutOfRangeException):
                raise DataError(
                    f"write_candles: a price or volume does not fit NUMERIC(20,8)/(30,8): "
                    f"{_short(exc)}"
                ) from None
            raise self._error(exc, sql) from None
        finally:
            conn.unregister("_tl_candles")
