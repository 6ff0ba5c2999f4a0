"""What a strategy asks the risk manager for, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradelib.domain import ZERO, Side, SignalKind, StrategyId, require_utc
from tradelib.errors import BreakerTripped, DataError, KillSwitchEngaged, RiskRejected
from tradelib.position.exits import ExitDecision


def _positive(value: Decimal | None, what: str) -> None:
    if value is not None and (not value.is_finite() or value <= 0):
        raise DataError(f"order intent: {what} must be a positive number, got {value}")


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A wish to enter or exit, sized by quantity, quote notional or percent of equity at risk.

    Entries give exactly one of `quantity`, `notional` (quote currency) or `risk_pct` (percent
    of equity lost if the stop is hit, sized from the stop distance). An exit without a size
    closes the whole position. `stop_price` None means the default stop-loss distance.
    """

    strategy_id: StrategyId
    symbol: str
    side: Side
    kind: SignalKind
    quantity: Decimal | None = None
    notional: Decimal | None = None
    risk_pct: Decimal | None = None
    stop_price: Decimal | None = None
    reference_price: Decimal | None = None
    exchange: str = "binance"
    reason: str = ""

    def __post_init__(self) -> None:
        _positive(self.quantity, "quantity")
        _positive(self.notional, "notional")
        _positive(self.risk_pct, "risk_pct")
        _positive(self.stop_price, "stop price")
        sizes = sum(v is not None for v in (self.quantity, self.notional, self.risk_pct))
        if self.kind is SignalKind.ENTRY and sizes != 1:
            raise DataError(
                f"entry intent for {self.symbol}: give exactly one of quantity, notional or "
                f"risk_pct (got {sizes})"
            )
        if self.kind is SignalKind.EXIT and (sizes > 1 or self.risk_pct is not None):
            raise DataError(f"exit intent for {self.symbol}: give a quantity, a notional or none")


def exit_intent(decision: ExitDecision) -> OrderIntent:
    """The exit intent that carries out a triggered stop, trailing stop or take-profit."""
    return OrderIntent(
        strategy_id=StrategyId(decision.strategy_id),
        symbol=decision.symbol,
        side=decision.side,
        kind=SignalKind.EXIT,
        quantity=decision.quantity,
        reference_price=decision.price,
        exchange=decision.exchange,
        reason=decision.explanation,
    )


@dataclass(frozen=True, slots=True)
class ReferencePrice:
    """The latest market price (quote currency), when it was seen, and USD per quote unit."""

    price: Decimal
    at: datetime
    quote_usd_rate: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_utc(self.at, "reference price time"))


class RiskAction(StrEnum):
    """The risk manager's verdict."""

    APPROVE = "approve"
    RESIZE = "resize"
    REJECT = "reject"


class RejectCause(StrEnum):
    """Which family of check refused the intent."""

    KILL_SWITCH = "kill_switch"
    BREAKER = "breaker"
    STALE_DATA = "stale_data"
    MARKET = "market"
    LIMIT = "limit"
    POSITION = "position"
    SLIPPAGE = "slippage"


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """Verdict on an intent: the quantity allowed (0 when rejected) and every reason.

    `limit_price` is the slippage band's edge on the market's tick: the order is sent as a
    limit IOC there, so no fill is worse than the band. None only for an exit without a usable
    reference price, which goes out at market (an exit must never wait for data).
    """

    action: RiskAction
    intent: OrderIntent
    quantity: Decimal
    requested_quantity: Decimal
    price: Decimal | None
    at: datetime
    reasons: tuple[str, ...]
    cause: RejectCause | None = None
    limit_price: Decimal | None = None

    def as_json(self) -> dict[str, Any]:
        """The decision as a JSON-ready dict (numbers as exact strings), for the event log."""

        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "symbol": self.intent.symbol,
            "kind": self.intent.kind.value,
            "side": self.intent.side.value,
            "action": self.action.value,
            "quantity": str(self.quantity),
            "requested": str(self.requested_quantity),
            "price": text(self.price),
            "limit_price": text(self.limit_price),
            "cause": None if self.cause is None else self.cause.value,
            "reasons": list(self.reasons),
        }

    @property
    def approved(self) -> bool:
        """True when an order of `quantity` may be sent."""
        return self.action is not RiskAction.REJECT and self.quantity > ZERO

    def raise_if_rejected(self) -> None:
        """Raise the matching RiskRejected subclass when the intent was refused."""
        if self.approved:
            return
        message = f"{self.intent.kind.value} {self.intent.symbol} refused: " + "; ".join(
            self.reasons
        )
        if self.cause is RejectCause.KILL_SWITCH:
            raise KillSwitchEngaged(message, self.reasons)
        if self.cause is RejectCause.BREAKER:
            raise BreakerTripped(message, self.reasons)
        raise RiskRejected(message, self.reasons)
