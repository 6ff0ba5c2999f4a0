"""DuckDB backend: one embedded file (or :memory:), one writing process.

Threads: every store on the same file in this process shares one re-entrant lock, held for a
whole call or `transaction()` block. DuckDB would otherwise abort one of two concurrent writers
with a conflict error; order state changes are few, so serialising them costs nothing.
Other processes: DuckDB locks the file; a second process gets `StoreLocked`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import duckdb

from tradelib.errors import ConfigError, DataError, StoreError, StoreLocked
from tradelib.store.base import PRICE_COLUMNS, Store
from tradelib.store.core import Row, redact_url, register_backend
from tradelib.store.migrations import Dialect

if TYPE_CHECKING:
    import pandas as pd

MEMORY = ":memory:"
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


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


class DuckDBStore(Store):
    """The embedded default store (one process per file)."""

    backend = "duckdb"
    dialect = Dialect("duckdb", "JSON", "BLOB")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._path = _path_from_url(url)
        if self._path != MEMORY:
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {self._path}: {exc}") from None
        self._con = self._connect()
        self._pid = os.getpid()
        if self._path == MEMORY:
            self._lock = threading.RLock()
        else:
            with _FILE_LOCKS_GUARD:
                self._lock = _FILE_LOCKS.setdefault(self._path, threading.RLock())

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            con = duckdb.connect(self._path)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(
                    f"the DuckDB store {self._path} is in use by another process ({_short(exc)}). "
                    "DuckDB allows one writing process per file: stop the other process, or use "
                    "PostgreSQL for several processes (TRADELIB_STORE_URL=postgresql://user@host:"
                    "5432/db)"
                ) from None
            raise StoreError(f"cannot open the DuckDB store {self._path}: {_short(exc)}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the DuckDB store {self._path}: {_short(exc)}") from None
        con.execute("SET TimeZone = 'UTC'")
        return con

    def close(self) -> None:
        """Close the connection (other stores on the same file in this process stay open)."""
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


register_backend("duckdb", DuckDBStore)
