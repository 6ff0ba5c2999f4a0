"""Store fixtures shared by every integration test under tests/integration/.

Fixtures (pytest finds them automatically for any test module in this folder):

- `store`: a migrated `Store`, parametrized over both backends: ``duckdb`` (a fresh file in
  tmp_path) and ``postgresql`` (a fresh schema in the test database, dropped afterwards).
  Write a test once, it runs against both.
- `store_url`: the same two URLs, not yet opened or migrated (for tests that open their own
  stores, several processes, or migrations).
- `pg_store_url`: a fresh PostgreSQL schema URL only (tests of multi-process behaviour).
- `duckdb_store_url`: a fresh DuckDB file URL only.
- `owner`: another process holding `duckdb_store_url` and writing to it like an engine
  (share_fixtures.Owner; the store-sharing tests).

PostgreSQL comes from $TRADELIB_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test).
When it is unreachable, the postgresql parameters are skipped with a loud reason that says how
to start it; they are never silently dropped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from share_fixtures import Owner

from tradelib.store import Store, open_store, redact_url

PG_URL = os.environ.get("TRADELIB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
_pg_down_reason: list[str | None] = []


def postgres_down_reason() -> str | None:
    """None when the test PostgreSQL answers; otherwise why not and how to start it (cached)."""
    if not _pg_down_reason:
        try:
            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_down_reason.append(None)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            parts = urlsplit(PG_URL)
            where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
            _pg_down_reason.append(
                f"POSTGRESQL TESTS SKIPPED: PostgreSQL on {where} is down or refuses "
                f"{redact_url(PG_URL)} ({first}). Start it with: {PG_START}"
            )
    return _pg_down_reason[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the PostgreSQL skip reason at the end of the run, where nobody can miss it."""
    if _pg_down_reason and _pg_down_reason[0]:
        terminalreporter.write_sep("!", "PostgreSQL tests were skipped", red=True, bold=True)
        terminalreporter.write_line(_pg_down_reason[0], red=True, bold=True)


def require_postgres() -> None:
    """Skip the calling test, loudly, when the test PostgreSQL is unreachable."""
    reason = postgres_down_reason()
    if reason:
        pytest.skip(reason)


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL schema; the schema is dropped after the test."""
    require_postgres()
    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    joiner = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{joiner}schema={schema}"
    drop_schema(schema)


@pytest.fixture
def duckdb_store_url(tmp_path: Path) -> str:
    """URL of a fresh DuckDB file in tmp_path (created on first open)."""
    return f"duckdb:///{tmp_path / 'store.duckdb'}"


@pytest.fixture(
    params=[pytest.param("duckdb"), pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL for each backend (not opened, not migrated)."""
    name = "pg_store_url" if request.param == "postgresql" else "duckdb_store_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on each backend, closed after the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def owner(duckdb_store_url: str) -> Iterator[Owner]:
    """An engine-like process holding (and serving) a fresh DuckDB file; killed afterwards."""
    held = Owner(duckdb_store_url)
    try:
        yield held
    finally:
        if held.proc.poll() is None:
            held.kill()
