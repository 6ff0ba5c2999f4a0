"""AES-GCM round trips, tamper detection, redacted reprs and TOTP verification."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from tradelib.errors import SecretError
from tradelib.logs import redact
from tradelib.secrets import (
    MASTER_KEY_ENV,
    Credentials,
    SecretBox,
    generate_master_key,
    master_key_from_env,
    new_totp_secret,
    require_totp,
    verify_totp,
)

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


def test_credentials_never_show_their_values() -> None:
    creds = Credentials("binance", "main", "AKIA-visible-key-123", "s3cr3t-value-xyz")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "AKIA-visible-key-123" not in text and "s3cr3t-value-xyz" not in text
    assert redact("key=AKIA-visible-key-123") == "key=***"


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
