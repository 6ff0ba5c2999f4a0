"""AES-GCM round trips, tamper detection, key ids, master key sources, TOTP rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from tradelib.errors import SecretError
from tradelib.logs import redact
from tradelib.secrets import (
    MASTER_KEY_ENTRY,
    MASTER_KEY_ENV,
    TOTP_ENTRY,
    TOTP_SECRET_ENV,
    Credentials,
    SecretBox,
    check_key_name,
    generate_master_key,
    load_master_key,
    load_totp_secret,
    master_key_from_env,
    matching_step,
    new_totp_secret,
    parse_master_key,
    require_totp,
    time_step,
    totp_fingerprint,
    verify_totp,
)
from tradelib.secrets.sources import KEYRING_SERVICE
from tradelib.secrets.totp import TotpPolicy, _decide
from tradelib.store import TotpUseRecord
from tradelib.testing.memory_keyring import MemoryKeyring

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)




def test_round_trip_and_fresh_nonces() -> None:
    box = SecretBox(base64.b64decode(generate_master_key()))
    c1, n1 = box.encrypt("my-api-secret-value", "binance/main/secret")
    c2, n2 = box.encrypt("my-api-secret-value", "binance/main/secret")
    assert n1 != n2 and c1 != c2
    assert b"my-api-secret-value" not in c1
    assert box.decrypt(c1, n1, "binance/main/secret") == "my-api-secret-value"
    assert redact("leak my-api-secret-value") == "leak ***"  # decrypting registers it


def test_wrong_key_wrong_row_or_tampering_is_refused() -> None:
    box = SecretBox(base64.b64decode(generate_master_key()))
    other = SecretBox(base64.b64decode(generate_master_key()))
    ct, nonce = box.encrypt("value-123456", "binance/main/key")
    with pytest.raises(SecretError, match=r"wrong master key .* or tampered"):
        other.decrypt(ct, nonce, "binance/main/key")
    with pytest.raises(SecretError):
        box.decrypt(ct, nonce, "kraken/main/key")  # ciphertext moved to another row
    with pytest.raises(SecretError):
        box.decrypt(bytes([ct[0] ^ 1]) + ct[1:], nonce, "binance/main/key")


@pytest.mark.parametrize(
    ("ct", "nonce", "message"),
    [
        (b"x" * 40, b"", "its nonce is empty"),
        (b"x" * 40, b"123", "its nonce has 3 bytes instead of 12"),
        (b"short", b"n" * 12, "its ciphertext has 5 bytes"),
    ],
)
def test_damaged_values_are_named_not_a_traceback(ct: bytes, nonce: bytes, message: str) -> None:
    box = SecretBox(base64.b64decode(generate_master_key()))
    with pytest.raises(SecretError, match=message):
        box.decrypt(ct, nonce, "binance/main/key")


def test_key_ids_are_stable_public_and_distinct() -> None:
    raw = generate_master_key()
    first = parse_master_key(raw, "a test")
    again = parse_master_key(raw, "another place")
    other = parse_master_key(generate_master_key(), "a test")
    assert first.key_id == again.key_id != other.key_id
    assert len(first.key_id) == 16
    assert raw not in repr(first) and first.key_id in repr(first)
    assert first.key_id not in raw and base64.b64decode(raw).hex()[:16] != first.key_id


def test_master_key_from_env_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    with pytest.raises(SecretError, match="new-master-key"):
        master_key_from_env()
    monkeypatch.setenv(MASTER_KEY_ENV, "not base64!!")
    with pytest.raises(SecretError, match="not valid base64"):
        master_key_from_env()
    monkeypatch.setenv(MASTER_KEY_ENV, base64.b64encode(b"short").decode())
    with pytest.raises(SecretError, match="32 bytes"):
        master_key_from_env()


def test_master_key_comes_from_env_first_then_keyring(
    monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    in_env, in_ring = generate_master_key(), generate_master_key()
    memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)] = in_ring
    monkeypatch.setenv(MASTER_KEY_ENV, in_env)
    chosen = load_master_key()
    assert chosen.key == base64.b64decode(in_env)
    assert chosen.source == f"the environment variable {MASTER_KEY_ENV}"
    monkeypatch.delenv(MASTER_KEY_ENV)
    chosen = load_master_key()
    assert chosen.key == base64.b64decode(in_ring)
    assert "OS keyring" in chosen.source and "'master-key'" in chosen.source


def test_no_master_key_names_every_source_tried(
    monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    with pytest.raises(SecretError) as empty:
        load_master_key()
    text = str(empty.value)
    assert MASTER_KEY_ENV in text and "is not set" in text
    assert "OS keyring (service 'tradelib', entry 'master-key') has no value" in text
    assert "new-master-key --keyring" in text
    memory_keyring.fail_on.add("get")
    with pytest.raises(SecretError, match=r"could not be read \(KeyringLocked"):
        load_master_key()
    memory_keyring.fail_on.clear()
    memory_keyring.values[(KEYRING_SERVICE, MASTER_KEY_ENTRY)] = "bm90IDMyIGJ5dGVz"
    with pytest.raises(SecretError, match=r"master key in the OS keyring .* 32 bytes"):
        load_master_key()


def test_totp_secret_from_env_then_keyring(
    monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    monkeypatch.delenv(TOTP_SECRET_ENV, raising=False)
    with pytest.raises(SecretError, match="tradelib secrets new-totp"):
        load_totp_secret()
    secret = new_totp_secret()
    memory_keyring.values[(KEYRING_SERVICE, TOTP_ENTRY)] = secret
    assert load_totp_secret() == secret
    assert redact(f"x {secret} y") == "x *** y"


def test_credentials_never_show_their_values() -> None:
    creds = Credentials("binance", "main", "AKIA-visible-key-123", "s3cr3t-value-xyz")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "AKIA-visible-key-123" not in text and "s3cr3t-value-xyz" not in text
    assert redact("key=AKIA-visible-key-123") == "key=***"
    box = SecretBox(base64.b64decode(generate_master_key()))
    assert "key=***" in repr(box)


@pytest.mark.parametrize(
    ("exchange", "label", "message"),
    [
        ("binanse", "main", "unknown exchange 'binanse': tradelib trades live on binance"),
        ("", "main", "unknown exchange ''"),
        ("binance", "", "is not a plain name"),
        ("binance", "main key", "is not a plain name"),
        ("binance", "../etc", "is not a plain name"),
    ],
)
def test_key_names_are_checked(exchange: str, label: str, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        check_key_name(exchange, label)


def test_totp_accepts_current_code_and_refuses_others() -> None:
    secret = new_totp_secret()
    code = pyotp.TOTP(secret).at(NOW)
    assert verify_totp(code, secret, NOW)
    assert verify_totp(code, secret, NOW + timedelta(seconds=30))  # one step of clock drift
    assert not verify_totp(code, secret, NOW + timedelta(minutes=5))
    assert not verify_totp("12345", secret, NOW)
    assert not verify_totp("abcdef", secret, NOW)
    with pytest.raises(SecretError, match="needs a TOTP code"):
        require_totp(None, secret, NOW, "going live")
    with pytest.raises(SecretError, match="going live refused"):
        require_totp("000000" if code != "000000" else "111111", secret, NOW, "going live")
    require_totp(code, secret, NOW, "going live")


def test_matching_step_names_the_step_of_the_code() -> None:
    secret = new_totp_secret()
    totp = pyotp.TOTP(secret)
    center = time_step(NOW)
    for offset in (-1, 0, 1):
        at = NOW + timedelta(seconds=30 * offset)
        assert matching_step(totp.at(at), secret, NOW) == center + offset
    assert matching_step(totp.at(NOW + timedelta(seconds=90)), secret, NOW) is None
    assert matching_step(f" {totp.at(NOW)} ", secret, NOW) == center


def test_fingerprint_is_keyed_stable_and_reveals_nothing() -> None:
    secret = new_totp_secret()
    fp = totp_fingerprint(secret)
    assert fp == totp_fingerprint(secret.lower()) == totp_fingerprint(f" {secret} ")
    assert fp != totp_fingerprint(new_totp_secret())
    assert secret not in fp and secret.lower() not in fp
    with pytest.raises(SecretError, match="fewer than 128"):
        totp_fingerprint("JBSWY3DPEHPK3PXP")  # the 80-bit example secret from the RFC docs
    with pytest.raises(SecretError, match="not base32"):
        totp_fingerprint("not-base32!!")


POLICY = TotpPolicy(max_failures=3, failure_window=timedelta(minutes=5))


def _fresh() -> TotpUseRecord:
    return TotpUseRecord("fp", NOW)


def test_a_step_is_accepted_once_and_older_steps_never() -> None:
    step = time_step(NOW)
    record, refusal, reason = _decide(_fresh(), step, NOW, "go live", "alice", POLICY)
    assert refusal is None and reason == "accepted"
    assert record.last_step == step and record.last_action == "go live"
    again, refusal, reason = _decide(record, step, NOW, "release", "mallory", POLICY)
    assert reason == "replayed" and refusal is not None
    assert "already used" in refusal and "go live" in refusal
    assert again.failures == 1 and again.last_step == step
    _, refusal, _ = _decide(record, step - 1, NOW, "release", "alice", POLICY)
    assert refusal is not None  # an older code than the last one used
    later, refusal, _ = _decide(record, step + 1, NOW, "release", "alice", POLICY)
    assert refusal is None and later.last_step == step + 1


def test_failures_lock_the_factor_then_expire() -> None:
    record = _fresh()
    for i in range(1, 3):
        record, refusal, _ = _decide(record, None, NOW + timedelta(seconds=i), "x", "m", POLICY)
        assert refusal is not None and f"{3 - i} more failed codes" in refusal
    record, refusal, _ = _decide(record, None, NOW + timedelta(seconds=3), "x", "m", POLICY)
    assert refusal is not None and "locked until" in refusal
    assert record.locked_until == NOW + timedelta(seconds=3) + POLICY.lockout
    # While locked, even the right code is refused and nothing about it is evaluated.
    good = time_step(NOW)
    same, refusal, reason = _decide(record, good, NOW + timedelta(minutes=1), "x", "alice", POLICY)
    assert reason == "locked" and same == record and refusal is not None
    after = record.locked_until + timedelta(seconds=1)
    record, refusal, _ = _decide(record, time_step(after), after, "x", "alice", POLICY)
    assert refusal is None and record.failures == 0 and record.locked_until is None


def test_failures_outside_the_window_start_a_new_count() -> None:
    record = _fresh()
    record, _, _ = _decide(record, None, NOW, "x", "m", POLICY)
    record, _, _ = _decide(record, None, NOW + timedelta(seconds=10), "x", "m", POLICY)
    assert record.failures == 2
    late = NOW + POLICY.failure_window + timedelta(seconds=1)
    record, refusal, _ = _decide(record, None, late, "x", "m", POLICY)
    assert record.failures == 1 and record.locked_until is None
    assert refusal is not None and "2 more failed codes" in refusal
