"""Store core: URL registry, per-thread transactions, SQL execution and migrations.

Every public store call runs inside `transaction()`: alone it is its own transaction; inside
a `with store.transaction():` block (same thread) it joins that block, so an order and its
position change commit or roll back together. SQL is written once with `?` placeholders;
backends translate it. Backends decide how threads share connections (see each backend).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

from tradelib.errors import ConfigError, StoreError
from tradelib.logs import get_logger, register_secret
from tradelib.store.migrations import CREATE_MIGRATIONS_TABLE, Dialect, load_migrations

log = get_logger(__name__)

Row = tuple[Any, ...]
# Statements that only read: a transaction made of these alone does not change the store.
_READS = ("SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE")
_BACKENDS: dict[str, Callable[[str], StoreCore]] = {}


def register_backend(scheme: str, factory: Callable[[str], StoreCore]) -> None:
    """Make `open_store` use `factory` for URLs starting with `scheme://`."""
    _BACKENDS[scheme.lower()] = factory


def registered_schemes() -> list[str]:
    """URL schemes `open_store` understands."""
    return sorted(_BACKENDS)


def redact_url(url: str) -> str:
    """`url` with its password replaced by ***; the password is also registered as a secret."""
    try:
        parts = urlsplit(url)
        password = parts.password
        parts.port  # noqa: B018  (a port that is not a number raises ValueError)
    except ValueError:
        return "<unparseable store URL>"
    if not password:
        return url
    register_secret(password)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username or ''}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_backend(url: str) -> StoreCore:
    """Instantiate the backend registered for `url`'s scheme (no migration)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    try:
        urlsplit(url).port  # noqa: B018  (a port that is not a number raises ValueError)
    except ValueError as exc:
        raise ConfigError(
            f"store URL {redact_url(url)} cannot be parsed ({exc}); write it like "
            "postgresql://user@host:5432/db or duckdb:///path/to/tradelib.duckdb"
        ) from None
    factory = _BACKENDS.get(scheme)
    if factory is None:
        raise ConfigError(
            f"store URL {redact_url(url)!r} has no known scheme; use one of "
            f"{', '.join(s + '://' for s in registered_schemes())} "
            "(e.g. duckdb:///path/to/tradelib.duckdb or postgresql://user@host:5432/db)"
        )
    return factory(url)


