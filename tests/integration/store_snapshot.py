"""Every table of a store as plain rows, to assert that a refused command changed nothing.

from store_snapshot import snapshot

before = snapshot(url)
...  # run the command that must refuse
assert snapshot(url) == before
"""

from __future__ import annotations

from typing import Any

from tradelib.store import open_store


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of every table of the store at `url`, sorted (opens without migrating)."""
    with open_store(url, migrate=False) as store:
        return {
            table: sorted(store._query(f"SELECT * FROM {table}"), key=repr)
            for table in store.table_names()
        }
