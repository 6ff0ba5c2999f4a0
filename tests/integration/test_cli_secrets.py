"""`tradelib secrets` as a person uses it: set-key asks before replacing, rotate, keyring."""

from __future__ import annotations

import pytest
from click.testing import Result
from store_dump import dump_store
from typer.testing import CliRunner

from tradelib.cli import app
from tradelib.secrets import (
    KEYRING_SERVICE,
    MASTER_KEY_ENTRY,
    MASTER_KEY_ENV,
    NEW_MASTER_KEY_ENV,
    TOTP_ENTRY,
    SecretBox,
    generate_master_key,
    load_credentials,
    load_master_key,
    parse_master_key,
)
from tradelib.store import open_store
from tradelib.testing.memory_keyring import MemoryKeyring

runner = CliRunner()
PAIR = "AKIA-fake-0123456789\nfake-secret-0123456789abcdef\n"
OTHER = "AKIA-other-0123456789\nother-secret-0123456789abcdef\n"




def _set(store_url: str, *extra: str, input: str = PAIR) -> Result:
    args = ["secrets", "set-key", "--exchange", "binance", "--store", store_url, *extra]
    return runner.invoke(app, args, input=input)


def test_set_key_refuses_unknown_venues_before_asking_anything(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, generate_master_key())
    args = ["secrets", "set-key", "--exchange", "binanse", "--store", store_url]
    result = runner.invoke(app, args, input=PAIR)
    assert result.exit_code == 2
    assert "unknown exchange 'binanse': tradelib trades live on binance, coinbase, kraken" in (
        result.output
    )
    assert "API key:" not in result.output  # refused before prompting for the secret


def test_set_key_asks_before_replacing_and_audits(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = generate_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, master)
    first = _set(store_url, "--by", "alice")
    assert first.exit_code == 0, first.output
    with open_store(store_url) as db:
        before = dump_store(db)
    declined = _set(store_url, "--by", "mallory", input="n\n" + OTHER)
    assert declined.exit_code == 1
    assert "is stored (since" in declined.output
    assert "Replace it?" in declined.output
    assert "kept the stored key pair; nothing was changed" in declined.output
    with open_store(store_url) as db:
        assert dump_store(db) == before
    no_answer = _set(store_url, input="")  # a script without --replace: nothing replaced
    assert no_answer.exit_code != 0
    replaced = _set(store_url, "--by", "bob", input="y\n" + OTHER)
    assert replaced.exit_code == 0, replaced.output
    assert "replaced the API key pair binance/main" in replaced.output
    again = _set(store_url, "--replace", "--by", "carol", input=PAIR)
    assert again.exit_code == 0 and "Replace it?" not in again.output
    with open_store(store_url) as db:
        box = SecretBox(parse_master_key(master, "test"))
        assert load_credentials(db, box, "binance", "main").api_key == "AKIA-fake-0123456789"
        audit = [(e.actor, e.action) for e in db.list_audit()]
    assert audit == [
        ("alice", "api_key_stored"),
        ("bob", "api_key_replaced"),
        ("carol", "api_key_replaced"),
    ]


def test_rotate_from_the_environment(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = generate_master_key(), generate_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, old)
    assert _set(store_url).exit_code == 0
    monkeypatch.setenv(NEW_MASTER_KEY_ENV, new)
    result = runner.invoke(app, ["secrets", "rotate", "--store", store_url, "--by", "alice"])
    assert result.exit_code == 0, result.output
    new_id = parse_master_key(new, "t").key_id
    old_id = parse_master_key(old, "t").key_id
    assert f"re-encrypted 1 API key pair(s) from master key {old_id} to {new_id}" in result.output
    assert f"now set {MASTER_KEY_ENV} to the value of {NEW_MASTER_KEY_ENV}" in result.output
    assert old not in result.output and new not in result.output
    listing = runner.invoke(app, ["secrets", "list", "--store", store_url])
    assert f"master key {new_id}" in listing.output
    monkeypatch.setenv(MASTER_KEY_ENV, new)
    monkeypatch.delenv(NEW_MASTER_KEY_ENV)
    with open_store(store_url) as db:
        creds = load_credentials(db, SecretBox(load_master_key()), "binance", "main")
    assert creds.api_secret == "fake-secret-0123456789abcdef"


def test_keyring_master_key_end_to_end(store_url: str, memory_keyring: MemoryKeyring) -> None:
    made = runner.invoke(app, ["secrets", "new-master-key", "--keyring"])
    assert made.exit_code == 0, made.output
    stored = memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)]
    assert stored not in made.output and "saved in the OS keyring" in made.output
    again = runner.invoke(app, ["secrets", "new-master-key", "--keyring"])
    assert again.exit_code == 2 and "use `tradelib secrets rotate`" in again.output
    assert _set(store_url).exit_code == 0
    rotated = runner.invoke(app, ["secrets", "rotate", "--keyring", "--store", store_url])
    assert rotated.exit_code == 0, rotated.output
    assert memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)] != stored
    with open_store(store_url) as db:
        creds = load_credentials(db, SecretBox(load_master_key()), "binance", "main")
    assert creds.api_key == "AKIA-fake-0123456789"
    totp = runner.invoke(app, ["secrets", "new-totp", "--keyring"])
    secret = memory_keyring.values[(KEYRING_SERVICE, TOTP_ENTRY)]
    assert totp.exit_code == 0 and "otpauth://totp/" in totp.output
    assert f"TRADELIB_TOTP_SECRET={secret}" not in totp.output


def test_missing_master_key_says_which_sources_were_tried(
    store_url: str, memory_keyring: MemoryKeyring
) -> None:
    result = _set(store_url)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"{MASTER_KEY_ENV} is not set" in text
    assert "the OS keyring (service 'tradelib', entry 'master-key') has no value" in text
