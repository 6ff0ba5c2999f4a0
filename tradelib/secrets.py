"""API keys encrypted at rest (AES-GCM) and TOTP second factors; nothing here prints a secret."""

from __future__ import annotations

import base64
import binascii
import os
import secrets as _random
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradelib.domain import require_utc
from tradelib.errors import SecretError
from tradelib.logs import register_secret

if TYPE_CHECKING:
    from tradelib.store import Store

MASTER_KEY_ENV = "TRADELIB_MASTER_KEY"
TOTP_SECRET_ENV = "TRADELIB_TOTP_SECRET"
_NONCE_BYTES = 12


def generate_master_key() -> str:
    """A new random 256-bit master key, base64-encoded for TRADELIB_MASTER_KEY."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def master_key_from_env() -> bytes:
    """The master key from TRADELIB_MASTER_KEY; SecretError says how to create one."""
    raw = os.environ.get(MASTER_KEY_ENV)
    if not raw:
        raise SecretError(
            f"{MASTER_KEY_ENV} is not set: create one with `tradelib secrets new-master-key` "
            "and keep it outside the repository (a password manager or the service environment)"
        )
    register_secret(raw)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"{MASTER_KEY_ENV} is not valid base64") from None
    if len(key) != 32:
        raise SecretError(f"{MASTER_KEY_ENV} must decode to 32 bytes, got {len(key)}")
    return key


class SecretBox:
    """AES-256-GCM with a fresh nonce per value; `aad` binds a ciphertext to its row."""

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "SecretBox(key=***)"

    def encrypt(self, plaintext: str, aad: str) -> tuple[bytes, bytes]:
        """Return (ciphertext, nonce) for `plaintext`, bound to `aad`."""
        nonce = os.urandom(_NONCE_BYTES)
        return self._aead.encrypt(nonce, plaintext.encode(), aad.encode()), nonce

    def decrypt(self, ciphertext: bytes, nonce: bytes, aad: str) -> str:
        """Decrypt, or raise SecretError if the key is wrong or the data was tampered with."""
        try:
            value = self._aead.decrypt(nonce, ciphertext, aad.encode()).decode()
        except InvalidTag:
            raise SecretError(
                f"cannot decrypt the secret for {aad}: wrong {MASTER_KEY_ENV} or tampered data"
            ) from None
        register_secret(value)
        return value


@dataclass(frozen=True)
class Credentials:
    """An exchange API key pair; its repr never shows either value."""

    exchange: str
    label: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(self.api_key)
        register_secret(self.api_secret)

    def __repr__(self) -> str:
        return f"Credentials(exchange={self.exchange!r}, label={self.label!r}, api_key=***)"


def new_totp_secret() -> str:
    """A new base32 TOTP secret to enrol in an authenticator app."""
    return pyotp.random_base32()


def totp_secret_from_env() -> str:
    """The TOTP secret from TRADELIB_TOTP_SECRET; SecretError says how to enrol one."""
    value = os.environ.get(TOTP_SECRET_ENV)
    if not value:
        raise SecretError(
            f"{TOTP_SECRET_ENV} is not set: going live and releasing the kill switch need a "
            "TOTP second factor; create one with `tradelib secrets new-totp` and enrol it"
        )
    register_secret(value)
    return value


def verify_totp(code: str, secret: str, now: datetime, valid_window: int = 1) -> bool:
    """True when `code` is the TOTP for `now` (±`valid_window` 30-second steps)."""
    register_secret(secret)
    at = require_utc(now, "TOTP time")
    if not code or not code.strip().isdigit():
        return False
    return bool(pyotp.TOTP(secret).verify(code.strip(), for_time=at, valid_window=valid_window))


def require_totp(code: str | None, secret: str, now: datetime, action: str) -> None:
    """Raise SecretError unless `code` is a valid TOTP for `action` (going live, release)."""
    if not code:
        raise SecretError(f"{action} needs a TOTP code from your authenticator app")
    if not verify_totp(code, secret, now):
        raise SecretError(f"{action} refused: the TOTP code is wrong or expired")


def random_token(nbytes: int = 24) -> str:
    """A URL-safe random token, registered as a secret."""
    token = _random.token_urlsafe(nbytes)
    register_secret(token)
    return token


def _aad(exchange: str, label: str, part: str) -> str:
    return f"{exchange}/{label}/{part}"


def save_credentials(store: Store, box: SecretBox, credentials: Credentials) -> int:
    """Encrypt and store an API key pair under (exchange, label); returns its row id."""
    ex, label = credentials.exchange, credentials.label
    key_ct, key_nonce = box.encrypt(credentials.api_key, _aad(ex, label, "key"))
    secret_ct, secret_nonce = box.encrypt(credentials.api_secret, _aad(ex, label, "secret"))
    return store.save_api_key(ex, label, key_ct, key_nonce, secret_ct, secret_nonce)


def load_credentials(store: Store, box: SecretBox, exchange: str, label: str) -> Credentials:
    """Decrypt the API key pair of (exchange, label); SecretError when absent or undecryptable."""
    record = store.get_api_key(exchange, label)
    if record is None:
        raise SecretError(
            f"no API key stored for {exchange}/{label}: add one with "
            f"`tradelib secrets set-key --exchange {exchange} --label {label}`"
        )
    return Credentials(
        exchange,
        label,
        box.decrypt(record.key_ciphertext, record.key_nonce, _aad(exchange, label, "key")),
        box.decrypt(record.secret_ciphertext, record.secret_nonce, _aad(exchange, label, "secret")),
    )
