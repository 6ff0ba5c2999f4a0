"""Commands a person sends an account's running engine: close one position, cancel one order.

The engine that owns an account's orders and positions is the only process that acts on them
(two executors on one account would each miss the other's fills), so the dashboard and the
CLI enqueue a command and the engine claims it on its next control tick. A command carries a
time to live: one nobody took in time expires instead of acting on a market that has moved.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tradelib.domain import Mode, require_utc
from tradelib.errors import DataError
from tradelib.store.records import CommandKind

if TYPE_CHECKING:
    from tradelib.store import Store

COMMAND_TTL = timedelta(seconds=60)
_REQUIRED: dict[CommandKind, tuple[str, ...]] = {
    CommandKind.CLOSE_POSITION: ("symbol", "strategy_id"),
    CommandKind.CANCEL_ORDER: ("client_order_id",),
}


def send_command(
    store: Store,
    mode: Mode | str,
    exchange: str,
    kind: CommandKind | str,
    payload: dict[str, Any],
    by: str,
    reason: str,
    now: datetime,
    ttl: timedelta = COMMAND_TTL,
) -> int:
    """Validate and enqueue a command for the account's engine; returns the command id."""
    try:
        command = CommandKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in CommandKind)
        raise DataError(f"unknown engine command {kind!r}; known: {known}") from None
    missing = [k for k in _REQUIRED[command] if not str(payload.get(k) or "").strip()]
    if missing:
        raise DataError(f"command {command.value} needs {', '.join(missing)} in its payload")
    now = require_utc(now, "command time")
    event = {"kind": command.value, "payload": payload, "by": by, "reason": reason,
             "mode": Mode(mode).value, "exchange": exchange}  # fmt: skip
    with store.transaction():
        command_id = store.enqueue_command(mode, exchange, command, payload, by, reason, now,
                                           now + ttl)  # fmt: skip
        store.append_event("command_sent", {**event, "id": command_id}, now, source=by)
    return command_id
