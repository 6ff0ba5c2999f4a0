"""Events, runs, controls and the audit log's raw rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tradelib.errors import DataError, StoreError
from tradelib.store.core import Row, StoreCore
from tradelib.store.records import (
    AuditAnchorRecord,
    AuditRecord,
    ControlRecord,
    EventRecord,
    RunRecord,
    decode_json,
    encode_json,
    now_utc,
    utc_in,
    utc_out,
)

_RUN_COLUMNS = (
    "id, name, started_at, finished_at, status, parameters, output_path, error, triggered_by, "
    "scheduled_for, notebook, host, pid, timeout_seconds, error_cell"
)
_AUDIT_COLUMNS = 'id, "at", actor, action, payload, CAST(payload AS VARCHAR), prev_hash, hash'
_CONTROLS = "SELECT key, value, updated_at, updated_by FROM controls"
_ANCHOR_COLUMNS = "chain_id, key_id, legacy_rows, entries, head_id, head_hash, updated_at, mac"


def _aware(value: Any) -> datetime:
    out = utc_out(value)
    assert out is not None  # every timestamp read here is a NOT NULL column
    return out


def _run(row: Row) -> RunRecord:
    return RunRecord(
        int(row[0]), row[1], _aware(row[2]), utc_out(row[3]), row[4], decode_json(row[5]),
        row[6], row[7], row[8], utc_out(row[9]), row[10], row[11],
        None if row[12] is None else int(row[12]), None if row[13] is None else int(row[13]),
        None if row[14] is None else int(row[14]),
    )  # fmt: skip


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise DataError(f"limit must be a positive integer, got {limit!r}")
    return limit


def _control(row: Row) -> ControlRecord:
    return ControlRecord(row[0], decode_json(row[1]), _aware(row[2]), row[3])


class JournalMixin(StoreCore):
    """Append-mostly tables that record what happened and who decided it."""

    _controls_seen: tuple[int, dict[str, Row]] | None = None  # (change token, rows by key)

    def append_event(
        self, kind: str, payload: dict[str, Any], at: datetime, source: str = ""
    ) -> int:
        """Append an event; returns its id."""
        row = self._one(
            'INSERT INTO events ("at", kind, source, payload) VALUES (?, ?, ?, ?) RETURNING id',
            (utc_in(at, "event at"), kind, source, encode_json(payload, f"event {kind} payload")),
        )
        assert row is not None
        return int(row[0])

    def list_events(
        self, kind: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[EventRecord]:
        """Events oldest first: the first `limit` from `since`, else the latest `limit`."""
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if since is not None:
            where.append('"at" >= ?')
            params.append(utc_in(since, "list_events since"))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if since is not None else "DESC"
        rows = self._query(
            f'SELECT id, "at", kind, source, payload FROM events{clause} '
            f'ORDER BY "at" {order}, id {order} LIMIT {_limit(limit)}',
            params,
        )
        if since is None:
            rows.reverse()
        return [EventRecord(int(r[0]), _aware(r[1]), r[2], r[3], decode_json(r[4])) for r in rows]

    def start_run(
        self,
        name: str,
        parameters: dict[str, Any],
        at: datetime | None = None,
        *,
        triggered_by: str | None = None,
        scheduled_for: datetime | None = None,
        notebook: str | None = None,
        output_path: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        timeout_seconds: int | None = None,
    ) -> int:
        """Record that a run started (status 'running'); returns its id."""
        if not name or not name.strip():
            raise DataError("a run needs a name (the job or notebook it runs)")
        row = self._one(
            "INSERT INTO runs (name, started_at, status, parameters, triggered_by, "
            "scheduled_for, notebook, output_path, host, pid, timeout_seconds) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                name,
                utc_in(at, "run started_at") or now_utc(),
                encode_json(parameters, f"run {name} parameters"),
                triggered_by,
                utc_in(scheduled_for, "run scheduled_for"),
                notebook,
                output_path,
                host,
                pid,
                timeout_seconds,
            ),
        )
        assert row is not None
        return int(row[0])

    def finish_run(
        self,
        run_id: int,
        status: str,
        output_path: str | None = None,
        error: str | None = None,
        at: datetime | None = None,
        *,
        error_cell: int | None = None,
    ) -> None:
        """Record how a run ended (e.g. 'succeeded', 'failed'); a given output path wins."""
        if not status or status == "running":
            raise DataError(f"finish_run needs a final status such as 'succeeded', got {status!r}")
        row = self._one(
            "UPDATE runs SET status = ?, finished_at = ?, output_path = COALESCE(?, output_path), "
            "error = ?, error_cell = ? WHERE id = ? RETURNING id",
            (
                status,
                utc_in(at, "run finished_at") or now_utc(),
                output_path,
                error,
                error_cell,
                run_id,
            ),
        )
        if row is None:
            raise StoreError(f"run {run_id} is not in the store; start_run() returns the id to use")

    def get_run(self, run_id: int) -> RunRecord | None:
        """One run, or None."""
        row = self._one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return _run(row) if row else None

    def list_runs(
        self, limit: int = 20, name: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """The latest runs, newest first, optionally of one job and/or one status."""
        where: list[str] = []
        params: list[Any] = []
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY started_at DESC, id DESC "
            f"LIMIT {_limit(limit)}",
            params,
        )
        return [_run(r) for r in rows]

    def last_scheduled_for(self, name: str) -> datetime | None:
        """The latest cron fire time a run of job `name` stood for (None: never scheduled)."""
        row = self._one("SELECT max(scheduled_for) FROM runs WHERE name = ?", (name,))
        return utc_out(row[0]) if row else None

    def set_control(self, key: str, value: dict[str, Any], at: datetime, by: str) -> None:
        """Set a control (kill switch, breaker state) for every process using this store."""
        self._upsert(
            "controls",
            ("key",),
            ("key", "value", "updated_at", "updated_by"),
            (key, encode_json(value, f"control {key}"), utc_in(at, f"control {key} at"), by),
        )

    def get_control(self, key: str) -> dict[str, Any] | None:
        """A control's value, or None if never set."""
        record = self.get_control_record(key)
        return record.value if record else None

    def get_control_record(self, key: str) -> ControlRecord | None:
        """A control with who set it and when, or None."""
        if self._controls_cached():
            row = self._control_rows().get(key)
        else:  # inside a transaction the block's own writes and locks count: read the row
            row = self._one(f"{_CONTROLS} WHERE key = ?", (key,))
        return _control(row) if row else None

    def list_controls(self) -> list[ControlRecord]:
        """Every control, by key."""
        if self._controls_cached():
            rows = [row for _, row in sorted(self._control_rows().items())]
        else:
            rows = self._query(f"{_CONTROLS} ORDER BY key")
        return [_control(r) for r in rows]

    def _controls_cached(self) -> bool:
        return self.exact_change_token and not self.in_transaction()

    def _control_rows(self) -> dict[str, Row]:
        """Every control row, read again only once the store's change token has moved.

        An engine cycle reads five controls and its executor's guard three more per order; one
        SELECT serves them all while nothing was committed. The token moves before any
        committing call returns, in every process (exact_change_token), so a kill switch
        engaged anywhere is seen by the next read, as before.
        """
        token = self.change_token()  # before the read: a commit in between re-reads next time
        seen = self._controls_seen
        if seen is None or seen[0] != token:
            rows = self._query(_CONTROLS)
            seen = self._controls_seen = (token, {str(r[0]): r for r in rows})
        return seen[1]

    def append_audit(
        self,
        at: datetime,
        actor: str,
        action: str,
        payload: dict[str, Any] | str,
        prev_hash: str,
        hash: str,
    ) -> int:
        """Append one raw audit row; a str payload is stored byte for byte (hash that text)."""
        if isinstance(payload, str):
            payload_json = payload
            try:
                decode_json(payload_json)
            except ValueError as exc:
                raise DataError(f"audit payload for {action!r} is not valid JSON: {exc}") from None
        else:
            payload_json = encode_json(payload, f"audit payload for {action!r}")
        row = self._one(
            'INSERT INTO audit_log ("at", actor, action, payload, prev_hash, hash) '
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (utc_in(at, "audit at"), actor, action, payload_json, prev_hash, hash),
        )
        assert row is not None
        return int(row[0])

    def list_audit(self, after_id: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Audit rows with id > `after_id`, in id order (the chain order)."""
        tail = f" LIMIT {_limit(limit)}" if limit is not None else ""
        rows = self._query(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id > ? ORDER BY id{tail}", (after_id,)
        )
        return [
            AuditRecord(int(r[0]), _aware(r[1]), r[2], r[3], decode_json(r[4]), r[5], r[6], r[7])
            for r in rows
        ]

    def last_audit(self) -> AuditRecord | None:
        """The newest audit row (the head of the chain), or None."""
        rows = self._query(f"SELECT {_AUDIT_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        return AuditRecord(int(r[0]), _aware(r[1]), r[2], r[3], decode_json(r[4]), r[5], r[6], r[7])

    def count_audit(self) -> int:
        """How many rows audit_log holds."""
        row = self._one("SELECT count(*) FROM audit_log")
        return int(row[0]) if row else 0

    def get_audit_anchor(self) -> AuditAnchorRecord | None:
        """The audit chain's recorded head (the audit_anchor row), or None before the first."""
        r = self._one(f"SELECT {_ANCHOR_COLUMNS} FROM audit_anchor WHERE id = 1")
        if r is None:
            return None
        head_id = None if r[4] is None else int(r[4])
        return AuditAnchorRecord(
            r[0], r[1], int(r[2]), int(r[3]), head_id, r[5], _aware(r[6]), r[7]
        )

    def put_audit_anchor(self, anchor: AuditAnchorRecord) -> None:
        """Insert or replace the audit_anchor row (call under store.lock("audit_log"))."""
        values = (
            anchor.chain_id, anchor.key_id, anchor.legacy_rows, anchor.entries, anchor.head_id,
            anchor.head_hash, utc_in(anchor.updated_at, "audit anchor updated_at"), anchor.mac,
        )  # fmt: skip
        sets = ", ".join(f"{c.strip()} = ?" for c in _ANCHOR_COLUMNS.split(","))
        with self.transaction():
            if not self._query(f"UPDATE audit_anchor SET {sets} WHERE id = 1 RETURNING id", values):
                self._query(
                    f"INSERT INTO audit_anchor (id, {_ANCHOR_COLUMNS}) "
                    "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
