"""Master key rotation on real stores: all keys or none, and an interruption loses nothing.

Interruptions are real: an exception in the middle of the re-encryption, a keyring that fails
between the store's commit and the key's promotion, and a process killed with SIGKILL while
its rotation transaction is open. After each, every API key still opens with a master key
the person has, and running the rotation again finishes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import keyring
import pytest
from store_dump import dump_store

from tradelib.errors import SecretError
from tradelib.secrets import (
    KEYRING_SERVICE,
    MASTER_KEY_ENTRY,
    MASTER_KEY_ENV,
    NEW_MASTER_KEY_ENV,
    PENDING_MASTER_KEY_ENTRY,
    Credentials,
    SecretBox,
    generate_master_key,
    load_credentials,
    load_master_key,
    parse_master_key,
    rotate,
    rotate_master_key,
    save_credentials,
)
from tradelib.store import ApiKeyRecord, Store, open_store
from tradelib.testing.memory_keyring import MemoryKeyring

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
PAIRS = {
    ("binance", "main"): ("bn-key-0001-abcdef", "bn-secret-0001-abcdef"),
    ("binance", "spare"): ("bn-key-0002-abcdef", "bn-secret-0002-abcdef"),
    ("kraken", "main"): ("kr-key-0003-abcdef", "kr-secret-0003-abcdef"),
}
CHILD = """
import sys
from datetime import UTC, datetime
from tradelib.secrets import rotate
from tradelib.store import open_store

def on_row(record):
    print("re-encrypted", record.exchange, record.label, flush=True)
    sys.stdin.readline()  # the parent decides: carry on, or SIGKILL right here

with open_store(sys.argv[1]) as store:
    report = rotate(store, actor="child", now=datetime.now(UTC), on_row=on_row)
