"""Controls shared by every process through the store: kill switch, breakers, and enforcing them.

Above `orders` and `risk`: the pure decisions live in `tradelib.risk` (kill switch and breaker
state machines, the kill plan); this package persists them, guards the executor with them and
carries them out against an exchange. `kill()` works from a notebook, a thread or the CLI while
an engine runs, or hangs, elsewhere.
"""

from tradelib.control.enforce import enforce_kill, kill_intent_key
from tradelib.control.kill import kill, kill_async, open_kill_exchange
from tradelib.control.risk_control import (
    BREAKERS_CONTROL,
    KILL_CONTROL,
    KILL_INTENT_PREFIX,
    RiskControl,
)

__all__ = [
    "BREAKERS_CONTROL",
    "KILL_CONTROL",
    "KILL_INTENT_PREFIX",
    "RiskControl",
    "enforce_kill",
    "kill",
    "kill_async",
    "kill_intent_key",
    "open_kill_exchange",
]
