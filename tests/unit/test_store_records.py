"""Store pieces that need no database: URLs, JSON, NUMERIC rounding, migration rendering."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tradelib.domain import Mode
from tradelib.errors import ConfigError, DataError, StoreError
from tradelib.logs import redact
from tradelib.store import open_store, redact_url, registered_schemes
from tradelib.store.migrations import Dialect, load_migrations, render, split_statements
from tradelib.store.records import ApiKeyRecord, as_mode, db_number, decode_json, encode_json

DUCK = Dialect("duckdb", "JSON", "BLOB")
PG = Dialect("postgresql", "JSONB", "BYTEA")


def test_json_keeps_decimals_and_datetimes_exact_as_strings() -> None:
    at = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    text = encode_json({"b": Decimal("12345678.123456789"), "a": at, "d": date(2024, 1, 2)})
    assert text == (
        '{"a": "2024-01-02T01:04:05.000006+00:00", "b": "12345678.123456789", "d": "2024-01-02"}'
    )
    back = decode_json(text)
    assert Decimal(back["b"]) == Decimal("12345678.123456789")
    assert datetime.fromisoformat(back["a"]) == at
    assert decode_json({"already": "decoded"}) == {"already": "decoded"}
    assert encode_json({"mode": Mode.LIVE, "t": (1, 2)}) == '{"mode": "live", "t": [1, 2]}'


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": float("nan")}, "cannot be stored as JSON"),
        ({"x": Decimal("NaN")}, "non-finite"),
        ({"x": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"x": object()}, "cannot store a object"),
    ],
)
def test_json_refuses_values_it_cannot_keep(payload: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        encode_json(payload)


def test_db_number_rounds_half_even_to_eight_places_and_checks_range() -> None:
    assert db_number(Decimal("0.123456785"), "x") == Decimal("0.12345678")
    assert db_number(Decimal("0.123456775"), "x") == Decimal("0.12345678")
    assert db_number(Decimal("999999999999.99999999"), "x") == Decimal("999999999999.99999999")
    assert db_number(None, "x") is None
    assert db_number(5, "x") == Decimal("5.00000000")
    with pytest.raises(DataError, match="price = 1000000000000 does not fit NUMERIC\\(20,8\\)"):
        db_number(Decimal("1000000000000"), "price")
    with pytest.raises(DataError, match="finite"):
        db_number(Decimal("Infinity"), "fee")
    assert db_number(Decimal(10) ** 20, "volume", precision=30) == Decimal(10) ** 20
    with pytest.raises(DataError, match="does not fit"):
        db_number(Decimal("1E+1000"), "quantity")


def test_as_mode() -> None:
    assert as_mode("live") is Mode.LIVE
    with pytest.raises(DataError, match="'paper' or 'live'"):
        as_mode("real")


def test_api_key_repr_hides_ciphertexts() -> None:
    record = ApiKeyRecord(1, "binance", "main", b"CIPHER", b"NONCE", b"SECRETCT", b"N2")
    assert "CIPHER" not in repr(record) and "SECRETCT" not in repr(record)


def test_migrations_render_per_dialect() -> None:
    sql = (
        "CREATE TABLE t (p {json}, b {blob});\n"
        "-- @postgresql\n-- a comment\nCREATE UNIQUE INDEX i ON t (p) WHERE p IS NOT NULL;\n"
        "-- @end\n"
        "-- @duckdb\nCREATE INDEX j ON t (p);\n-- @end\n"
    )
    assert split_statements(render(sql, PG)) == [
        "CREATE TABLE t (p JSONB, b BYTEA)",
        "CREATE UNIQUE INDEX i ON t (p) WHERE p IS NOT NULL",
    ]
    assert split_statements(render(sql, DUCK)) == [
        "CREATE TABLE t (p JSON, b BLOB)",
        "CREATE INDEX j ON t (p)",
    ]


def test_shipped_migrations_are_numbered_and_render_on_both_backends() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    # Numbers are reserved per task (PLAN.md), so one may land before a lower one: no repeats.
    assert versions[0] == 1 and versions == sorted(set(versions))
    for migration in migrations:
        duck, pg = migration.statements(DUCK), migration.statements(PG)
        assert len(pg) >= len(duck)
        if migration.version == 1:  # foreign keys and the partial unique index: PostgreSQL only
            assert len(pg) == len(duck) + 5
            assert sum("FOREIGN KEY" in s for s in pg) == 4
            assert not any("REFERENCES" in s or " WHERE " in s for s in duck)
            assert not any("JSONB" in s or "BYTEA" in s for s in duck)
        assert not any("{" in s and "}" in s and "{json}" in s for s in duck + pg)


def test_redact_url_hides_the_password_everywhere() -> None:
    url = "postgresql://trader:hunter2secret@db.example:5433/prod?schema=live"
    shown = redact_url(url)
    assert shown == "postgresql://trader:***@db.example:5433/prod?schema=live"
    assert redact("connecting with hunter2secret") == "connecting with ***"
    assert redact_url("duckdb:///tmp/x.duckdb") == "duckdb:///tmp/x.duckdb"


def test_unknown_scheme_and_bad_urls_are_config_errors() -> None:
    assert {"duckdb", "postgresql", "postgres"} <= set(registered_schemes())
    with pytest.raises(ConfigError, match=r"no known scheme.*duckdb://"):
        open_store("sqlite:///x.db")
    with pytest.raises(ConfigError, match="three slashes"):
        open_store("duckdb://host/x.duckdb")
    with pytest.raises(ConfigError, match="absolute path"):
        open_store("duckdb://")
    with pytest.raises(ConfigError, match="plain SQL identifier"):
        open_store("postgresql://u:pw12345@127.0.0.1:5432/db?schema=x;drop")


def test_unreachable_postgres_names_host_port_and_how_to_start_it() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://trader:s3cretpass@127.0.0.1:1/prod")
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start" in message
    assert "s3cretpass" not in message and "trader:***@" in message


def test_memory_store_opens_migrated_and_reports_health() -> None:
    with open_store("duckdb:///:memory:") as store:
        health = store.health()
        assert health == {
            "backend": "duckdb",
            "url": "duckdb:///:memory:",
            "schema_version": max(m.version for m in load_migrations()),
            "pending": [],
            "ok": True,
        }
        assert repr(store) == "<DuckDBStore duckdb:///:memory:>"
        at = datetime(2024, 1, 1, tzinfo=UTC)
        store.append_event("x", {}, at)
    with pytest.raises(StoreError, match="closed"):
        store.list_events()


def test_default_url_comes_from_environment_then_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("TRADELIB_STORE_URL", raising=False)
    with open_store() as store:
        assert store.url == f"duckdb:///{tmp_path}/tradelib/tradelib.duckdb"
    monkeypatch.setenv("TRADELIB_STORE_URL", "duckdb:///:memory:")
    with open_store() as store:
        assert store.url == "duckdb:///:memory:"
