"""The audit hash chain on both stores: append, verify, detect tampering, no forks."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from decimal import Decimal

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
    anchor = store.get_audit_anchor()
    actions = {r.action for r in store.list_audit()}
    store.close()
    assert report.ok and report.rows == 50, report.reason
    assert anchor is not None and anchor.entries == 50  # the anchor did not fork either
    assert actions == {"decision"}  # and no writer mistook the other's progress for tampering


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": Decimal("1.10")}) == '{"a":"1.10","b":1}'