class _TxState(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        self.conn: Any = None
        self.broken: BaseException | None = None
        self.wrote = False


class StoreCore(ABC):
    """Connection handling, transactions, migrations and health shared by every backend."""

    backend: ClassVar[str]
    dialect: ClassVar[Dialect]
    for_update: ClassVar[str] = ""  # row-lock suffix for read-modify-write SELECTs
    # True when change_token() has moved before any committing call returns, whichever
    # process made it (DuckDB: the owner counts every commit); reads may then be cached
    # against it. PostgreSQL's token follows NOTIFY and may lag a moment: False.
    exact_change_token: ClassVar[bool] = False
    # True when every writer of the store takes turns behind one lock in this process
    # (DuckDB): a check followed by a plain INSERT is then as safe as INSERT ... ON CONFLICT,
    # and cheaper there (ON CONFLICT doubles DuckDB's cost of a write). PostgreSQL's writers
    # run side by side: it keeps ON CONFLICT.
    writers_take_turns: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        self._raw_url = url
        self._tx = _TxState()
        self._closed = False

    @property
    def url(self) -> str:
        """The store URL with any password redacted."""
        return redact_url(self._raw_url)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backend hooks -------------------------------------------------------------------

    @abstractmethod
    def _enter(self) -> Any:
        """Return this thread's connection, taking whatever lock the backend needs."""

    @abstractmethod
    def _leave(self) -> None:
        """Release what `_enter` took."""

    @abstractmethod
    def _begin(self, conn: Any) -> None: ...

    @abstractmethod
    def _commit(self, conn: Any) -> None: ...

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one statement with `?` placeholders; return its rows; map driver errors."""

    @abstractmethod
    def _migration_lock(self) -> AbstractContextManager[None]:
        """Serialise migrations between processes."""

    @abstractmethod
    def _lock_name(self, conn: Any, name: str) -> None:
        """Hold a named lock until the current transaction ends."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection this store opened."""

    def _after_migrate(self) -> None:  # noqa: B027  (optional hook, most backends need nothing)
        """Backend extras once the schema is current (PostgreSQL: TimescaleDB)."""

    def _wrote(self) -> None:  # noqa: B027  (optional hook)
        """A transaction that changed the store has just committed (DuckDB counts it)."""

    @abstractmethod
    def change_token(self) -> int:
        """A number that changes after every committed write to this store, by any process.

        Cheap enough to poll every second: take the token, read what you show, and read again
        once the token differs (compare with `!=`; it only grows while one process owns it).
        """

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic transaction for every store call in this block (same thread); nests."""
        state = self._tx
        if state.depth:
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        if self._closed:
            raise StoreError(f"store {self.url} is closed; open a new one with open_store()")
        conn = self._enter()
        try:
            self._begin(conn)
            state.depth, state.conn, state.broken, state.wrote = 1, conn, None, False
            try:
                yield
            except BaseException:
                self._quiet_rollback(conn)
                raise
            if state.broken is not None:
                self._quiet_rollback(conn)
                raise StoreError(
                    "transaction rolled back: a statement inside it failed and was caught "
                    f"({state.broken}); nothing from this block was saved"
                )
            try:
                self._commit(conn)
            except BaseException:
                self._quiet_rollback(conn)
                raise
            if state.wrote:
                self._wrote()
        finally:
            state.depth, state.conn, state.broken, state.wrote = 0, None, None, False
            self._leave()

    def in_transaction(self) -> bool:
        """True inside a `transaction()` block of this thread."""
        return self._tx.depth > 0

    def lock(self, name: str) -> None:
        """Inside a transaction: wait for and hold the named lock until it ends (all processes)."""
        if not self.in_transaction():
            raise StoreError(f"store.lock({name!r}) must be called inside store.transaction()")
        self._lock_name(self._tx.conn, name)

    def _quiet_rollback(self, conn: Any) -> None:
        try:
            self._rollback(conn)
        except Exception as exc:  # the original error matters more than a failed rollback
            log.warning("store rollback failed", store=self.url, error=str(exc))

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        state = self._tx
        write = not sql.lstrip()[:8].upper().startswith(_READS)
        if not state.depth:
            return self._alone(sql, params, write)
        if write:
            state.wrote = True
        try:
            return self._execute(state.conn, sql, params)
        except StoreError as exc:
            state.broken = exc
            raise

    def _alone(self, sql: str, params: Sequence[Any], write: bool) -> list[Row]:
        """One statement outside any transaction: committed (or rolled back) before it returns.

        Backends whose driver commits a lone statement by itself override this to skip the
        BEGIN and COMMIT round trips; the statement is exactly as atomic and durable.
        """
        with self.transaction():
            return self._query(sql, params)

    def _changed_rows(self, sql: str, params: Sequence[Any] = ()) -> int:
        """How many rows an UPDATE changed."""
        return len(self._query(f"{sql} RETURNING 1", params))

    def _upsert(
        self, table: str, keys: Sequence[str], columns: Sequence[str], values: Sequence[Any]
    ) -> None:
        """Write the row whose `keys` columns match (insert it, or replace its other columns).

        Where writers take turns, a plain UPDATE goes first: the row nearly always exists
        (controls, heartbeats, balances), and INSERT ... ON CONFLICT costs twice as much there.
        No row updated (the first write) takes the upsert, which is right whatever happened
        in between.
        """
        row = dict(zip(columns, values, strict=True))
        others = [c for c in columns if c not in keys]
        if self.writers_take_turns and self._changed_rows(
            f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in others)} "
            f"WHERE {' AND '.join(f'{k} = ?' for k in keys)}",
            [*(row[c] for c in others), *(row[k] for k in keys)],
        ):
            return
        places = ", ".join("?" for _ in columns)
        replace = ", ".join(f"{c} = excluded.{c}" for c in others)
        self._query(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({places}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {replace}",
            values,
        )

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    # -- migrations ----------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply pending migrations in order, each in its own transaction; return their versions."""
        if self.in_transaction():
            raise StoreError("store.migrate() cannot run inside store.transaction()")
        applied: list[int] = []
        with self._migration_lock():
            self._query(CREATE_MIGRATIONS_TABLE)
            done = self._applied_versions()
            self._refuse_newer_schema(done)
            for migration in load_migrations():
                if migration.version in done:
                    continue
                try:
                    with self.transaction():
                        for statement in migration.statements(self.dialect):
                            self._query(statement)
                        self._query(
                            "INSERT INTO schema_migrations (version, name, applied_at) "
                            "VALUES (?, ?, ?)",
                            (migration.version, migration.name, datetime.now(UTC)),
                        )
                except StoreError as exc:
                    raise StoreError(
                        f"migration {migration.version:04d}_{migration.name} failed on "
                        f"{self.url} and was rolled back: {exc}"
                    ) from exc
                applied.append(migration.version)
                log.info("store migrated", store=self.url, version=migration.version)
            self._after_migrate()
        return applied

    def table_names(self) -> list[str]:
        """Tables of this store (its schema only), sorted."""
        rows = self._query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
            "ORDER BY table_name"
        )
        return [str(r[0]) for r in rows]

    def _has_migrations_table(self) -> bool:
        row = self._one(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_name = 'schema_migrations' AND table_schema = current_schema()"
        )
        return bool(row and row[0])

    def _applied_versions(self) -> set[int]:
        if not self._has_migrations_table():
            return set()
        return {int(r[0]) for r in self._query("SELECT version FROM schema_migrations")}

    def _refuse_newer_schema(self, done: set[int]) -> None:
        known = {m.version for m in load_migrations()}
        unknown = sorted(done - known)
        if unknown:
            raise StoreError(
                f"store {self.url} has schema migrations {unknown} that this tradelib does not "
                f"know (it ships up to {max(known, default=0)}): a newer tradelib migrated it; "
                "upgrade tradelib before using this store"
            )

    def schema_version(self) -> int:
        """Highest applied migration version (0 for an empty store)."""
        return max(self._applied_versions(), default=0)

    def pending_migrations(self) -> list[int]:
        """Versions shipped with tradelib but not applied to this store yet."""
        done = self._applied_versions()
        return [m.version for m in load_migrations() if m.version not in done]

    def health(self) -> dict[str, Any]:
        """Backend, redacted URL, schema version and pending migrations; `ok` False on error."""
        report: dict[str, Any] = {"backend": self.backend, "url": self.url}
        try:
            done = self._applied_versions()
            report["schema_version"] = max(done, default=0)
            report["pending"] = self.pending_migrations()
            report["ok"] = not report["pending"]
            self._refuse_newer_schema(done)
        except StoreError as exc:
            report.update(ok=False, error=str(exc))
        return report
