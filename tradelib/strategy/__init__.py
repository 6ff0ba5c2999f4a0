"""Strategies: the versioned Strategy interface, the unlock calendar and TokenUnlockStrategy."""

from tradelib.strategy.base import (
    INTERFACE_VERSION,
    SIGNAL_FIELDS,
    Strategy,
    normalize_candles,
)
from tradelib.strategy.calendar import (
    UnlockCalendar,
    UnlockEvent,
    import_events,
    load_calendar,
    read_events,
)
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy, base_asset, eligible_events

__all__ = [
    "INTERFACE_VERSION",
    "SIGNAL_FIELDS",
    "Strategy",
    "TokenUnlockParams",
    "TokenUnlockStrategy",
    "UnlockCalendar",
    "UnlockEvent",
    "base_asset",
    "eligible_events",
    "import_events",
    "load_calendar",
    "normalize_candles",
    "read_events",
]
