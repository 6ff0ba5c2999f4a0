"""The keyed, anchored audit chain catches every way of cutting or rewriting it, on both stores.

Each case tampers with the store the way someone with write access to the database (but not
the audit key) would, then checks what `verify` says and that verifying changed nothing.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tradelib.audit import ACCEPTED, FINDING, GENESIS, AuditLog, Status, chain_hash
from tradelib.audit_anchor import AUDIT_KEY_ENV, AuditKey, generate_audit_key, load_audit_key
from tradelib.errors import AuditError
from tradelib.store import Store

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)
KEY = AuditKey(b"k" * 32, "test")


def _tamper(store: Store, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """Run SQL (each statement with `params`) as an outside writer would.

    DuckDB allows one writing process per file, so there it goes through the same connection.
    """
    url = store.url
    if url.startswith("duckdb"):
        for sql in statements:
            store._query(sql, params)
        return
    with psycopg.connect(url.split("?")[0]) as conn:
        conn.execute(f'SET search_path TO "{url.split("schema=")[1]}"')
        for sql in statements:
            conn.execute(sql.replace("?", "%s"), params or None)


def _tables(store: Store) -> tuple[list[Any], list[Any]]:
    return (
        store._query("SELECT * FROM audit_log ORDER BY id"),
        store._query("SELECT * FROM audit_anchor ORDER BY id"),
    )


def _write(store: Store, n: int = 4, key: AuditKey = KEY) -> AuditLog:
    audit = AuditLog(store, key)
    for i in range(n):
        audit.record("engine", "decision", {"i": i}, T0 + timedelta(seconds=i))
    assert audit.verify().ok
    return audit


def _verify_unchanged(store: Store, audit: AuditLog) -> Any:
    before = _tables(store)
    report = audit.verify()
    assert _tables(store) == before  # verifying never writes to the store
    return report


def test_an_intact_chain_is_keyed_and_anchored(store: Store) -> None:
    audit = _write(store)
    rows = store.list_audit()
    assert all(r.hash.startswith("k1:") for r in rows)
    assert [r.prev_hash for r in rows] == [GENESIS, *(r.hash for r in rows[:-1])]
    anchor = store.get_audit_anchor()
    assert anchor is not None
    assert (anchor.entries, anchor.head_id, anchor.head_hash) == (4, rows[-1].id, rows[-1].hash)
    assert anchor.key_id == KEY.key_id and anchor.legacy_rows == 0
    report = _verify_unchanged(store, audit)
    assert report.ok and report.status is Status.INTACT and report.rows == 4


def test_an_edited_row_is_detected(store: Store) -> None:
    audit = _write(store)
    _tamper(store, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN and report.broken_id == 2
    assert "does not match its hash (HMAC" in report.reason
    assert not report.acceptable and "restore the store from a backup" in report.hint


def test_a_deleted_middle_row_is_detected(store: Store) -> None:
    audit = _write(store)
    _tamper(store, "DELETE FROM audit_log WHERE id = 2")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN and report.broken_id == 3
    assert "prev_hash does not match the row before" in report.reason


def test_a_deleted_tail_is_detected(store: Store) -> None:
    audit = _write(store)
    _tamper(store, "DELETE FROM audit_log WHERE id >= 3")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN and report.broken_id == 4
    assert "holds 2 entries up to entry 2 but its anchor records 4 entries up to entry 4" in (
        report.reason
    )
    assert "deleted from the end" in report.reason and report.acceptable


def test_deleting_every_row_is_detected(store: Store) -> None:
    audit = _write(store)
    _tamper(store, "DELETE FROM audit_log")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN
    assert "the log is empty but its anchor records 4 entries up to entry 4" in report.reason
    assert "every entry was deleted" in report.reason


def test_deleting_every_row_and_the_anchor_is_caught_by_the_checkpoint_file(
    store: Store,
) -> None:
    audit = _write(store)
    _tamper(store, "DELETE FROM audit_log", "DELETE FROM audit_anchor")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN
    assert "this store holds no audit log, but this machine's anchor file" in report.reason
    assert "records its chain with 4 entries up to entry 4" in report.reason
    assert "deleted, or the store was recreated" in report.reason


def _recompute(store: Store, actor: str, prefix: str) -> None:
    """Rewrite every row's actor and recompute the chain with the public SHA-256."""
    prev = GENESIS
    for row in store.list_audit():
        forged = prefix + chain_hash(prev, row.at, actor, row.action, row.payload_json)
        _tamper(
            store,
            "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?",
            params=(actor, prev, forged, row.id),
        )
        prev = forged


