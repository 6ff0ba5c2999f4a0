"""Operating running engines from any process: steering controls and commands.

`steering`: pause/resume an account's entries and adjust its risk limits (audited; loosening a
limit needs a second factor). `commands`: ask an account's running engine to close one
position or cancel one order. Heartbeats live in the store (`Store.beat`, `HeartbeatRecord`).
"""

from tradelib.operations.commands import COMMAND_TTL, send_command
from tradelib.operations.steering import (
    PauseState,
    change_limits,
    effective_limits,
    limits_key,
    pause_key,
    pause_state,
    set_paused,
)

__all__ = [
    "COMMAND_TTL",
    "PauseState",
    "change_limits",
    "effective_limits",
    "limits_key",
    "pause_key",
    "pause_state",
    "send_command",
    "set_paused",
]
