"""Versioned schema migrations: numbered SQL files rendered for one backend's dialect."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from tradelib.errors import StoreError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_BLOCK = re.compile(r"^-- @(\w+)\s*$")
_END = "-- @end"

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between backends in DDL: type names and which guarded blocks run."""

    name: str
    json_type: str
    blob_type: str


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str

    def statements(self, dialect: Dialect) -> list[str]:
        """The migration's statements for `dialect`, in order, without trailing semicolons."""
        return split_statements(render(self.sql, dialect))


def render(sql: str, dialect: Dialect) -> str:
    """Substitute type placeholders and drop blocks guarded for other backends."""
    kept: list[str] = []
    guard: str | None = None
    for line in sql.splitlines():
        stripped = line.strip()
        match = _BLOCK.match(stripped)
        if stripped == _END:
            guard = None
            continue
        if match:
            guard = match.group(1)
            continue
        if guard is None or guard == dialect.name:
            kept.append(line)
    text = "\n".join(kept)
    return text.replace("{json}", dialect.json_type).replace("{blob}", dialect.blob_type)


def split_statements(sql: str) -> list[str]:
    """Split on semicolons that end a line; whole-line comments are dropped."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    statements.append("\n".join(current))
    return [s.strip() for s in statements if s.strip()]


def load_migrations() -> list[Migration]:
    """Every migration shipped in tradelib/store/migrations, ordered by version."""
    found: list[Migration] = []
    folder = resources.files("tradelib.store") / "migrations"
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migration files share a version number: {versions}")
    return found
