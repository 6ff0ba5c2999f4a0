"""Every row of every table of a store, for "nothing changed" checks and the leak scan."""

from __future__ import annotations

from typing import Any

from tradelib.store import Store


def dump_store(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """{table: rows (every column), in a stable order}; blobs come back as bytes."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in store.table_names():
        rows = store._query(f'SELECT * FROM "{table}"')
        out[table] = sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value
