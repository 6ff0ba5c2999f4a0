"""The heartbeat a running engine writes on every control tick and every cycle.

One row per account (mode, exchange) in `engine_heartbeats`. Times in the row are wall-clock
UTC (readers compare them with their own clock); the market's time — which differs only in a
rehearsal against the emulator — is in `detail["market_time"]`. What `detail` holds is listed
in `Heartbeat.detail`; the dashboard and `tradelib status` read it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import tradelib
from tradelib.domain import Mode
from tradelib.logs import get_logger
from tradelib.store import EngineState, HeartbeatRecord, Liveness, Store

log = get_logger(__name__)

TICK_SECONDS = 0.5  # the control tick: kill switch, commands, mode switch, heartbeat
STALE_AFTER_SECONDS = 10.0  # a reader calls an engine stale after this long without a beat


def wall_now() -> datetime:
    """Wall-clock UTC (heartbeat times)."""
    return datetime.now(UTC)


@dataclass
class Heartbeat:
    """Writes one account's heartbeat; `detail` is merged into every beat."""

    store: Store
    mode: Mode
    exchange: str
    strategy: str
    started_at: datetime = field(default_factory=wall_now)
    cycles: int = 0
    last_cycle_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = wall_now

    def __post_init__(self) -> None:
        self.detail.setdefault("version", tradelib.__version__)
        self.detail.setdefault("tick_seconds", TICK_SECONDS)
        self.detail.setdefault("stale_after_seconds", STALE_AFTER_SECONDS)

    def cycled(self) -> None:
        """Count one finished cycle."""
        self.cycles += 1
        self.last_cycle_at = self.clock()

    def beat(self, state: EngineState, **detail: Any) -> None:
        """Write the row now with `state`; `detail` updates what readers see."""
        self.detail.update(detail)
        record = HeartbeatRecord(
            mode=self.mode,
            exchange=self.exchange,
            strategy=self.strategy,
            state=state,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=self.started_at,
            beat_at=self.clock(),
            last_cycle_at=self.last_cycle_at,
            cycles=self.cycles,
            detail=self.detail,
        )
        self.store.beat(record)


def describe_heartbeat(record: HeartbeatRecord, now: datetime) -> tuple[str, str]:
    """(state, detail) for `tradelib status`: alive/stale/stopped and the last cycle."""
    stale_after = float(record.detail.get("stale_after_seconds", STALE_AFTER_SECONDS))
    liveness = record.liveness(now, stale_after)
    silent = (now - record.beat_at).total_seconds()
    if liveness is Liveness.ALIVE:
        state = "ALIVE"
    elif liveness is Liveness.STALE:
        state = f"STALE ({silent:.0f} s silent)"
    else:
        state = record.state.value.upper()
    last = record.last_cycle_at.isoformat(timespec="seconds") if record.last_cycle_at else "never"
    parts = [f"{record.strategy}, pid {record.pid} on {record.host}",
             f"{record.cycles} cycles, last {last}"]  # fmt: skip
    for key in ("halted", "winding_down", "stopped_because"):
        if record.detail.get(key):
            parts.append(f"{key.replace('_', ' ')}: {record.detail[key]}")
    return state, "; ".join(parts)
