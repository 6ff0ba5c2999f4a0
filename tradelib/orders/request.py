"""What the engine asks the executor to do, after risk approved it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradelib.domain import OrderType, Side, StrategyId, TimeInForce
from tradelib.errors import DataError


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """An approved order intent; `intent_key` makes its client order id deterministic.

    The same decision (strategy, symbol, key) always maps to the same client order id, so a
    restart that re-evaluates the same candle finds the order it already wrote instead of
    sending a second one.
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
    reference_price: Decimal | None = None
    max_slippage_pct: Decimal | None = None
    stop_price: Decimal | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise DataError(f"{self.symbol} {self.intent_key}: quantity must be > 0")
        if not self.intent_key:
            raise DataError(f"{self.symbol}: an execution request needs an intent_key")
        if self.type is OrderType.LIMIT and (self.price is None or self.price <= 0):
            raise DataError(f"{self.symbol} {self.intent_key}: a limit order needs a price > 0")
        if self.max_slippage_pct is not None and (
            self.reference_price is None or self.reference_price <= 0
        ):
            raise DataError(
                f"{self.symbol} {self.intent_key}: a slippage bound needs a reference price"
            )

    def as_json(self) -> dict[str, Any]:
        """The intent as stored next to its order (every value a string or bool)."""
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
            "reference_price": None if self.reference_price is None else str(self.reference_price),
            "max_slippage_pct": None
            if self.max_slippage_pct is None
            else str(self.max_slippage_pct),
            "stop_price": None if self.stop_price is None else str(self.stop_price),
            "reason": self.reason,
        }


def slippage_band(side: Side, reference: Decimal, max_slippage_pct: Decimal) -> Decimal:
    """Worst acceptable price for a market order: the limit of its IOC stand-in."""
    bound = reference * max_slippage_pct / Decimal(100)
    return reference + bound if side is Side.BUY else reference - bound
