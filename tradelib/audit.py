"""Append-only audit log of every decision and action: a keyed hash chain with an anchored head.

How tampering is caught (`AuditLog.verify`, `tradelib audit verify`):

- Each row's `hash` is ``k1:`` + HMAC-SHA256(key, previous hash + every field of the row). The
  key is not in the store (tradelib.audit_anchor: `TRADELIB_AUDIT_KEY`, else a 0600 key file
  in the state directory), so an edited row, or a chain recomputed with the public hash, no
  longer verifies; a deleted middle row breaks the next row's `prev_hash`.
- The head (entry count, last id and hash) is anchored outside `audit_log` twice: in the
  store's `audit_anchor` row (migration 0004, rewritten with every append in the same
  transaction, MAC'd with the key), which catches rows cut from the end or all of them; and
  in a checkpoint file per store location in the state directory of each machine that writes
  or verifies the store, which catches a store whose log *and* anchor row were deleted or
  rolled back together. The checkpoint is a lower bound ("entry N once had hash H"), so
  several writers updating it in any order never make it wrong.
- A writer that finds the anchor or the checkpoint inconsistent with the table (rows cut, the
  anchor deleted, the store recreated) never blocks the action it records: it first appends
  an `audit_inconsistency` entry saying what it found, then repairs the anchor. That entry
  keeps `verify` failing until a person runs `tradelib audit accept --reason ...`, which is
  itself an audited entry.
- Rows written before the chain was keyed (stores from before migration 0004) are legacy:
  they are checked with the public SHA-256 chain, reported as "legacy unkeyed entries 1..N"
  and need the same acceptance once a person has compared them with a backup.
- Concurrent writers (PostgreSQL, several processes) serialise on `store.lock("audit_log")`
  inside one transaction, so neither the chain nor the anchor can fork. Every writer of one
  store must use the same key (set TRADELIB_AUDIT_KEY on every machine); a writer with another
  key is refused rather than allowed to break the chain.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelib.audit_anchor import (
    AUDIT_KEY_ENV,
    AuditKey,
    Checkpoint,
    checkpoint_path,
    load_audit_key,
    read_checkpoint,
    store_identity,
    write_checkpoint,
)
from tradelib.domain import require_utc
from tradelib.errors import AuditError
from tradelib.logs import get_logger, redact
from tradelib.store.records import AuditAnchorRecord, AuditRecord

if TYPE_CHECKING:
    from tradelib.store import Store

log = get_logger(__name__)

GENESIS = "0" * 64
KEYED = "k1:"
AUDIT_ACTOR = "audit"
FINDING = "audit_inconsistency"
ACCEPTED = "audit_findings_accepted"
ACCEPT_HINT = 'after checking, run: tradelib audit accept --reason "<what you checked>"'


def canonical_json(payload: dict[str, Any]) -> str:
    """Stable JSON (sorted keys, no spaces, Decimal/datetime as text), secrets redacted."""

    def default(value: Any) -> str:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    return redact(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=default))


def _row_text(prev_hash: str, at: datetime, actor: str, action: str, payload_json: str) -> str:
    text = "\n".join([prev_hash, require_utc(at, "audit at").isoformat(), actor, action])
    return f"{text}\n{payload_json}"


def chain_hash(prev_hash: str, at: datetime, actor: str, action: str, payload_json: str) -> str:
    """Public SHA-256 over the previous hash and every field: how legacy (unkeyed) rows chain."""
    return hashlib.sha256(
        _row_text(prev_hash, at, actor, action, payload_json).encode()
    ).hexdigest()


def keyed_hash(
    key: AuditKey, prev_hash: str, at: datetime, actor: str, action: str, payload_json: str
) -> str:
    """``k1:`` + HMAC-SHA256 with the audit key over the same fields: how rows chain now."""
    return KEYED + key.mac(_row_text(prev_hash, at, actor, action, payload_json))


def anchor_mac(key: AuditKey, anchor: AuditAnchorRecord) -> str:
    """The MAC an `audit_anchor` row must carry."""
    parts = [
        "anchor", anchor.chain_id, anchor.key_id, str(anchor.legacy_rows), str(anchor.entries),
        str(anchor.head_id), anchor.head_hash,
    ]  # fmt: skip
    return key.mac("\x1f".join(parts))


class Status(StrEnum):
    """Outcome of a verification."""

    INTACT = "intact"
    REVIEW = "review"  # verifies, but holds findings or legacy entries a person must accept
    BROKEN = "broken"
    UNVERIFIED = "unverified"  # no key, or not the key the chain was written with


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of walking the chain: `ok`, rows checked, the first broken row and what to do."""

    ok: bool
    rows: int
    broken_id: int | None = None
    reason: str = ""
    status: Status = Status.INTACT
    legacy_rows: int = 0
    findings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    hint: str = ""
    acceptable: bool = False  # `accept` can record this break (deletions), not a rewritten row
    key_id: str | None = None