def test_a_chain_recomputed_with_the_public_hash_is_detected(store: Store) -> None:
    audit = _write(store)
    _recompute(store, "mallory", "")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN and report.broken_id == 1
    assert "recomputed with the public hash function" in report.reason


def test_a_recomputed_chain_that_mimics_the_keyed_format_fails_its_hmac(store: Store) -> None:
    audit = _write(store)
    _recompute(store, "mallory", "k1:")
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN and report.broken_id == 1
    assert "HMAC with the audit key" in report.reason


def test_an_anchor_rewritten_to_fit_a_cut_log_is_detected(store: Store) -> None:
    audit = _write(store)
    row = store.list_audit()[1]
    _tamper(store, "DELETE FROM audit_log WHERE id > 2")
    _tamper(
        store,
        "UPDATE audit_anchor SET entries = 2, head_id = 2, head_hash = ?",
        params=(row.hash,),
    )
    report = _verify_unchanged(store, audit)
    assert report.status is Status.BROKEN
    assert "the audit anchor row was altered" in report.reason


def test_a_writer_records_a_cut_it_finds_and_a_person_accepts_it(store: Store) -> None:
    audit = _write(store)
    _tamper(store, "DELETE FROM audit_log WHERE id >= 3")
    # The next action is recorded (an audit problem never blocks the kill switch), after an
    # entry that says what the writer found.
    audit.record("cli:alice", "kill_switch_engage", {"reason": "desk"}, T0 + timedelta(hours=1))
    rows = store.list_audit()
    assert [r.action for r in rows[-2:]] == [FINDING, "kill_switch_engage"]
    assert "entries were deleted" in rows[-2].payload["problem"]
    report = audit.verify()
    assert report.status is Status.BROKEN and report.acceptable
    assert f"entry {rows[-2].id}" in report.reason and "entries were deleted" in report.reason
    with pytest.raises(AuditError, match="needs who accepts them and why"):
        audit.accept("alice", " ", T0 + timedelta(hours=2))
    after = audit.accept("alice", "restored from backup 2026-11-25", T0 + timedelta(hours=2))
    assert after.ok, after.reason
    assert any("entries were deleted" in note for note in after.notes)
    assert store.list_audit()[-1].action == ACCEPTED


