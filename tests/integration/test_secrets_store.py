"""Encrypted API keys in real stores: bad input changes nothing, errors say what to do.

On both backends: a missing key, a wrong master key, a corrupted ciphertext and an empty nonce
each give a clear SecretError and leave every table as it was; storing refuses unknown venues,
silent replacement and a second master key, and audits what it does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from store_dump import dump_store

from tradelib.audit import AuditLog
from tradelib.errors import SecretError
from tradelib.secrets import (
    Credentials,
    SecretBox,
    generate_master_key,
    load_credentials,
    parse_master_key,
    save_credentials,
)
from tradelib.store import Store

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
KEY, SECRET = "AKIA-fake-key-0123456789", "fake-secret-9876543210-abcdef"


def _box(source: str = "the environment variable TRADELIB_MASTER_KEY") -> SecretBox:
    return SecretBox(parse_master_key(generate_master_key(), source))


def _stored(store: Store, box: SecretBox, exchange: str = "binance") -> None:
    save_credentials(store, box, Credentials(exchange, "main", KEY, SECRET), actor="alice", now=NOW)


def test_round_trip_is_audited_and_keeps_the_key_id(store: Store) -> None:
    box = _box()
    _stored(store, box)
    creds = load_credentials(store, box, "binance", "main")
    assert (creds.api_key, creds.api_secret) == (KEY, SECRET)
    record = store.get_api_key("binance", "main")
    assert record is not None and record.key_id == box.key_id
    assert KEY.encode() not in record.key_ciphertext
    assert SECRET.encode() not in record.secret_ciphertext
    [entry] = store.list_audit()
    assert (entry.actor, entry.action) == ("alice", "api_key_stored")
    assert entry.payload == {"exchange": "binance", "label": "main", "master_key_id": box.key_id}
    assert AuditLog(store).verify().ok


def test_missing_key_names_what_is_stored_and_how_to_add(store: Store) -> None:
    box = _box()
    _stored(store, box, exchange="kraken")
    before = dump_store(store)
    with pytest.raises(SecretError) as missing:
        load_credentials(store, box, "binance", "main")
    assert str(missing.value) == (
        "no API key stored for binance/main (stored: kraken/main): add one with "
        "`tradelib secrets set-key --exchange binance --label main`"
    )
    assert dump_store(store) == before


def test_wrong_master_key_is_named_with_both_ids(store: Store) -> None:
    right = _box()
    _stored(store, right)
    before = dump_store(store)
    wrong = _box("the OS keyring (service 'tradelib', entry 'master-key')")
    with pytest.raises(SecretError) as refused:
        load_credentials(store, wrong, "binance", "main")
    text = str(refused.value)
    assert f"encrypted under master key id {right.key_id}" in text
    source = "the OS keyring (service 'tradelib', entry 'master-key')"
    assert f"the master key from {source} has id {wrong.key_id}" in text
    assert "wrong master key" in text and "tradelib secrets rotate" in text
    assert dump_store(store) == before


def _corrupt(store: Store, column: str, value: bytes) -> None:
    store._query(f"UPDATE api_keys SET {column} = ? WHERE exchange = 'binance'", (value,))


def test_corrupted_ciphertext_is_damage_not_a_wrong_key(store: Store) -> None:
    box = _box()
    _stored(store, box)
    record = store.get_api_key("binance", "main")
    assert record is not None
    flipped = bytes([record.secret_ciphertext[0] ^ 0x01]) + record.secret_ciphertext[1:]
    _corrupt(store, "secret_ciphertext", flipped)
    before = dump_store(store)
    with pytest.raises(SecretError) as damaged:
        load_credentials(store, box, "binance", "main")
    text = str(damaged.value)
    assert "the stored API secret of binance/main is damaged or was tampered with" in text
    assert "set-key --exchange binance --label main --replace" in text
    assert dump_store(store) == before


def test_empty_nonce_is_a_clear_error(store: Store) -> None:
    box = _box()
    _stored(store, box)
    _corrupt(store, "key_nonce", b"")
    before = dump_store(store)
    with pytest.raises(SecretError) as damaged:
        load_credentials(store, box, "binance", "main")
    expected = "the stored API key of binance/main is damaged (its nonce is empty)"
    assert expected in str(damaged.value)
    assert dump_store(store) == before


def test_rows_from_before_key_ids_still_say_what_to_check(store: Store) -> None:
    box = _box()
    _stored(store, box)
    store._query("UPDATE api_keys SET key_id = NULL")
    assert load_credentials(store, box, "binance", "main").api_secret == SECRET
    with pytest.raises(SecretError, match="the master key is wrong or the row was damaged"):
        load_credentials(store, _box(), "binance", "main")


@pytest.mark.parametrize(
    ("exchange", "api_key", "message"),
    [
        ("binanse", KEY, "unknown exchange 'binanse'"),
        ("binance", "   ", "the API key is empty"),
        ("binance", "two words", "contains spaces"),
    ],
)
def test_bad_input_stores_nothing(store: Store, exchange: str, api_key: str, message: str) -> None:
    before = dump_store(store)
    with pytest.raises(SecretError, match=message):
        save_credentials(store, _box(), Credentials(exchange, "main", api_key, SECRET), actor="a")
    assert dump_store(store) == before


def test_replacing_needs_consent_and_is_audited(store: Store) -> None:
    box = _box()
    _stored(store, box)
    before = dump_store(store)
    new = Credentials("binance", "main", "NEW-KEY-123456", "NEW-SECRET-1234")
    with pytest.raises(SecretError, match=r"already stored .* --replace"):
        save_credentials(store, box, new)
    assert dump_store(store) == before
    save_credentials(store, box, new, replace=True, actor="bob", now=NOW)
    assert load_credentials(store, box, "binance", "main").api_key == "NEW-KEY-123456"
    assert [(r.actor, r.action) for r in store.list_audit()] == [
        ("alice", "api_key_stored"),
        ("bob", "api_key_replaced"),
    ]


def test_a_second_master_key_is_refused(store: Store) -> None:
    _stored(store, _box())
    before = dump_store(store)
    other = _box()
    with pytest.raises(SecretError, match=f"has id {other.key_id}; nothing was stored"):
        save_credentials(store, other, Credentials("kraken", "main", KEY, SECRET))
    assert dump_store(store) == before
