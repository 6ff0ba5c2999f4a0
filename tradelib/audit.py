"""Append-only, hash-chained audit log of every decision and action."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradelib.domain import require_utc
from tradelib.logs import redact

if TYPE_CHECKING:
    from tradelib.store import Store

GENESIS = "0" * 64


def canonical_json(payload: dict[str, Any]) -> str:
    """Stable JSON (sorted keys, no spaces, Decimal/datetime as text), secrets redacted."""

    def default(value: Any) -> str:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    return redact(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=default))


def chain_hash(prev_hash: str, at: datetime, actor: str, action: str, payload_json: str) -> str:
    """SHA-256 over the previous hash and every field of the row."""
    text = "\n".join([prev_hash, require_utc(at, "audit at").isoformat(), actor, action])
    return hashlib.sha256(f"{text}\n{payload_json}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of walking the chain: `ok`, rows checked and the first broken row if any."""

    ok: bool
    rows: int
    broken_id: int | None = None
    reason: str = ""


class AuditLog:
    """Writes and verifies the hash chain in the store's audit_log table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, actor: str, action: str, payload: dict[str, Any], at: datetime) -> str:
        """Append one entry and return its hash; concurrent writers serialise on a lock."""
        payload_json = canonical_json(payload)
        with self.store.transaction():
            self.store.lock("audit_log")  # two writers reading one head would fork the chain
            head = self.store.last_audit()
            prev = head.hash if head else GENESIS
            digest = chain_hash(prev, at, actor, action, payload_json)
            self.store.append_audit(at, actor, action, payload_json, prev, digest)
        return digest

    def verify(self) -> VerifyReport:
        """Recompute every hash in id order; report the first row that does not match."""
        prev = GENESIS
        count = 0
        for row in self.store.list_audit():
            count += 1
            if row.prev_hash != prev:
                return VerifyReport(False, count, row.id, "prev_hash does not match the row before")
            expected = chain_hash(prev, row.at, row.actor, row.action, row.payload_json)
            if expected != row.hash:
                return VerifyReport(False, count, row.id, "row content does not match its hash")
            prev = row.hash
        return VerifyReport(True, count)
