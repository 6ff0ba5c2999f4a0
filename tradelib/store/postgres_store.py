"""PostgreSQL backend (psycopg 3): the production store shared by several processes.

Threads: each thread gets its own connection (opened on first use, closed by `close()`), so
threads never wait for each other's transactions; PostgreSQL row locks (`get_order(...,
for_update=True)`) and advisory locks (`store.lock(name)`, migrations) order writers across
threads and processes. `?schema=NAME` in the URL puts every table in schema NAME (created if
missing) so tests and environments can share one database.

Change token: a transaction that wrote sends `NOTIFY tradelib_changes, '<schema>'` in the same
round trip as its COMMIT (PostgreSQL delivers it only if, and when, the transaction commits).
`change_token()` LISTENs on one extra connection, opened by its first call, and counts the
notifications of this schema it has drained: a reader never misses a commit (it may see one a
moment late, at its next poll). Cost: a few bytes per write transaction and no extra round
trip for writers; one connection and a non-blocking drain (~15 µs) per reader poll.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from tradelib.errors import ConfigError, DataError, StoreError
from tradelib.logs import get_logger, redact
from tradelib.store.base import PRICE_COLUMNS, Store
from tradelib.store.core import Row, redact_url, register_backend
from tradelib.store.migrations import Dialect

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CONNECT_TIMEOUT_S = 5
CHANGES_CHANNEL = "tradelib_changes"


@lru_cache(maxsize=512)
def _translate(sql: str) -> str:
    """`?` placeholders to psycopg's `%s` (literal % doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


