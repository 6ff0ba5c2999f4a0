"""What the engine asks the executor to do: the order a risk decision allows."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradelib.domain import (
    OrderType,
    Side,
    SignalKind,
    StrategyId,
    TimeInForce,
    positive_amount,
)
from tradelib.errors import DataError
from tradelib.risk.intent import RiskDecision


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """An approved order intent; `intent_key` makes its client order id deterministic.

    The same decision (strategy, symbol, key) always maps to the same client order id, so a
    restart that re-evaluates the same candle finds the order it already wrote instead of
    sending a second one. Strategy orders are built by `from_decision`; a request made by hand
    (a manual order, a replace, a kill-switch close) states its own type and price.
    """

    strategy_id: StrategyId
    symbol: str
    side: Side
    quantity: Decimal
    intent_key: str
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    stop_price: Decimal | None = None
    reason: str = ""
    risk_reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise DataError(f"an order needs a symbol such as 'ARB/USDT', got {self.symbol!r}")
        if not self.intent_key:
            raise DataError(f"{self.symbol}: an execution request needs an intent_key")
        where = f"{self.symbol} {self.intent_key}"
        object.__setattr__(self, "quantity", positive_amount(self.quantity, f"{where}: quantity"))
        for name in ("price", "stop_price"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, positive_amount(value, f"{where}: {name}"))
        if self.type is OrderType.LIMIT and self.price is None:
            raise DataError(f"{where}: a limit order needs a price > 0")

    @classmethod
    def from_decision(cls, decision: RiskDecision, intent_key: str) -> ExecutionRequest:
        """The order `decision` allows: its quantity, a limit IOC at its price band, its stop.

        Raises the decision's RiskRejected when it was refused. Exits are reduce-only; an exit
        the risk manager left without a band (no usable reference price) goes out at market.
        """
        decision.raise_if_rejected()
        intent, limit = decision.intent, decision.limit_price
        return cls(
            strategy_id=intent.strategy_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=decision.quantity,
            intent_key=intent_key,
            type=OrderType.MARKET if limit is None else OrderType.LIMIT,
            price=limit,
            time_in_force=TimeInForce.GTC if limit is None else TimeInForce.IOC,
            reduce_only=intent.kind is SignalKind.EXIT,
            stop_price=intent.stop_price,
            reason=intent.reason,
            risk_reasons=decision.reasons,
        )

    def as_json(self) -> dict[str, Any]:
        """The intent as stored next to its order (every value a string, bool or list)."""
        return {
            "strategy_id": self.strategy_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": str(self.quantity),
            "intent_key": self.intent_key,
            "type": self.type.value,
            "price": None if self.price is None else str(self.price),
            "time_in_force": self.time_in_force.value,
            "reduce_only": self.reduce_only,
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "reason": self.reason,
            "risk_reasons": list(self.risk_reasons),
        }
