"""Rows the store returns that are not domain types, plus the JSON and NUMERIC conventions.

JSON columns: `Decimal` values are written as strings ("12.5", exact) and aware `datetime`/`date`
values as ISO-8601 strings ("2024-01-01T00:00:00+00:00"); they come back as those strings, so
readers convert with `Decimal(...)` / `datetime.fromisoformat(...)`. Floats are never used for
money inside JSON. Numbers in NUMERIC(20,8) columns are rounded half-even to 8 places on write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import Enum, StrEnum
from typing import Any

from tradelib.domain import ZERO, Mode, Position, require_utc
from tradelib.errors import DataError

SCALE = Decimal("0.00000001")
_LIMITS = {20: Decimal(10) ** 12, 30: Decimal(10) ** 22}


def db_number(value: Decimal | int | None, what: str, precision: int = 20) -> Decimal | None:
    """Round `value` to 8 places for a NUMERIC(precision,8) column; DataError if it cannot fit."""
    if value is None:
        return None
    number = Decimal(value)
    if not number.is_finite():
        raise DataError(f"{what} must be a finite number, got {value!r}")
    limit = _LIMITS[precision]
    if abs(number) < limit:
        with localcontext() as ctx:
            ctx.prec = 40  # 30 digits of NUMERIC(30,8) exceed the default 28
            number = number.quantize(SCALE, rounding=ROUND_HALF_EVEN)
    if abs(number) >= limit:
        raise DataError(
            f"{what} = {value} does not fit NUMERIC({precision},8): at most "
            f"{precision - 8} digits before the decimal point"
        )
    return number


def utc_out(value: datetime | None) -> datetime | None:
    """A database timestamp as an aware UTC datetime (None stays None)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_in(value: datetime | None, what: str) -> datetime | None:
    """Check an incoming timestamp is aware and convert it to UTC."""
    return None if value is None else require_utc(value, what)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DataError(f"JSON cannot hold the non-finite number {value}")
        return str(value)
    if isinstance(value, datetime):
        return require_utc(value, "a datetime inside a JSON payload").isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    raise DataError(
        f"cannot store a {type(value).__name__} in a JSON column: use str, int, Decimal, "
        "bool, None, datetime, list or dict"
    )


def encode_json(value: Any, what: str = "payload") -> str:
    """Canonical JSON text (sorted keys): Decimal and datetime become strings, floats stay."""
    try:
        return json.dumps(
            value, default=_json_default, sort_keys=True, allow_nan=False, ensure_ascii=False
        )
    except ValueError as exc:  # NaN/inf floats
        raise DataError(f"{what} cannot be stored as JSON: {exc}") from None
    except TypeError as exc:  # non-string dict keys of an unsortable mix
        raise DataError(f"{what} cannot be stored as JSON: {exc}") from None


def decode_json(raw: Any) -> Any:
    """A JSON column value as Python objects (psycopg already decodes JSONB, DuckDB gives text)."""
    if raw is None:
        return None
    if isinstance(raw, str | bytes):
        return json.loads(raw)
    return raw


