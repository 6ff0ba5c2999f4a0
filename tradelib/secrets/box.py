"""API keys encrypted at rest (AES-256-GCM) in the store's api_keys table.

Each stored value has its own random nonce and is bound to its row by associated data
("binance/main/key"), so a ciphertext copied to another row does not decrypt. Each row also
records the id of the master key it is encrypted under: a wrong master key, a damaged row and
an interrupted rotation are told apart and named, instead of all failing as "cannot decrypt".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradelib.audit import AuditLog
from tradelib.errors import SecretError
from tradelib.logs import register_secret
from tradelib.secrets.sources import MasterKey

if TYPE_CHECKING:
    from tradelib.store import ApiKeyRecord, Store

NONCE_BYTES = 12
_TAG_BYTES = 16
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class SecretBox:
    """AES-256-GCM with a fresh nonce per value; `aad` binds a ciphertext to its row."""

    def __init__(self, master_key: bytes | MasterKey, source: str = "the given master key") -> None:
        if isinstance(master_key, MasterKey):
            self.master = master_key
        else:
            self.master = MasterKey(bytes(master_key), source)
        self._aead = AESGCM(self.master.key)

    def __repr__(self) -> str:
        return f"SecretBox(key=***, id={self.key_id})"

    @property
    def key_id(self) -> str:
        """Public id of the master key (stored beside every ciphertext it made)."""
        return self.master.key_id

    @property
    def source(self) -> str:
        """Where the master key came from (environment, keyring, …), for messages."""
        return self.master.source

    def encrypt(self, plaintext: str, aad: str) -> tuple[bytes, bytes]:
        """Return (ciphertext, nonce) for `plaintext`, bound to `aad`."""
        nonce = os.urandom(NONCE_BYTES)
        return self._aead.encrypt(nonce, plaintext.encode(), aad.encode()), nonce

    def decrypt(self, ciphertext: bytes, nonce: bytes, aad: str) -> str:
        """Decrypt, or raise SecretError if the key is wrong or the data was tampered with."""
        damage = _damage(ciphertext, nonce)
        if damage:
            raise SecretError(f"the encrypted value of {aad} is damaged ({damage})")
        try:
            value = self._aead.decrypt(nonce, ciphertext, aad.encode()).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise SecretError(
                f"cannot decrypt the secret for {aad}: wrong master key (from {self.source}) "
                "or tampered data"
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


def known_exchanges() -> list[str]:
    """Exchange ids tradelib can trade live on (a key for any other venue is refused)."""
    from tradelib.exchange.venues import VENUES

    return sorted(VENUES)


def check_key_name(exchange: str, label: str) -> None:
    """SecretError unless `exchange` is a live venue and `label` a plain name."""
    venues = known_exchanges()
    if exchange not in venues:
        raise SecretError(
            f"unknown exchange {exchange!r}: tradelib trades live on {', '.join(venues)}; "
            "give one of these with --exchange (nothing was stored)"
        )
    if not _LABEL.match(label or ""):
        raise SecretError(
            f"label {label!r} is not a plain name: use letters, digits, '_', '.' or '-' "
            "(at most 100, e.g. 'main')"
        )


def _clean(value: str, what: str) -> str:
    text = (value or "").strip()
    register_secret(text)
    if not text:
        raise SecretError(f"the {what} is empty: paste the value the exchange showed you")
    if any(ch.isspace() for ch in text) or not text.isprintable():
        raise SecretError(
            f"the {what} contains spaces or control characters: paste it again as one word"
        )
    return text


def _aad(exchange: str, label: str, part: str) -> str:
    return f"{exchange}/{label}/{part}"


def encrypt_pair(box: SecretBox, credentials: Credentials) -> tuple[bytes, bytes, bytes, bytes]:
    """(key ciphertext, key nonce, secret ciphertext, secret nonce) of a key pair under `box`."""
    ex, label = credentials.exchange, credentials.label
    key_ct, key_nonce = box.encrypt(credentials.api_key, _aad(ex, label, "key"))
    secret_ct, secret_nonce = box.encrypt(credentials.api_secret, _aad(ex, label, "secret"))
    return key_ct, key_nonce, secret_ct, secret_nonce


def save_credentials(
    store: Store,
    box: SecretBox,
    credentials: Credentials,
    *,
    replace: bool = False,
    actor: str = "unknown",
    now: datetime | None = None,
) -> int:
    """Encrypt and store an API key pair under (exchange, label), audited; returns its row id.

    Refuses (SecretError, nothing changed) an unknown exchange, an empty key or secret, an
    existing pair unless `replace`, and a master key other than the one the store's other keys
    are encrypted under (that would leave keys no single master key opens).
    """
    ex, label = credentials.exchange, credentials.label
    check_key_name(ex, label)
    clean = Credentials(
        ex, label, _clean(credentials.api_key, "API key"), _clean(credentials.api_secret, "secret")
    )
    at = now or datetime.now(UTC)
    with store.transaction():
        store.lock("api_keys")
        existing = store.get_api_key(ex, label)
        if existing is not None and not replace:
            raise SecretError(
                f"an API key pair for {ex}/{label} is already stored (since "
                f"{existing.created_at:%Y-%m-%d %H:%M} UTC); nothing was changed: replace it "
                f"with `tradelib secrets set-key --exchange {ex} --label {label} --replace`"
            )
        others = {
            r.key_id
            for r in store.list_api_keys()
            if r.key_id and (r.exchange, r.label) != (ex, label)
        }
        if others and box.key_id not in others:
            raise SecretError(
                f"the store's other API keys are encrypted under master key id "
                f"{', '.join(sorted(others))}, but the master key from {box.source} has id "
                f"{box.key_id}; nothing was stored: use the same master key (or finish a "
                "rotation with `tradelib secrets rotate`)"
            )
        row_id = store.save_api_key(ex, label, *encrypt_pair(box, clean), at=at, key_id=box.key_id)
        action = "api_key_replaced" if existing is not None else "api_key_stored"
        payload = {"exchange": ex, "label": label, "master_key_id": box.key_id}
        AuditLog(store).record(actor, action, payload, at)
    return row_id


def decrypt_record(box: SecretBox, record: ApiKeyRecord) -> Credentials:
    """The plaintext pair of one api_keys row; SecretError names the row, the key and the fix."""
    ex, label = record.exchange, record.label
    fix = f"`tradelib secrets set-key --exchange {ex} --label {label} --replace`"
    if record.key_id is not None and record.key_id != box.key_id:
        raise SecretError(
            f"the API key {ex}/{label} is encrypted under master key id {record.key_id}, but the "
            f"master key from {box.source} has id {box.key_id}: wrong master key. Set the key "
            "it was stored with; if `tradelib secrets rotate` was interrupted, run it again to "
            "finish (nothing was changed)"
        )
    parts = []
    for part, ct, nonce in (
        ("key", record.key_ciphertext, record.key_nonce),
        ("secret", record.secret_ciphertext, record.secret_nonce),
    ):
        what = f"the stored API {part} of {ex}/{label}"
        damage = _damage(ct, nonce)
        if damage:
            raise SecretError(
                f"{what} is damaged ({damage}); nothing was changed: store the pair again "
                f"with {fix}"
            )
        try:
            parts.append(box.decrypt(ct, nonce, _aad(ex, label, part)))
        except SecretError:
            if record.key_id is None:  # stored before key ids: a wrong key and damage look alike
                raise SecretError(
                    f"cannot decrypt {what} with the master key from {box.source}: the master "
                    "key is wrong or the row was damaged. Check the master key; if it is right, "
                    f"store the pair again with {fix} (nothing was changed)"
                ) from None
            raise SecretError(
                f"{what} is damaged or was tampered with: it does not decrypt under the master "
                f"key it was stored with (id {box.key_id}). Nothing was changed: store the pair "
                f"again with {fix}"
            ) from None
    return Credentials(ex, label, parts[0], parts[1])


def _damage(ciphertext: bytes, nonce: bytes) -> str:
    if not nonce:
        return "its nonce is empty"
    if len(nonce) != NONCE_BYTES:
        return f"its nonce has {len(nonce)} bytes instead of {NONCE_BYTES}"
    if len(ciphertext) < _TAG_BYTES:
        return f"its ciphertext has {len(ciphertext)} bytes, fewer than its authentication tag"
    return ""


def load_credentials(store: Store, box: SecretBox, exchange: str, label: str) -> Credentials:
    """Decrypt the API key pair of (exchange, label); SecretError when absent or undecryptable."""
    record = store.get_api_key(exchange, label)
    if record is None:
        stored = [f"{r.exchange}/{r.label}" for r in store.list_api_keys()]
        have = f" (stored: {', '.join(stored)})" if stored else ""
        raise SecretError(
            f"no API key stored for {exchange}/{label}{have}: add one with "
            f"`tradelib secrets set-key --exchange {exchange} --label {label}`"
        )
    return decrypt_record(box, record)
