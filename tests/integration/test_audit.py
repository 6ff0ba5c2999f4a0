"""The audit hash chain on both stores: append, verify, detect tampering, no forks."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from tradelib.audit import GENESIS, AuditLog, canonical_json
from tradelib.logs import register_secret
from tradelib.store import Store, open_store

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)


def test_chain_appends_and_verifies(store: Store) -> None:
    audit = AuditLog(store)
    assert audit.verify().ok and audit.verify().rows == 0
    first = audit.record("engine", "order_submitted", {"qty": Decimal("1.50000000")}, T0)
    second = audit.record("alice", "kill_switch_released", {"totp": "verified"}, T0)
    rows = store.list_audit()
    assert [r.prev_hash for r in rows] == [GENESIS, first]
    assert rows[1].hash == second
    report = audit.verify()
    assert report.ok and report.rows == 2


def test_secrets_never_enter_the_audit_payload(store: Store) -> None:
    register_secret("sk-audit-secret-123456")
    AuditLog(store).record("cli", "api_key_saved", {"note": "key sk-audit-secret-123456"}, T0)
    assert "sk-audit-secret-123456" not in store.list_audit()[0].payload_json


def _tamper(store: Store, sql: str) -> None:
    url = store.url
    if url.startswith("duckdb"):
        store._query(sql)  # same connection: DuckDB allows one writer per file
    else:
        with psycopg.connect(url.split("?")[0]) as conn:
            schema = url.split("schema=")[1]
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(sql)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE id = 2", "does not match its hash"),
        ("DELETE FROM audit_log WHERE id = 2", "prev_hash does not match"),
    ],
)
def test_tampering_is_detected_at_the_changed_row(store: Store, sql: str, reason: str) -> None:
    audit = AuditLog(store)
    for i in range(4):
        audit.record("engine", "decision", {"i": i}, T0 + timedelta(seconds=i))
    _tamper(store, sql)
    report = audit.verify()
    assert not report.ok
    assert reason in report.reason
    assert report.broken_id in (2, 3)


def _writer(url: str, n: int, actor: str) -> None:
    store = open_store(url)
    audit = AuditLog(store)
    for i in range(n):
        audit.record(actor, "decision", {"i": i}, datetime.now(UTC))
    store.close()


@pytest.mark.postgres
def test_two_processes_appending_never_fork_the_chain(pg_store_url: str) -> None:
    open_store(pg_store_url).close()  # migrate once
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(pg_store_url, 25, f"p{k}")) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = open_store(pg_store_url)
    report = AuditLog(store).verify()
    store.close()
    assert report.ok and report.rows == 50


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": Decimal("1.10")}) == '{"a":"1.10","b":1}'
