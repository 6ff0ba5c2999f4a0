"""Engine heartbeats and the command queue (engine_heartbeats, engine_commands).

A running engine beats into its account's row; the dashboard, `tradelib status` and other
processes read it to say alive or stale. People send an engine commands (close one position,
cancel one order) by enqueueing rows the engine claims on its next control tick, so the
engine that owns the account's orders and positions is the only one acting on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tradelib.domain import Mode
from tradelib.errors import DataError, StoreError
from tradelib.store.core import Row, StoreCore
from tradelib.store.records import (
    CommandKind,
    CommandRecord,
    CommandStatus,
    EngineState,
    HeartbeatRecord,
    as_mode,
    decode_json,
    encode_json,
    utc_in,
    utc_out,
)

_BEAT_COLUMNS = (
    "mode", "exchange", "strategy", "state", "pid", "host", "started_at", "beat_at",
    "last_cycle_at", "cycles", "detail",
)  # fmt: skip
_COMMAND_COLUMNS = (
    "id", "mode", "exchange", "kind", "payload", "requested_by", "reason", "status", "result",
    "created_at", "expires_at", "claimed_by", "claimed_at", "finished_at",
)  # fmt: skip
_BEAT_SELECT = f"SELECT {', '.join(_BEAT_COLUMNS)} FROM engine_heartbeats"
_COMMAND_SELECT = f"SELECT {', '.join(_COMMAND_COLUMNS)} FROM engine_commands"


def _aware(value: Any) -> datetime:
    out = utc_out(value)
    assert out is not None  # NOT NULL columns
    return out


def _heartbeat(row: Row) -> HeartbeatRecord:
    r = dict(zip(_BEAT_COLUMNS, row, strict=True))
    return HeartbeatRecord(
        mode=Mode(r["mode"]),
        exchange=r["exchange"],
        strategy=r["strategy"],
        state=EngineState(r["state"]),
        pid=int(r["pid"]),
        host=r["host"],
        started_at=_aware(r["started_at"]),
        beat_at=_aware(r["beat_at"]),
        last_cycle_at=utc_out(r["last_cycle_at"]),
        cycles=int(r["cycles"]),
        detail=decode_json(r["detail"]) or {},
    )


def _command(row: Row) -> CommandRecord:
    r = dict(zip(_COMMAND_COLUMNS, row, strict=True))
    return CommandRecord(
        id=int(r["id"]),
        mode=Mode(r["mode"]),
        exchange=r["exchange"],
        kind=CommandKind(r["kind"]),
        payload=decode_json(r["payload"]) or {},
        requested_by=r["requested_by"],
        reason=r["reason"],
        status=CommandStatus(r["status"]),
        result=decode_json(r["result"]),
        created_at=_aware(r["created_at"]),
        expires_at=_aware(r["expires_at"]),
        claimed_by=r["claimed_by"],
        claimed_at=utc_out(r["claimed_at"]),
        finished_at=utc_out(r["finished_at"]),
    )


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{what} must be given (a non-empty text)")
    return value.strip()


class OperationsMixin(StoreCore):
    """Heartbeats of running engines and the commands people send them."""

    # -- heartbeats ---------------------------------------------------------------------------

    def beat(self, heartbeat: HeartbeatRecord) -> None:
        """Write the heartbeat of `heartbeat.mode`/`exchange` (one row per account)."""
        values = (
            as_mode(heartbeat.mode).value,
            _text(heartbeat.exchange, "heartbeat exchange"),
            _text(heartbeat.strategy, "heartbeat strategy"),
            EngineState(heartbeat.state).value,
            int(heartbeat.pid),
            heartbeat.host,
            utc_in(heartbeat.started_at, "heartbeat started_at"),
            utc_in(heartbeat.beat_at, "heartbeat beat_at"),
            utc_in(heartbeat.last_cycle_at, "heartbeat last_cycle_at"),
            int(heartbeat.cycles),
            encode_json(heartbeat.detail, "heartbeat detail"),
        )
        self._upsert("engine_heartbeats", _BEAT_COLUMNS[:2], _BEAT_COLUMNS, values)

    def get_heartbeat(self, mode: Mode | str, exchange: str) -> HeartbeatRecord | None:
        """The last heartbeat of an account's engine, or None if no engine ever ran on it."""
        row = self._one(
            f"{_BEAT_SELECT} WHERE mode = ? AND exchange = ?", (as_mode(mode).value, exchange)
        )
        return _heartbeat(row) if row else None

    def list_heartbeats(self) -> list[HeartbeatRecord]:
        """Every account's last heartbeat, newest beat first."""
        rows = self._query(f"{_BEAT_SELECT} ORDER BY beat_at DESC, mode, exchange")
        return [_heartbeat(r) for r in rows]

    # -- commands -----------------------------------------------------------------------------

    def enqueue_command(
        self,
        mode: Mode | str,
        exchange: str,
        kind: CommandKind | str,
        payload: dict[str, Any],
        requested_by: str,
        reason: str,
        at: datetime,
        expires_at: datetime,
    ) -> int:
        """Queue a command for the account's engine; returns its id."""
        try:
            command_kind = CommandKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in CommandKind)
            raise DataError(f"unknown engine command {kind!r}; known: {known}") from None
        created = utc_in(at, "command at")
        expires = utc_in(expires_at, "command expires_at")
        assert created is not None and expires is not None
        if expires <= created:
            raise DataError(f"command {command_kind}: expires_at must be after its creation")
        row = self._one(
            "INSERT INTO engine_commands (mode, exchange, kind, payload, requested_by, reason, "
            "status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) "
            "RETURNING id",
            (
                as_mode(mode).value,
                _text(exchange, "command exchange"),
                command_kind.value,
                encode_json(payload, f"command {command_kind} payload"),
                _text(requested_by, "who sends the command"),
                _text(reason, "the reason for the command"),
                created,
                expires,
            ),
        )
        assert row is not None
        return int(row[0])

    def claim_commands(
        self, mode: Mode | str, exchange: str, by: str, at: datetime, limit: int = 20
    ) -> list[CommandRecord]:
        """Expire overdue commands, then claim (status running) the account's next ones.

        Commands another engine instance claimed and never finished (it died) are claimed
        again: executing a command is idempotent (its orders carry the command id in their
        intent key), so taking it over cannot double an order.
        """
        account = (as_mode(mode).value, exchange)
        now = utc_in(at, "claim at")
        with self.transaction():
            self.lock(f"engine_commands:{account[0]}:{exchange}")
            self._query(
                "UPDATE engine_commands SET status = 'expired', finished_at = ?, "
                "result = ? WHERE mode = ? AND exchange = ? AND status = 'pending' "
                "AND expires_at < ?",
                (now, encode_json({"error": "expired before an engine took it"}), *account, now),
            )
            rows = self._query(
                f"SELECT id FROM engine_commands WHERE mode = ? AND exchange = ? AND "
                f"(status = 'pending' OR (status = 'running' AND claimed_by <> ?)) "
                f"ORDER BY id LIMIT {int(limit)}",
                (*account, by),
            )
            claimed: list[CommandRecord] = []
            for (command_id,) in rows:
                row = self._one(
                    "UPDATE engine_commands SET status = 'running', claimed_by = ?, "
                    "claimed_at = ? WHERE id = ? "
                    f"RETURNING {', '.join(_COMMAND_COLUMNS)}",
                    (by, now, command_id),
                )
                assert row is not None
                claimed.append(_command(row))
        return claimed

    def finish_command(
        self, command_id: int, status: CommandStatus | str, result: dict[str, Any], at: datetime
    ) -> CommandRecord:
        """Record a command's final status and result; a finished command cannot change."""
        final = CommandStatus(status)
        if not final.is_final:
            raise DataError(f"finish_command needs a final status, got {final.value!r}")
        row = self._one(
            "UPDATE engine_commands SET status = ?, result = ?, finished_at = ? "
            "WHERE id = ? AND status IN ('pending', 'running') "
            f"RETURNING {', '.join(_COMMAND_COLUMNS)}",
            (
                final.value,
                encode_json(result, f"command {command_id} result"),
                utc_in(at, "command finished_at"),
                int(command_id),
            ),
        )
        if row is None:
            existing = self.get_command(command_id)
            if existing is None:
                raise StoreError(f"command {command_id} is not in the store")
            raise StoreError(
                f"command {command_id} already ended as {existing.status.value}; "
                "a finished command is not changed"
            )
        return _command(row)

    def get_command(self, command_id: int) -> CommandRecord | None:
        """One command, or None."""
        row = self._one(f"{_COMMAND_SELECT} WHERE id = ?", (int(command_id),))
        return _command(row) if row else None

    def list_commands(
        self, mode: Mode | str | None = None, exchange: str | None = None, limit: int = 50
    ) -> list[CommandRecord]:
        """The latest commands, newest first, optionally of one account."""
        where: list[str] = []
        params: list[Any] = []
        if mode is not None:
            where.append("mode = ?")
            params.append(as_mode(mode).value)
        if exchange is not None:
            where.append("exchange = ?")
            params.append(exchange)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        if not isinstance(limit, int) or limit < 1:
            raise DataError(f"limit must be a positive integer, got {limit!r}")
        rows = self._query(f"{_COMMAND_SELECT}{clause} ORDER BY id DESC LIMIT {limit}", params)
        return [_command(r) for r in rows]
