"""Encrypted API keys, one-time TOTP records and API key permission checks (migration 0003).

Nothing here sees a plaintext secret: `api_keys` holds AES-GCM ciphertexts (see
`tradelib.secrets`), `totp_uses` a keyed fingerprint of each TOTP secret, and `key_checks`
what the exchange said about a key's permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tradelib.errors import DataError
from tradelib.store.core import Row, StoreCore
from tradelib.store.records import (
    ApiKeyRecord,
    decode_json,
    encode_json,
    now_utc,
    utc_in,
    utc_out,
)

_KEY_COLUMNS = (
    "id, exchange, label, key_ciphertext, key_nonce, secret_ciphertext, secret_nonce, "
    "created_at, key_id"
)
_TOTP_COLUMNS = (
    "fingerprint, last_step, last_action, last_actor, last_used_at, failures, "
    "window_started_at, locked_until, updated_at"
)
_CHECK_COLUMNS = (
    "id, exchange, label, checked_at, actor, verdict, restrictions, problems, override_reason"
)
VERDICTS = ("safe", "refused", "overridden")


@dataclass(frozen=True, slots=True)
class TotpUseRecord:
    """A row of totp_uses: the last accepted step and the wrong-code counter of one secret."""

    fingerprint: str
    updated_at: datetime
    last_step: int | None = None
    last_action: str | None = None
    last_actor: str | None = None
    last_used_at: datetime | None = None
    failures: int = 0
    window_started_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyCheckRecord:
    """A row of key_checks: what the exchange said about a key and what tradelib decided."""

    id: int
    exchange: str
    label: str
    checked_at: datetime
    actor: str
    verdict: str
    restrictions: dict[str, Any]
    problems: list[dict[str, Any]]
    override_reason: str | None = None


def _aware(value: Any) -> datetime:
    out = utc_out(value)
    assert out is not None  # NOT NULL columns
    return out


def _api_key(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        int(row[0]), row[1], row[2],
        bytes(row[3]), bytes(row[4]), bytes(row[5]), bytes(row[6]), utc_out(row[7]), row[8],
    )  # fmt: skip


def _totp(row: Row) -> TotpUseRecord:
    return TotpUseRecord(
        fingerprint=row[0],
        last_step=None if row[1] is None else int(row[1]),
        last_action=row[2],
        last_actor=row[3],
        last_used_at=utc_out(row[4]),
        failures=int(row[5]),
        window_started_at=utc_out(row[6]),
        locked_until=utc_out(row[7]),
        updated_at=_aware(row[8]),
    )


def _check(row: Row) -> KeyCheckRecord:
    return KeyCheckRecord(
        int(row[0]), row[1], row[2], _aware(row[3]), row[4], row[5],
        decode_json(row[6]), decode_json(row[7]), row[8],
    )  # fmt: skip


class SecurityMixin(StoreCore):
    """api_keys, totp_uses and key_checks."""

    # -- encrypted API keys -----------------------------------------------------------------

    def save_api_key(
        self,
        exchange: str,
        label: str,
        key_ciphertext: bytes,
        key_nonce: bytes,
        secret_ciphertext: bytes,
        secret_nonce: bytes,
        at: datetime | None = None,
        key_id: str | None = None,
    ) -> int:
        """Insert or replace the encrypted key pair of (exchange, label); returns its id."""
        row = self._one(
            "INSERT INTO api_keys (exchange, label, key_ciphertext, key_nonce, secret_ciphertext, "
            "secret_nonce, created_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (exchange, label) DO UPDATE SET key_ciphertext = excluded.key_ciphertext, "
            "key_nonce = excluded.key_nonce, secret_ciphertext = excluded.secret_ciphertext, "
            "secret_nonce = excluded.secret_nonce, created_at = excluded.created_at, "
            "key_id = excluded.key_id RETURNING id",
            (
                exchange,
                label,
                bytes(key_ciphertext),
                bytes(key_nonce),
                bytes(secret_ciphertext),
                bytes(secret_nonce),
                utc_in(at, "api key created_at") or now_utc(),
                key_id,
            ),
        )
        assert row is not None
        return int(row[0])

    def reencrypt_api_key(
        self,
        key_row_id: int,
        key_ciphertext: bytes,
        key_nonce: bytes,
        secret_ciphertext: bytes,
        secret_nonce: bytes,
        key_id: str,
    ) -> None:
        """Replace the ciphertexts of one row in place (master key rotation); keeps created_at."""
        row = self._one(
            "UPDATE api_keys SET key_ciphertext = ?, key_nonce = ?, secret_ciphertext = ?, "
            "secret_nonce = ?, key_id = ? WHERE id = ? RETURNING id",
            (
                bytes(key_ciphertext),
                bytes(key_nonce),
                bytes(secret_ciphertext),
                bytes(secret_nonce),
                key_id,
                key_row_id,
            ),
        )
        if row is None:
            raise DataError(f"api_keys row {key_row_id} is gone; nothing was re-encrypted")

    def get_api_key(self, exchange: str, label: str) -> ApiKeyRecord | None:
        """The encrypted key pair of (exchange, label), or None."""
        row = self._one(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE exchange = ? AND label = ?",
            (exchange, label),
        )
        return _api_key(row) if row else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        """Every stored key pair (still encrypted), by exchange and label."""
        rows = self._query(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY exchange, label")
        return [_api_key(r) for r in rows]

    def delete_api_key(self, exchange: str, label: str) -> bool:
        """Remove a key pair; False if there was none."""
        row = self._one(
            "DELETE FROM api_keys WHERE exchange = ? AND label = ? RETURNING id", (exchange, label)
        )
        return row is not None

    # -- one-time TOTP codes ----------------------------------------------------------------

    def get_totp_use(self, fingerprint: str) -> TotpUseRecord | None:
        """The use record of the TOTP secret with this fingerprint, or None."""
        row = self._one(
            f"SELECT {_TOTP_COLUMNS} FROM totp_uses WHERE fingerprint = ?", (fingerprint,)
        )
        return _totp(row) if row else None

    def put_totp_use(self, record: TotpUseRecord) -> None:
        """Insert or replace the use record of one TOTP secret."""
        self._query(
            f"INSERT INTO totp_uses ({_TOTP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET last_step = excluded.last_step, "
            "last_action = excluded.last_action, last_actor = excluded.last_actor, "
            "last_used_at = excluded.last_used_at, failures = excluded.failures, "
            "window_started_at = excluded.window_started_at, "
            "locked_until = excluded.locked_until, updated_at = excluded.updated_at",
            (
                record.fingerprint,
                record.last_step,
                record.last_action,
                record.last_actor,
                utc_in(record.last_used_at, "totp last_used_at"),
                record.failures,
                utc_in(record.window_started_at, "totp window_started_at"),
                utc_in(record.locked_until, "totp locked_until"),
                utc_in(record.updated_at, "totp updated_at"),
            ),
        )

    # -- API key permission checks ----------------------------------------------------------

    def record_key_check(
        self,
        exchange: str,
        label: str,
        checked_at: datetime,
        actor: str,
        verdict: str,
        restrictions: dict[str, Any],
        problems: list[dict[str, Any]],
        override_reason: str | None = None,
    ) -> int:
        """Append one key check; returns its id."""
        if verdict not in VERDICTS:
            raise DataError(f"key check verdict must be one of {VERDICTS}, got {verdict!r}")
        row = self._one(
            "INSERT INTO key_checks (exchange, label, checked_at, actor, verdict, restrictions, "
            "problems, override_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                exchange,
                label,
                utc_in(checked_at, "key check checked_at"),
                actor,
                verdict,
                encode_json(restrictions, "key check restrictions"),
                encode_json(problems, "key check problems"),
                override_reason,
            ),
        )
        assert row is not None
        return int(row[0])

    def list_key_checks(
        self, exchange: str | None = None, label: str | None = None, limit: int = 20
    ) -> list[KeyCheckRecord]:
        """The latest key checks, newest first (optionally of one exchange / label)."""
        if not isinstance(limit, int) or limit < 1:
            raise DataError(f"limit must be a positive integer, got {limit!r}")
        where, params = [], []
        for column, value in (("exchange", exchange), ("label", label)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"SELECT {_CHECK_COLUMNS} FROM key_checks{clause} "
            f"ORDER BY checked_at DESC, id DESC LIMIT {limit}",
            params,
        )
        return [_check(r) for r in rows]