def _broken(rows: int, entry: int | None, reason: str, hint: str, acceptable: bool) -> VerifyReport:
    return VerifyReport(False, rows, entry, reason, Status.BROKEN, hint=hint, acceptable=acceptable)


@dataclass(frozen=True, slots=True)
class _Head:
    chain_id: str
    legacy_rows: int
    entries: int
    head_id: int | None
    head_hash: str
    problems: tuple[dict[str, Any], ...]


def _leading_legacy(rows: list[AuditRecord]) -> int:
    count = 0
    for row in rows:
        if row.hash.startswith(KEYED):
            break
        count += 1
    return count


def _describe_anchor(anchor: AuditAnchorRecord) -> str:
    return f"{anchor.entries} entries up to entry {anchor.head_id}"


class AuditLog:
    """Writes, verifies and accepts findings of the keyed chain in the store's audit_log."""

    def __init__(self, store: Store, key: AuditKey | None = None) -> None:
        self.store = store
        self._key = key

    def key(self, create: bool = True) -> AuditKey | None:
        """The audit key (created on first use when `create`); None if absent and not created."""
        if self._key is None:
            self._key = load_audit_key(create=create)
        return self._key

    def _identity(self) -> str | None:
        return store_identity(self.store.url)

    # -- writing ----------------------------------------------------------------------------

    def record(self, actor: str, action: str, payload: dict[str, Any], at: datetime) -> str:
        """Append one entry and return its hash; concurrent writers serialise on a lock."""
        key = self.key()
        assert key is not None  # create=True never returns None
        payload_json = canonical_json(payload)
        identity = self._identity()
        with self.store.transaction():
            self.store.lock("audit_log")  # two writers reading one head would fork the chain
            head = self._head(key, identity)
            prev, last_id, entries = head.head_hash, head.head_id, head.entries
            for problem in head.problems:
                log.error("audit log inconsistency recorded", problem=problem["problem"])
                prev, last_id = self._append(key, prev, at, AUDIT_ACTOR, FINDING,
                                             canonical_json(problem))  # fmt: skip
                entries += 1
            prev, last_id = self._append(key, prev, at, actor, action, payload_json)
            anchor = AuditAnchorRecord(
                head.chain_id, key.key_id, head.legacy_rows, entries + 1, last_id, prev, at, ""
            )
            self.store.put_audit_anchor(replace(anchor, mac=anchor_mac(key, anchor)))
        if identity is not None:
            self._checkpoint(key, identity, anchor, at)
        return prev

    def _append(
        self, key: AuditKey, prev: str, at: datetime, actor: str, action: str, payload_json: str
    ) -> tuple[str, int]:
        digest = keyed_hash(key, prev, at, actor, action, payload_json)
        return digest, self.store.append_audit(at, actor, action, payload_json, prev, digest)

    def _checkpoint(
        self, key: AuditKey, identity: str, anchor: AuditAnchorRecord, at: datetime
    ) -> None:
        point = Checkpoint(
            identity, anchor.chain_id, anchor.entries, anchor.head_id, anchor.head_hash, at, ""
        )
        try:
            write_checkpoint(replace(point, mac=key.mac(point.signed_text())))
        except AuditError as exc:  # the entry is committed: a missing checkpoint is only weaker
            log.warning("audit checkpoint not written", error=str(exc))

    def _head(self, key: AuditKey, identity: str | None) -> _Head:
        """The chain's head under the lock, plus what is inconsistent with its anchors."""
        store = self.store
        anchor = store.get_audit_anchor()
        last = store.last_audit()
        problems: list[dict[str, Any]] = []
        if anchor is None:
            chain_id, legacy, entries = str(uuid.uuid4()), 0, 0
            if last is not None:
                rows = store.list_audit()
                legacy, entries = _leading_legacy(rows), len(rows)
                if legacy < entries:
                    problems.append({
                        "problem": f"the audit anchor row was missing while the log held "
                        f"{entries} entries up to entry {last.id}, {entries - legacy} of them "
                        "keyed: it was deleted, and entries after the last one may have been "
                        "deleted with it",
                        "entries": entries, "head_id": last.id, "head_hash": last.hash,
                    })  # fmt: skip
        else:
            if anchor.key_id != key.key_id:
                raise AuditError(self._key_mismatch(anchor.key_id, key))
            chain_id, legacy, entries = anchor.chain_id, anchor.legacy_rows, anchor.entries
            if anchor.mac != anchor_mac(key, anchor):
                rows = store.list_audit()
                legacy, entries = _leading_legacy(rows), len(rows)
                problems.append({
                    "problem": "the audit anchor row was altered (its MAC does not match); "
                    f"it claimed {_describe_anchor(anchor)}",
                    "entries": entries,
                })  # fmt: skip
            elif last is None or (last.id, last.hash) != (anchor.head_id, anchor.head_hash):
                entries = store.count_audit()
                legacy = min(legacy, entries)  # a cut reaching into the legacy rows shortens them
                where = f"up to entry {last.id}" if last is not None else "none"
                problems.append({
                    "problem": f"the log held {entries} entries ({where}) but its anchor "
                    f"recorded {_describe_anchor(anchor)}: entries were deleted (or written "
                    "without tradelib)",
                    "entries": entries, "anchor_entries": anchor.entries,
                    "anchor_head_id": anchor.head_id, "anchor_head_hash": anchor.head_hash,
                })  # fmt: skip
        if identity is not None and not problems:  # one finding per incident is enough
            problems.extend(self._checkpoint_problems(key, identity, chain_id))
        head_hash = last.hash if last is not None else GENESIS
        head_id = last.id if last is not None else None
        return _Head(chain_id, legacy, entries, head_id, head_hash, tuple(problems))

    def _checkpoint_problems(
        self, key: AuditKey, identity: str, chain_id: str
    ) -> list[dict[str, Any]]:
        path = checkpoint_path(identity)
        try:
            point = read_checkpoint(identity)
        except AuditError as exc:
            return [{"problem": str(exc)}]
        if point is None:
            return []
        if point.mac != key.mac(point.signed_text()):
            return [{"problem": f"this machine's audit anchor file {path} was altered"}]
        if point.chain_id != chain_id:
            return [{
                "problem": f"this machine's audit anchor file {path} records another audit "
                f"chain at this store location ({point.entries} entries up to entry "
                f"{point.head_id}, seen {point.at.isoformat()}): that audit log was deleted, "
                "or the store was recreated",
                "previous_chain": point.chain_id, "previous_entries": point.entries,
            }]  # fmt: skip
        if point.head_id is None:
            return []
        found = self.store.list_audit(after_id=point.head_id - 1, limit=1)
        if not found or (found[0].id, found[0].hash) != (point.head_id, point.head_hash):
            return [{
                "problem": f"entry {point.head_id}, which this machine saw as entry "
                f"{point.entries} of the chain on {point.at.isoformat()} (anchor file {path}), "
                "is gone or different: entries were deleted",
                "checkpoint_entries": point.entries, "checkpoint_head_id": point.head_id,
            }]  # fmt: skip
        return []

    @staticmethod
    def _key_mismatch(chain_key_id: str, key: AuditKey) -> str:
        return (
            f"this store's audit chain is keyed with audit key {chain_key_id}, but this "
            f"process has key {key.key_id} (from {key.source}): every process and machine "
            f"writing one store must share one key; set {AUDIT_KEY_ENV} to the key the other "
            "writers use (its key id is shown by `tradelib audit verify` there)"
        )

    def accept(self, by: str, reason: str, at: datetime) -> VerifyReport:
        """Record a person's acceptance of the current findings; returns the new verification.

        Accepts recorded findings, legacy entries and deletions a writer can record; refuses a
        log with a rewritten entry (restore that store from a backup) or without the key.
        """
        if not by.strip() or not reason.strip():
            raise AuditError("accepting audit findings needs who accepts them and why")
        report = self.verify()
        if report.status is Status.INTACT:
            return report
        if report.status is Status.UNVERIFIED or (
            report.status is Status.BROKEN and not report.acceptable
        ):
            raise AuditError(f"cannot accept: {report.reason}. {report.hint}".strip())
        findings = [f for f in (report.reason, *report.findings) if f]
        self.record(by, ACCEPTED, {"by": by, "reason": reason, "findings": findings}, at)
        return self.verify()

    # -- verifying --------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Walk the chain and its anchors; report the first break, findings to accept, notes."""
        key = self.key(create=False)
        with self.store.transaction():
            # Writers append the row and move the anchor under this lock: reading both under
            # it gives a pair from one moment, never a row one writer added after the anchor.
            self.store.lock("audit_log")
            anchor = self.store.get_audit_anchor()
            rows = self.store.list_audit()
        keyed = any(r.hash.startswith(KEYED) for r in rows)
        if key is None and (anchor is not None or keyed):
            return VerifyReport(
                False, len(rows), None,
                f"no audit key on this machine ({AUDIT_KEY_ENV} is not set and there is no key "
                "file in the state directory), but this store's log is keyed"
                + (f" with key {anchor.key_id}" if anchor else ""),
                Status.UNVERIFIED,
                hint=f"set {AUDIT_KEY_ENV} to the key the store's writers use",
            )  # fmt: skip
        if key is not None and anchor is not None and anchor.key_id != key.key_id:
            return VerifyReport(
                False, len(rows), None, self._key_mismatch(anchor.key_id, key),
                Status.UNVERIFIED, key_id=key.key_id,
            )  # fmt: skip
        walked = self._walk(rows, key, anchor)
        if isinstance(walked, VerifyReport):
            return replace(walked, key_id=key.key_id if key else None)
        legacy, pending, accepted, legacy_accepted = walked
        identity = self._identity()
        problems = self._live_problems(rows, key, anchor, legacy, identity)
        key_id = key.key_id if key else None
        if problems:
            entry, reason = problems[0]
            return replace(
                _broken(len(rows), entry, reason,
                        "if you know why (e.g. you recreated the store on purpose), "
                        f"{ACCEPT_HINT}; otherwise restore the store from a backup", True),
                findings=tuple(p[1] for p in problems[1:]), legacy_rows=legacy, key_id=key_id,
            )  # fmt: skip
        if key is not None and anchor is not None and identity is not None:
            self._refresh_checkpoint(key, identity, anchor, rows)
        findings = list(pending)
        if legacy and not legacy_accepted:
            findings.append(
                f"legacy unkeyed entries 1..{legacy}: written before the audit chain was keyed "
                "(tradelib before migration 0004); they match the public SHA-256 chain, which "
                "anyone with write access to the store could have recomputed"
            )
        notes = [f"accepted earlier: {text}" for text in accepted]
        if legacy and legacy_accepted:
            notes.append(f"legacy unkeyed entries 1..{legacy} were accepted by a person")
        if pending:  # a writer found entries deleted (or the store recreated): still a break
            return VerifyReport(
                False, len(rows), None, findings[0], Status.BROKEN, legacy, tuple(findings[1:]),
                tuple(notes), f"if you know why, {ACCEPT_HINT}", True, key_id,
            )  # fmt: skip
        if findings:
            return VerifyReport(
                False, len(rows), None, findings[0], Status.REVIEW, legacy, (),
                tuple(notes), f"compare them with a backup, then {ACCEPT_HINT}", True, key_id,
            )  # fmt: skip
        return VerifyReport(True, len(rows), legacy_rows=legacy, notes=tuple(notes), key_id=key_id)

    def _walk(
        self, rows: list[AuditRecord], key: AuditKey | None, anchor: AuditAnchorRecord | None
    ) -> VerifyReport | tuple[int, list[str], list[str], bool]:
        """Check every row's link and hash; a report on the first break, else what was seen."""
        restore = "the log was altered: restore the store from a backup (entries from here on "
        restore += "cannot be trusted)"
        trusted = None
        if anchor is not None and key is not None and anchor.mac == anchor_mac(key, anchor):
            trusted = anchor
        prev, legacy, keyed_seen = GENESIS, 0, False
        pending: list[str] = []
        accepted: list[str] = []
        legacy_accepted = False
        for count, row in enumerate(rows, start=1):
            if row.prev_hash != prev:
                why = "prev_hash does not match the row before: an entry before it was deleted"
                return _broken(count, row.id, f"{why} or rewritten", restore, False)
            if row.hash.startswith(KEYED):
                assert key is not None  # verify() returned UNVERIFIED for keyed rows without one
                expected = keyed_hash(key, prev, row.at, row.actor, row.action, row.payload_json)
                if expected != row.hash:
                    why = "row content does not match its hash (HMAC with the audit key): the "
                    why += "entry was edited, or rewritten without the key"
                    return _broken(count, row.id, why, restore, False)
                keyed_seen = True
                if row.action == FINDING and row.actor == AUDIT_ACTOR:
                    problem = row.payload.get("problem", row.payload_json)
                    pending.append(f"entry {row.id} ({row.at.isoformat()}): {problem}")
                elif row.action == ACCEPTED:
                    accepted.extend(pending)
                    pending, legacy_accepted = [], True
            else:
                if keyed_seen or (trusted is not None and count > trusted.legacy_rows):
                    why = "an unkeyed entry where the chain is keyed: the log was recomputed "
                    why += "with the public hash function"
                    return _broken(count, row.id, why, restore, False)
                if chain_hash(prev, row.at, row.actor, row.action, row.payload_json) != row.hash:
                    why = "row content does not match its hash (legacy SHA-256 chain)"
                    return _broken(count, row.id, why, restore, False)
                legacy += 1
            prev = row.hash
        return legacy, pending, accepted, legacy_accepted

    def _live_problems(
        self,
        rows: list[AuditRecord],
        key: AuditKey | None,
        anchor: AuditAnchorRecord | None,
        legacy: int,
        identity: str | None,
    ) -> list[tuple[int | None, str]]:
        """Where the table disagrees with the anchor row or this machine's checkpoint."""
        problems: list[tuple[int | None, str]] = []
        last = rows[-1] if rows else None
        if anchor is None:
            if last is not None and last.hash.startswith(KEYED):
                problems.append(
                    (
                        last.id,
                        "the audit anchor row is missing although the log is "
                        "keyed: it was deleted, possibly with entries from the end",
                    )
                )
        elif key is not None and anchor.mac != anchor_mac(key, anchor):
            problems.append((anchor.head_id, "the audit anchor row was altered (its MAC does "
                             "not match the audit key)"))  # fmt: skip
        else:
            if last is None and anchor.entries:
                problems.append(
                    (
                        anchor.head_id,
                        f"the log is empty but its anchor records "
                        f"{_describe_anchor(anchor)}: every entry was deleted",
                    )
                )
            elif last is not None and (len(rows), last.id, last.hash) != (
                anchor.entries,
                anchor.head_id,
                anchor.head_hash,
            ):
                cut = len(rows) < anchor.entries or (anchor.head_id or 0) > last.id
                what = (
                    "entries were deleted from the end"
                    if cut
                    else "entries were added without tradelib, or the anchor was rolled back"
                )
                problems.append(
                    (
                        anchor.head_id if cut else last.id,
                        f"the log holds {len(rows)} entries up to entry {last.id} but "
                        f"its anchor records {_describe_anchor(anchor)}: {what}",
                    )
                )
            if legacy != anchor.legacy_rows:
                problems.append((None, f"the log starts with {legacy} unkeyed entries but its "
                                 f"anchor records {anchor.legacy_rows}: legacy entries were "
                                 "added or deleted"))  # fmt: skip
        if identity is not None and key is not None:
            problems.extend(self._checkpoint_live(rows, key, anchor, identity))
        return problems

    def _checkpoint_live(
        self, rows: list[AuditRecord], key: AuditKey, anchor: AuditAnchorRecord | None,
        identity: str,
    ) -> list[tuple[int | None, str]]:  # fmt: skip
        path = checkpoint_path(identity)
        try:
            point = read_checkpoint(identity)
        except AuditError as exc:
            return [(None, str(exc))]
        if point is None:
            return []
        if point.mac != key.mac(point.signed_text()):
            return [(None, f"this machine's audit anchor file {path} was altered")]
        seen = f"{point.entries} entries up to entry {point.head_id}, seen {point.at.isoformat()}"
        if anchor is None or point.chain_id != anchor.chain_id:
            now = "no audit log" if not rows else "another audit chain"
            return [(point.head_id, f"this store holds {now}, but this machine's anchor file "
                     f"{path} records its chain with {seen}: the audit log was deleted, or the "
                     "store was recreated")]  # fmt: skip
        if point.entries == 0:
            return []
        held = rows[point.entries - 1] if len(rows) >= point.entries else None
        if held is None or (held.id, held.hash) != (point.head_id, point.head_hash):
            return [(point.head_id, f"this machine's anchor file {path} records {seen}, which "
                     "the log no longer holds: entries were deleted")]  # fmt: skip
        return []

    def _refresh_checkpoint(
        self, key: AuditKey, identity: str, anchor: AuditAnchorRecord, rows: list[AuditRecord]
    ) -> None:
        """After a clean walk, remember the head this machine verified (never a lower one)."""
        try:
            point = read_checkpoint(identity)
        except AuditError:
            return
        if point is not None and point.entries >= len(rows):
            return
        last = rows[-1] if rows else None
        fresh = Checkpoint(
            identity, anchor.chain_id, len(rows), last.id if last else None,
            last.hash if last else GENESIS, last.at if last else anchor.updated_at, "",
        )  # fmt: skip
        try:
            write_checkpoint(replace(fresh, mac=key.mac(fresh.signed_text())))
        except AuditError as exc:
            log.warning("audit checkpoint not written", error=str(exc))


def checkpoint_file(store: Store) -> Path | None:
    """This machine's checkpoint file for `store` (None for in-memory stores)."""
    identity = store_identity(store.url)
    return None if identity is None else checkpoint_path(identity)
