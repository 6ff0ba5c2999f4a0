"""Where the master key and the TOTP secret come from: the environment, then the OS keyring.

The environment wins (explicit beats ambient); the keyring (`keyring` package: macOS Keychain,
Windows Credential Locker, Secret Service/KWallet) is asked only when the variable is unset.
Every error names each source it tried and what it found there, never a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradelib.errors import SecretError
from tradelib.logs import register_secret

MASTER_KEY_ENV = "TRADELIB_MASTER_KEY"
NEW_MASTER_KEY_ENV = "TRADELIB_NEW_MASTER_KEY"
TOTP_SECRET_ENV = "TRADELIB_TOTP_SECRET"
KEYRING_SERVICE = "tradelib"
MASTER_KEY_ENTRY = "master-key"
PENDING_MASTER_KEY_ENTRY = "master-key-next"  # a rotation's new key, saved before the store
TOTP_ENTRY = "totp-secret"
_KEY_ID_LABEL = b"tradelib master key id v1"


def generate_master_key() -> str:
    """A new random 256-bit master key, base64-encoded (for the environment or the keyring)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def keyring_place(entry: str) -> str:
    """Human description of a keyring entry, for messages."""
    return f"the OS keyring (service {KEYRING_SERVICE!r}, entry {entry!r})"


def env_place(name: str) -> str:
    """Human description of an environment variable, for messages."""
    return f"the environment variable {name}"


@dataclass(frozen=True)
class MasterKey:
    """A 32-byte master key and where it came from; its repr shows only its id and source."""

    key: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A stable public id of this key (keyed hash): names it in errors and in the store."""
        return hmac.new(self.key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id}, source={self.source!r})"


def parse_master_key(raw: str, source: str) -> MasterKey:
    """Decode a base64 master key read from `source`; SecretError says what is wrong with it."""
    register_secret(raw)
    register_secret(raw.strip())
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(
            f"the master key in {source} is not valid base64: replace it with one from "
            "`tradelib secrets new-master-key`"
        ) from None
    if len(key) != 32:
        raise SecretError(
            f"the master key in {source} must decode to 32 bytes, got {len(key)}: replace it "
            "with one from `tradelib secrets new-master-key`"
        )
    return MasterKey(key, source)


def keyring_get(entry: str) -> tuple[str | None, str]:
    """(value, what happened) for a keyring entry; never raises for a missing/broken keyring."""
    import keyring

    try:
        value = keyring.get_password(KEYRING_SERVICE, entry)
    except Exception as exc:  # third-party backends raise anything; say which, then move on
        return None, f"{keyring_place(entry)} could not be read ({type(exc).__name__}: {exc})"
    if not value:
        return None, f"{keyring_place(entry)} has no value"
    register_secret(value)
    return value, f"found in {keyring_place(entry)}"


def keyring_set(entry: str, value: str) -> None:
    """Write a keyring entry; SecretError (naming the backend) when the keyring refuses."""
    import keyring

    register_secret(value)
    try:
        keyring.set_password(KEYRING_SERVICE, entry, value)
    except Exception as exc:
        raise SecretError(
            f"cannot write {keyring_place(entry)} ({type(exc).__name__}: {exc}); nothing was "
            "changed: install/unlock an OS keyring, or keep the key in the environment instead"
        ) from None


def keyring_delete(entry: str) -> None:
    """Remove a keyring entry if it exists (a missing entry is not an error)."""
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(KEYRING_SERVICE, entry)
    except keyring.errors.PasswordDeleteError:
        return
    except Exception as exc:
        raise SecretError(
            f"cannot delete {keyring_place(entry)} ({type(exc).__name__}: {exc})"
        ) from None


def _env_or_keyring(env: str, entry: str) -> tuple[str | None, str, str]:
    """(value, its source, what was found where) from `env`, else the keyring's `entry`."""
    raw = os.environ.get(env)
    if raw and raw.strip():
        register_secret(raw)
        return raw.strip(), env_place(env), ""
    value, note = keyring_get(entry)
    if value is not None:
        return value.strip(), keyring_place(entry), ""
    return None, "", f"{env_place(env)} is not set and {note}"


def load_master_key() -> MasterKey:
    """The master key from TRADELIB_MASTER_KEY, else the OS keyring; errors name both sources."""
    raw, source, tried = _env_or_keyring(MASTER_KEY_ENV, MASTER_KEY_ENTRY)
    if raw is not None:
        return parse_master_key(raw, source)
    raise SecretError(
        f"no master key: {tried}. Create one with "
        "`tradelib secrets new-master-key --keyring` (kept in the OS keyring) or "
        f"`tradelib secrets new-master-key` (printed once for {MASTER_KEY_ENV}: keep it in a "
        "password manager or the service environment, never in the repository)"
    )


def master_key_from_env() -> bytes:
    """The master key from TRADELIB_MASTER_KEY only; SecretError says how to create one."""
    raw = os.environ.get(MASTER_KEY_ENV)
    if not raw:
        raise SecretError(
            f"{MASTER_KEY_ENV} is not set: create one with `tradelib secrets new-master-key` "
            "and keep it outside the repository (a password manager or the service environment)"
        )
    return parse_master_key(raw, env_place(MASTER_KEY_ENV)).key


def load_totp_secret() -> str:
    """The TOTP secret from TRADELIB_TOTP_SECRET, else the OS keyring; errors name both."""
    value, _, tried = _env_or_keyring(TOTP_SECRET_ENV, TOTP_ENTRY)
    if value is not None:
        return value
    raise SecretError(
        f"no TOTP secret: {tried}. Going live, releasing the kill switch and loosening limits "
        "need a TOTP second factor: create one with `tradelib secrets new-totp` and enrol it "
        "in your authenticator app"
    )