def _short(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return redact(lines[0] if lines else type(exc).__name__)


class PostgresStore(Store):
    """Several processes, one database; optional schema per environment."""

    backend = "postgresql"
    dialect = Dialect("postgresql", "JSONB", "BYTEA")
    for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        redact_url(url)  # registers the password as a secret before anything can log it
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.schema = query.pop("schema", None) or None
        if self.schema is not None and not _IDENTIFIER.match(self.schema):
            raise ConfigError(
                f"store URL {self.url}: schema {self.schema!r} must be a plain SQL identifier "
                "(letters, digits, underscore; not starting with a digit)"
            )
        self._conninfo = urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(query), parts.fragment)
        )
        self._host, self._port = parts.hostname or "localhost", parts.port or 5432
        self._where = f"{self._host}:{self._port}"
        self._database = parts.path.lstrip("/") or parts.username or "postgres"
        self._conns: dict[int, psycopg.Connection[Any]] = {}
        self._pid = os.getpid()
        self._inherited: list[psycopg.Connection[Any]] = []
        self._guard = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_pid = 0
        self._listen_guard = threading.Lock()
        self._changes_base = self._changes_seen = 0
        self._enter()  # fail now, with the reason, rather than at the first query

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            reason = _short(exc)
            if "does not exist" in reason:
                hint = f"create it with: createdb -h {self._host} -p {self._port} {self._database}"
            elif "authentication" in reason or "password" in reason:
                hint = "check the user and password in the store URL"
            else:
                hint = f"is the server running? Start it with: {START_HINT}"
            raise StoreError(
                f"cannot reach PostgreSQL at {self._where} (database {self._database!r}, "
                f"{self.url}): {reason}; {hint}"
            ) from None
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            if self.schema is not None:
                self._ensure_schema(conn)
                conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc, "connection setup") from None
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone()
        if exists:
            return
        # Another process may create it at the same moment: its error means "exists now".
        with suppress(pg_errors.UniqueViolation, pg_errors.DuplicateSchema):
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    def close(self) -> None:
        """Close every thread's connection."""
        with self._guard:
            self._closed = True
            if os.getpid() != self._pid:  # a forked child must not end the parent's sessions
                self._inherited.extend(self._conns.values())
                self._conns, self._pid = {}, os.getpid()
            conns, self._conns = list(self._conns.values()), {}
        with self._listen_guard:
            if self._listener is not None:
                if self._listener_pid == os.getpid():
                    conns.append(self._listener)
                else:
                    self._inherited.append(self._listener)
            self._listener = None
        for conn in conns:
            conn.close()

    def _enter(self) -> Any:
        ident = threading.get_ident()
        with self._guard:
            if os.getpid() != self._pid:
                # After fork the sockets belong to the parent. Closing them here, or letting
                # them be garbage-collected, would send the server a Terminate and end the
                # parent's sessions: keep them referenced, unused, and connect afresh.
                self._inherited.extend(self._conns.values())
                self._conns, self._pid = {}, os.getpid()
            if self._closed:
                raise StoreError(f"store {self.url} is closed; open a new one with open_store()")
            conn = self._conns.get(ident)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = self._connect()
        with self._guard:
            alive = {t.ident for t in threading.enumerate()}
            for other in [i for i in self._conns if i not in alive]:
                self._conns.pop(other).close()  # threads that ended leave their connection
            self._conns[ident] = conn
        return conn

    def _leave(self) -> None:
        """Connections stay with their thread."""

    def _begin(self, conn: Any) -> None:
        self._execute(conn, "BEGIN", ())

    def _commit(self, conn: Any) -> None:
        if self._tx.wrote:  # the schema name is a checked identifier: safe to inline
            self._execute(conn, f"NOTIFY {CHANGES_CHANNEL}, '{self._channel_payload}'; COMMIT", ())
        else:
            self._execute(conn, "COMMIT", ())

    @property
    def _channel_payload(self) -> str:
        return self.schema or "public"

    def change_token(self) -> int:
        """A number that grows after every committed write to this schema (see module doc)."""
        with self._listen_guard:
            if self._closed:
                raise StoreError(f"store {self.url} is closed; open a new one with open_store()")
            listener = self._listener
            if listener is None or listener.closed or self._listener_pid != os.getpid():
                listener = self._listen()
            try:
                notes = list(listener.notifies(timeout=0))
            except psycopg.Error:
                # Notifications may have been lost with the connection: listen afresh, which
                # also moves the token, so readers re-read once.
                listener = self._listen()
                notes = []
            self._changes_seen += sum(1 for n in notes if n.payload == self._channel_payload)
            return self._changes_base + self._changes_seen

    def _listen(self) -> psycopg.Connection[Any]:
        if self._listener is not None:
            if self._listener_pid == os.getpid():
                with suppress(psycopg.Error):
                    self._listener.close()
            else:  # a forked child: closing (or dropping) it would end the parent's session
                self._inherited.append(self._listener)
        self._listener = None
        conn = self._connect()
        try:
            conn.execute(f"LISTEN {CHANGES_CHANNEL}")
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc, f"LISTEN {CHANGES_CHANNEL}") from None
        self._listener, self._listener_pid = conn, os.getpid()
        # Starts at the wall clock in ns: a fresh listener's tokens exceed the old one's.
        self._changes_base, self._changes_seen = time.time_ns(), 0
        return conn

    def _alone(self, sql: str, params: Sequence[Any], write: bool) -> list[Row]:
        # The connection is in autocommit: a lone read needs no BEGIN and COMMIT round trips.
        # A lone INSERT, UPDATE or DELETE carries its notification inside the statement (a
        # data-modifying WITH and pg_notify): one statement, atomic on its own, one round
        # trip. Any other write commits with its NOTIFY in one transaction sent as one
        # pipeline; if the statement fails, the server skips the rest and it is rolled back.
        conn = self._enter()
        try:
            if not write:
                return self._execute(conn, sql, params)
            verb = sql.lstrip()[:6].upper()
            if verb in ("INSERT", "UPDATE", "DELETE"):
                return self._write_notifying(conn, sql, params)
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    cursor = conn.execute(_translate(sql), tuple(params) if params else None)
                    conn.execute(f"NOTIFY {CHANGES_CHANNEL}, '{self._channel_payload}'")
                    conn.execute("COMMIT")
                return cursor.fetchall() if cursor.description else []
            except psycopg.Error as exc:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    self._quiet_rollback(conn)
                raise self._error(exc, sql) from None
        finally:
            self._leave()

    def _write_notifying(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Row]:
        """One INSERT/UPDATE/DELETE that also notifies readers, as a single statement.

        With RETURNING, the notification rides on the returned rows, so a write that changed
        nothing (no row back) notifies nobody; without it, the notification is always sent.
        """
        notify = f"SELECT pg_notify('{CHANGES_CHANNEL}', '{self._channel_payload}')"
        sql = sql.rstrip().rstrip(";")
        returning = _RETURNING.search(sql) is not None
        wrapped = (
            f"WITH w AS ({sql}) SELECT w.* FROM w CROSS JOIN ({notify}) n"
            if returning
            else f"WITH w AS ({sql}) {notify}"
        )
        rows = self._execute(conn, wrapped, params)
        return rows if returning else []

    def _rollback(self, conn: Any) -> None:
        if not conn.closed:
            conn.execute("ROLLBACK")

    def _error(self, exc: psycopg.Error, sql: str) -> StoreError:
        statement = " ".join(sql.split())[:80]
        if isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, pg_errors.QueryCanceled | pg_errors.LockNotAvailable
        ):
            return StoreError(
                f"lost PostgreSQL at {self._where} ({_short(exc)}); the current transaction did "
                f"not commit. If the server is down, start it with: {START_HINT}"
            )
        kind = ""
        if isinstance(exc, pg_errors.NumericValueOutOfRange):
            kind = "; a number does not fit its NUMERIC column"
        elif isinstance(exc, pg_errors.IntegrityError):
            kind = "; the row breaks a constraint"
        return StoreError(f"PostgreSQL {self._where}: {_short(exc)}{kind} (in: {statement})")

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            cursor = conn.execute(_translate(sql), tuple(params) if params else None)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise self._error(exc, sql) from None

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        conn = self._enter()
        key = f"tradelib.migrate:{self.schema or 'public'}"
        self._execute(conn, "SELECT pg_advisory_lock(hashtext(?))", (key,))
        try:
            yield
        finally:
            # A lost session has released the lock already; the original error matters more.
            with suppress(StoreError):
                if not conn.closed:
                    self._execute(conn, "SELECT pg_advisory_unlock(hashtext(?))", (key,))

    def _lock_name(self, conn: Any, name: str) -> None:
        key = f"tradelib:{self.schema or 'public'}:{name}"
        self._execute(conn, "SELECT pg_advisory_xact_lock(hashtext(?))", (key,))

    def _after_migrate(self) -> None:
        """Make candles a TimescaleDB hypertable when this database has the extension."""
        row = self._one(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = ?",
            ("timescaledb",),
        )
        if row is None:  # not installed here: candles stays a plain table
            return
        self._query(
            f"SELECT {row[0]}.create_hypertable('candles', 'open_time', if_not_exists => TRUE, "
            "migrate_data => TRUE)"
        )

    def _write_candle_frame(self, conn: Any, frame: pd.DataFrame) -> None:
        columns = "exchange, symbol, timeframe, open_time, open, high, low, close, volume"
        updates = ", ".join(f"{c} = excluded.{c}" for c in PRICE_COLUMNS)
        try:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _tl_candles "
                "(LIKE candles INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            conn.execute("TRUNCATE _tl_candles")
            ordered = frame[["exchange", "symbol", "timeframe", "open_time", *PRICE_COLUMNS]]
            times = ordered["open_time"].dt.to_pydatetime()
            with (
                conn.cursor() as cursor,
                cursor.copy(f"COPY _tl_candles ({columns}) FROM STDIN") as copy,
            ):
                for row, at in zip(ordered.itertuples(index=False, name=None), times, strict=True):
                    copy.write_row((row[0], row[1], row[2], at, *row[4:]))
            conn.execute(
                f"INSERT INTO candles ({columns}) SELECT {columns} FROM _tl_candles "
                f"ON CONFLICT (exchange, symbol, timeframe, open_time) DO UPDATE SET {updates}"
            )
        except pg_errors.NumericValueOutOfRange as exc:
            raise DataError(
                f"write_candles: a price or volume does not fit NUMERIC(20,8)/(30,8): {_short(exc)}"
            ) from None
        except psycopg.Error as exc:
            raise self._error(exc, "write_candles COPY") from None


for _scheme in ("postgresql", "postgres"):
    register_backend(_scheme, PostgresStore)
