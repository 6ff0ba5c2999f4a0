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
import threading
import weakref
from collections.abc import Callable, ItemsView, Iterator, KeysView, Sequence, ValuesView
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from tradelib.errors import StoreError, StoreUnavailable
from tradelib.logs import get_logger
from tradelib.store import share_wire as wire
from tradelib.store.base import Store
from tradelib.store.core import Row, StoreCore, redact_url, register_backend
from tradelib.store.duckdb_store import MEMORY, DuckDBStore, _path_from_url
from tradelib.store.migrations import load_migrations
from tradelib.store.share_channel import Channel, Line, locate
from tradelib.store.share_server import served_methods

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


def open_duckdb(url: str) -> StoreCore:
    """The duckdb:// backend of open_store: own the file, or use the process that owns it."""
    if _path_from_url(url) == MEMORY:
        return DuckDBStore(url)
    found = locate(url, owner_first=True)
    return found if isinstance(found, DuckDBStore) else RemoteStore(url, found)


class RemoteStore(Store):
    """A DuckDB file store served by another local process (see the module docstring)."""

    backend = "duckdb"
    dialect = DuckDBStore.dialect

    def __init__(self, url: str, line: Line) -> None:
        super().__init__(url)
        self._path = _path_from_url(url)
        self._owner_pid = line.pid
        self._owner_instance = line.instance
        self._local: DuckDBStore | None = None
        self._migrated = False
        self._guard = threading.RLock()
        self._mine = threading.local()
        self._channels: weakref.WeakSet[Channel] = weakref.WeakSet()
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

    def _channel(self) -> Channel:
        if self._closed:
            raise StoreError(f"store {self.url} is closed; open a new one with open_store()")
        channel: Channel | None = getattr(self._mine, "channel", None)
        if channel is None:
            channel = self._mine.channel = Channel(self)
            with self._guard:
                self._channels.add(channel)
        return channel

    def _locate(self) -> DuckDBStore | Line:
        with self._guard:
            if self._local is not None:
                return self._local
            found = locate(self._raw_url, owner_first=False)
            if isinstance(found, Line):
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
        # A read, so safe to repeat: an owner that exits under it (a short papermill kernel)
        # hands the file to the next process, or to this one, on the next call.
        for _ in range(_SCHEMA_READS - 1):
            with suppress(StoreUnavailable):
                return set(self._channel().request("applied"))
        return set(self._channel().request("applied"))

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        raise StoreError("a remote store never migrates: the process that owns the file does")
        yield  # pragma: no cover

    def _write_candle_frame(self, conn: Any, frame: pd.DataFrame) -> None:
        raise StoreError("internal: RemoteStore sends write_candles() to the owner whole")


_SCHEMA_READS = 3


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
