"""Operating running engines from any process: the paper/live switch, steering, commands.

`mode`: the paper/live switch (going live needs TOTP and a passed key check, and gives a
one-time grant the engine service consumes). `steering`: pause/resume an account's entries
and adjust its risk limits (audited; loosening a limit needs a second factor). `commands`:
ask an account's running engine to close one position or cancel one order. Heartbeats live
in the store (`Store.beat`, `HeartbeatRecord`).
"""

from tradelib.operations.commands import COMMAND_TTL, send_command
from tradelib.operations.mode import (
    ModeRequest,
    consume_live_grant,
    mode_key,
    mode_request,
    request_live,
    request_paper,
)
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
    "ModeRequest",
    "PauseState",
    "change_limits",
    "consume_live_grant",
    "effective_limits",
    "limits_key",
    "mode_key",
    "mode_request",
    "pause_key",
    "pause_state",
    "request_live",
    "request_paper",
    "send_command",
    "set_paused",
]