print("done", report.rotated, flush=True)
"""


class Interrupted(Exception):
    """Stands for Ctrl-C / a crash in the middle of the work."""


def _box(raw: str, source: str = "test") -> SecretBox:
    return SecretBox(parse_master_key(raw, source))


def _fill(store: Store, box: SecretBox) -> None:
    for (exchange, label), (key, secret) in PAIRS.items():
        save_credentials(store, box, Credentials(exchange, label, key, secret), actor="t", now=NOW)


def _opens_with(store: Store, box: SecretBox) -> bool:
    for (exchange, label), pair in PAIRS.items():
        creds = load_credentials(store, box, exchange, label)
        assert (creds.api_key, creds.api_secret) == pair
    return True


def _interrupt_after(rows: int) -> Callable[[ApiKeyRecord], None]:
    seen: list[ApiKeyRecord] = []

    def on_row(record: ApiKeyRecord) -> None:
        seen.append(record)
        if len(seen) == rows:
            raise Interrupted(f"stopped after {rows} re-encrypted rows")

    return on_row


def test_every_key_moves_to_the_new_master_key(store: Store) -> None:
    old, new = _box(generate_master_key()), _box(generate_master_key())
    _fill(store, old)
    report = rotate_master_key(store, old, new, actor="alice", now=NOW)
    assert (report.rotated, report.already) == (3, 0)
    assert _opens_with(store, new)
    assert {r.key_id for r in store.list_api_keys()} == {new.key_id}
    with pytest.raises(SecretError, match="wrong master key"):
        load_credentials(store, old, "binance", "main")
    entry = store.list_audit()[-1]
    assert (entry.actor, entry.action) == ("alice", "master_key_rotated")
    assert entry.payload["old_master_key_id"] == old.key_id
    assert entry.payload["new_master_key_id"] == new.key_id


def test_an_exception_mid_way_changes_nothing_and_a_rerun_finishes(store: Store) -> None:
    old, new = _box(generate_master_key()), _box(generate_master_key())
    _fill(store, old)
    before = dump_store(store)
    with pytest.raises(Interrupted):
        rotate_master_key(store, old, new, actor="alice", now=NOW, on_row=_interrupt_after(2))
    assert dump_store(store) == before  # the two re-encrypted rows rolled back with the rest
    assert _opens_with(store, old)
    report = rotate_master_key(store, old, new, actor="alice", now=NOW)
    assert report.rotated == 3 and _opens_with(store, new)


def test_a_row_no_key_opens_stops_the_rotation_before_any_write(store: Store) -> None:
    old, new = _box(generate_master_key()), _box(generate_master_key())
    _fill(store, old)
    store._query("UPDATE api_keys SET key_nonce = ? WHERE exchange = 'kraken'", (b"",))
    before = dump_store(store)
    with pytest.raises(SecretError, match="kraken/main is damaged"):
        rotate_master_key(store, old, new, actor="alice", now=NOW)
    assert dump_store(store) == before


def test_keyring_rotation_survives_each_interruption(
    store: Store, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(NEW_MASTER_KEY_ENV, raising=False)
    first = generate_master_key()
    memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)] = first
    _fill(store, _box(first))

    # 1. Interrupted in the store transaction: the pending key is saved, nothing else changed.
    with pytest.raises(Interrupted):
        rotate(store, actor="alice", now=NOW, on_row=_interrupt_after(1))
    pending = memory_keyring.values[(KEYRING_SERVICE, PENDING_MASTER_KEY_ENTRY)]
    assert memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)] == first
    assert _opens_with(store, SecretBox(load_master_key()))

    # 2. The store committed, then the keyring failed to promote the new key.
    class PromotionFails(MemoryKeyring):
        def set_password(self, service: str, username: str, password: str) -> None:
            if username == MASTER_KEY_ENTRY:
                raise keyring.errors.PasswordSetError("keyring locked by the desktop")
            super().set_password(service, username, password)

    failing = PromotionFails()
    failing.values = memory_keyring.values
    keyring.set_keyring(failing)
    with pytest.raises(SecretError, match="cannot write the OS keyring"):
        rotate(store, actor="alice", now=NOW)
    assert {r.key_id for r in store.list_api_keys()} == {_box(pending).key_id}  # committed
    current = SecretBox(load_master_key())  # still the first key: the rows say so, clearly
    with pytest.raises(SecretError, match="run it again to finish"):
        load_credentials(store, current, "binance", "main")
    assert _opens_with(store, _box(pending))  # the new key is safe in "master-key-next"

    # 3. Running it again finishes: promotes the pending key, clears it, opens everything.
    keyring.set_keyring(memory_keyring)
    report = rotate(store, actor="alice", now=NOW)
    assert (report.rotated, report.already) == (0, 3)
    assert memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)] == pending
    assert (KEYRING_SERVICE, PENDING_MASTER_KEY_ENTRY) not in memory_keyring.values
    assert _opens_with(store, SecretBox(load_master_key()))
    assert "master-key" in report.next_step


def test_rotation_needs_a_new_key_source(
    store: Store, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = generate_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, raw)
    monkeypatch.delenv(NEW_MASTER_KEY_ENV, raising=False)
    _fill(store, _box(raw))
    before = dump_store(store)
    with pytest.raises(SecretError, match=f"set {NEW_MASTER_KEY_ENV} .* or pass --keyring"):
        rotate(store, actor="alice", now=NOW)
    monkeypatch.setenv(NEW_MASTER_KEY_ENV, raw)
    report = rotate(store, actor="alice", now=NOW)
    assert report.rotated == 0 and "nothing to do" in report.next_step
    assert dump_store(store) == before
    assert memory_keyring.values == {}


def _rotating_child(store_url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, store_url],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigkill_in_the_middle_loses_nothing(store_url: str) -> None:
    old_raw, new_raw = generate_master_key(), generate_master_key()
    old, new = _box(old_raw), _box(new_raw)
    with open_store(store_url) as store:
        _fill(store, old)
    env = {**os.environ, MASTER_KEY_ENV: old_raw, NEW_MASTER_KEY_ENV: new_raw}
    child = _rotating_child(store_url, env)
    assert child.stdout is not None and child.stdin is not None
    line = child.stdout.readline()
    assert line.startswith("re-encrypted"), line + child.stdout.read()
    child.send_signal(signal.SIGKILL)  # the rotation transaction is open, one row rewritten
    child.wait(60)
    with open_store(store_url) as store:
        assert {r.key_id for r in store.list_api_keys()} == {old.key_id}
        assert _opens_with(store, old)
    # The same harness, not killed, completes: the kill above is what stopped it.
    child = _rotating_child(store_url, env)
    out, _ = child.communicate("\n" * len(PAIRS), timeout=120)
    assert child.returncode == 0 and "done 3" in out, out
    with open_store(store_url) as store:
        assert _opens_with(store, new)
    assert old_raw not in out and new_raw not in out
