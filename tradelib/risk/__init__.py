"""Pure risk: pre-trade checks and sizing, circuit breakers, slippage bounds, kill switch types.

Nothing here touches a store, an exchange or an order: every function takes the numbers it
needs and returns a decision. Persisting and enforcing the kill switch and the breakers is
`tradelib.control`'s job (`RiskControl`, `kill()`).
"""

from tradelib.risk.breakers import (
    ApiError,
    Breaker,
    BreakerEvent,
    BreakerState,
    EventKind,
    ExchangeBan,
    MarketDataAge,
    Observation,
    PortfolioObservation,
    TradeClosed,
    Trip,
    reset,
    update,
)
from tradelib.risk.intent import (
    OrderIntent,
    ReferencePrice,
    RejectCause,
    RiskAction,
    RiskDecision,
    exit_intent,
)
from tradelib.risk.killswitch import (
    KillAction,
    KillActionKind,
    KillSwitchState,
    KillSwitchTransition,
    engage,
    kill_plan,
    release,
)
from tradelib.risk.limits import RiskManager
from tradelib.risk.sizing import SizingLimits, capital_base, live_capped, size_position
from tradelib.risk.slippage import (
    SlippageAction,
    SlippageDecision,
    adverse_deviation_pct,
    average_price,
    max_quantity_within,
    price_band,
    protect,
)

__all__ = [
    "ApiError",
    "Breaker",
    "BreakerEvent",
    "BreakerState",
    "EventKind",
    "ExchangeBan",
    "KillAction",
    "KillActionKind",
    "KillSwitchState",
    "KillSwitchTransition",
    "MarketDataAge",
    "Observation",
    "OrderIntent",
    "PortfolioObservation",
    "ReferencePrice",
    "RejectCause",
    "RiskAction",
    "RiskDecision",
    "RiskManager",
    "SizingLimits",
    "SlippageAction",
    "SlippageDecision",
    "TradeClosed",
    "Trip",
    "adverse_deviation_pct",
    "average_price",
    "capital_base",
    "engage",
    "exit_intent",
    "kill_plan",
    "live_capped",
    "max_quantity_within",
    "price_band",
    "protect",
    "release",
    "reset",
    "size_position",
    "update",
]