def test_a_rewritten_row_cannot_be_accepted(store: Store) -> None:
    audit = _write(store)
    _tamper(store, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    before = _tables(store)
    with pytest.raises(AuditError, match="cannot accept: row content does not match its hash"):
        audit.accept("alice", "looks fine", T0 + timedelta(hours=1))
    assert _tables(store) == before


def test_a_recreated_store_is_reported_until_accepted(store: Store) -> None:
    _write(store)
    _tamper(store, "DELETE FROM audit_log", "DELETE FROM audit_anchor")
    audit = AuditLog(store, KEY)
    audit.record("engine", "decision", {"i": 0}, T0 + timedelta(days=1))
    report = audit.verify()
    assert report.status is Status.BROKEN
    assert "records another audit chain at this store location" in report.reason
    assert audit.accept("alice", "I recreated the store", T0 + timedelta(days=1)).ok


def test_legacy_unkeyed_rows_need_a_person_then_the_chain_continues_keyed(store: Store) -> None:
    prev = GENESIS
    for i in range(3):  # what tradelib wrote before migration 0004
        digest = chain_hash(prev, T0, "engine", "decision", f'{{"i":{i}}}')
        store.append_audit(T0, "engine", "decision", f'{{"i":{i}}}', prev, digest)
        prev = digest
    audit = AuditLog(store, KEY)
    report = _verify_unchanged(store, audit)
    assert report.status is Status.REVIEW and report.legacy_rows == 3
    assert report.reason.startswith("legacy unkeyed entries 1..3")
    audit.record("engine", "decision", {"i": 3}, T0)  # writing goes on
    assert store.list_audit()[-1].hash.startswith("k1:")
    assert store.list_audit()[-1].prev_hash == prev
    assert audit.verify().status is Status.REVIEW  # still a person's call, never a silent pass
    accepted = audit.accept("alice", "compared with the 2026-11-01 backup", T0)
    assert accepted.ok and "legacy unkeyed entries 1..3 were accepted by a person" in (
        accepted.notes
    )


def test_a_writer_with_another_key_is_refused_and_nothing_is_written(store: Store) -> None:
    audit = _write(store)
    before = _tables(store)
    other = AuditLog(store, AuditKey(b"o" * 32, "other"))
    with pytest.raises(AuditError, match="every process and machine writing one store"):
        other.record("engine", "decision", {}, T0)
    assert _tables(store) == before
    report = other.verify()
    assert report.status is Status.UNVERIFIED and KEY.key_id in report.reason
    assert audit.verify().ok


def test_without_a_key_on_this_machine_verify_says_so(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(store)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    report = AuditLog(store).verify()
    assert report.status is Status.UNVERIFIED and "no audit key on this machine" in report.reason
    assert not (tmp_path / "elsewhere").exists()  # verifying creates no key


def test_the_key_file_is_created_private_once_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    assert load_audit_key(create=False) is None
    first = load_audit_key()
    assert first is not None
    path = tmp_path / "tradelib" / "audit.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_audit_key()
    assert again is not None and again.key_id == first.key_id
    assert "secret" not in repr(first) and first.secret.hex() not in repr(first)
    os.chmod(path, 0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        load_audit_key()
    os.chmod(path, 0o600)
    monkeypatch.setenv(AUDIT_KEY_ENV, generate_audit_key())
    from_env = load_audit_key()
    assert from_env is not None and from_env.source == AUDIT_KEY_ENV
    assert from_env.key_id != first.key_id
    monkeypatch.setenv(AUDIT_KEY_ENV, "dG9vIHNob3J0")  # "too short"
    with pytest.raises(AuditError, match="fewer than 32"):
        load_audit_key()


# -- the command line ------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from tradelib.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_verify_names_a_cut_tail_and_accept_records_it(store_url: str) -> None:
    from tradelib.store import open_store

    with open_store(store_url) as db:
        _write(db, key=load_audit_key())  # the key every process of this machine uses
        _tamper(db, "DELETE FROM audit_log WHERE id >= 3")
        before = _tables(db)
    cut = _cli("audit", "verify", "--store", store_url)
    assert cut.exit_code == 1, cut.output
    assert "AUDIT LOG BROKEN at entry 4: the log holds 2 entries up to entry 2" in cut.output
    assert "what to do: if you know why" in cut.output
    with open_store(store_url) as db:
        assert _tables(db) == before
    refused = _cli("audit", "accept", "--store", store_url, "--reason", "")
    assert refused.exit_code == 2 and "needs who accepts them and why" in refused.output
    accepted = _cli("audit", "accept", "--store", store_url, "--reason", "restored from backup")
    assert accepted.exit_code == 0, accepted.output
    assert "audit log intact: 4 entries verified" in accepted.output, accepted.output
    assert "note: accepted earlier: entry 5" in accepted.output


def test_cli_verify_asks_a_person_about_legacy_entries(store_url: str) -> None:
    from tradelib.store import open_store

    with open_store(store_url) as db:
        digest = chain_hash(GENESIS, T0, "engine", "decision", "{}")
        db.append_audit(T0, "engine", "decision", "{}", GENESIS, digest)
    legacy = _cli("audit", "verify", "--store", store_url)
    assert legacy.exit_code == 3, legacy.output
    assert "AUDIT LOG NEEDS REVIEW: legacy unkeyed entries 1..1" in legacy.output
    assert "tradelib audit accept --reason" in legacy.output


def test_cli_new_key_prints_a_usable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli("audit", "new-key")
    assert result.exit_code == 0
    key = result.stdout.splitlines()[0]
    monkeypatch.setenv(AUDIT_KEY_ENV, key)
    loaded = load_audit_key()
    assert loaded is not None and loaded.source == AUDIT_KEY_ENV