@dataclass(frozen=True, slots=True)
class StrategyRecord:
    """A row of trading_strategies."""

    id: int
    name: str
    description: str
    parameters: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ExecutionState:
    """A strategy's running statistics (one row per strategy and mode)."""

    strategy: str
    mode: Mode = Mode.PAPER
    is_running: bool = False
    last_execution: datetime | None = None
    total_trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    consecutive_losses: int = 0
    total_pnl: Decimal = ZERO
    daily_pnl: Decimal = ZERO
    daily_pnl_date: date | None = None
    peak_equity: Decimal | None = None
    max_drawdown: Decimal = ZERO
    sharpe_ratio: Decimal | None = None
    state: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """A live_positions row: the position plus what the dashboard shows beside it."""

    id: int
    position: Position
    current_price: Decimal | None
    unrealized_pnl: Decimal | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A row of events."""

    id: int
    at: datetime
    kind: str
    source: str
    payload: dict[str, Any]


class RunStatus(StrEnum):
    """How a run ended (or that it is still going)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # refused: the same job was already running (here or elsewhere)
    ABANDONED = "abandoned"  # its process died mid-run; found by the next scheduler start


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A row of runs: one scheduled or manual notebook/engine run."""

    id: int
    name: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    parameters: dict[str, Any]
    output_path: str | None
    error: str | None
    triggered_by: str | None = None
    scheduled_for: datetime | None = None
    notebook: str | None = None
    host: str | None = None
    pid: int | None = None
    timeout_seconds: int | None = None
    error_cell: int | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Wall time of a finished run."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class ControlRecord:
    """A row of controls (kill switch, breaker states): who set what, when."""

    key: str
    value: dict[str, Any]
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A row of audit_log; `payload_json` is the stored text, byte for byte."""

    id: int
    at: datetime
    actor: str
    action: str
    payload: dict[str, Any]
    payload_json: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditAnchorRecord:
    """The audit chain's head as the store's audit_anchor row records it (see tradelib.audit)."""

    chain_id: str
    key_id: str
    legacy_rows: int
    entries: int
    head_id: int | None
    head_hash: str
    updated_at: datetime
    mac: str


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A row of api_keys: ciphertexts only, never shown in reprs."""

    id: int
    exchange: str
    label: str
    key_ciphertext: bytes = field(repr=False)
    key_nonce: bytes = field(repr=False)
    secret_ciphertext: bytes = field(repr=False)
    secret_nonce: bytes = field(repr=False)
    created_at: datetime | None = None
    key_id: str | None = None  # id of the master key it is encrypted under (None: before 0003)


class EngineState(StrEnum):
    """Where a running engine is in its life, as its heartbeat says."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Liveness(StrEnum):
    """What a reader concludes from a heartbeat: beating, silent too long, or ended."""

    ALIVE = "alive"
    STALE = "stale"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    """A row of engine_heartbeats: the running engine of one account (mode, exchange)."""

    mode: Mode
    exchange: str
    strategy: str
    state: EngineState
    pid: int
    host: str
    started_at: datetime
    beat_at: datetime
    last_cycle_at: datetime | None = None
    cycles: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def liveness(self, now: datetime, stale_after: float) -> Liveness:
        """ALIVE if it beat within `stale_after` seconds, STOPPED once it said so, else STALE."""
        if self.state in (EngineState.STOPPED, EngineState.FAILED):
            return Liveness.STOPPED
        silent = (require_utc(now, "liveness now") - self.beat_at).total_seconds()
        # A beat stamped in the future (clock skew between machines) is not proof of life.
        return Liveness.ALIVE if 0 <= silent <= stale_after or -5 < silent < 0 else Liveness.STALE


class CommandKind(StrEnum):
    """What a person can ask a running engine to do."""

    CLOSE_POSITION = "close_position"
    CANCEL_ORDER = "cancel_order"


class CommandStatus(StrEnum):
    """A command's life: pending until an engine claims it, then one final status."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        """True once nothing will change the command any more."""
        return self not in (CommandStatus.PENDING, CommandStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A row of engine_commands: who asked which engine to do what, and what came of it."""

    id: int
    mode: Mode
    exchange: str
    kind: CommandKind
    payload: dict[str, Any]
    requested_by: str
    reason: str
    status: CommandStatus
    created_at: datetime
    expires_at: datetime
    result: dict[str, Any] | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    finished_at: datetime | None = None


def as_mode(value: Mode | str) -> Mode:
    """`value` as a Mode, or DataError saying which values are allowed."""
    try:
        return Mode(value)
    except ValueError:
        raise DataError(f"mode must be 'paper' or 'live', got {value!r}") from None


def now_utc() -> datetime:
    """The wall clock, for updated_at columns the caller did not stamp."""
    return datetime.now(UTC)
