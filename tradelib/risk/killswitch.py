"""Kill switch: its state, the engage/release transitions, and the plan that enforces it.

Only the pure part lives here. Persisting the state (so every process sees it) and running the
plan against the exchange belong to `tradelib.control`. Engaging needs no
confirmation — stopping must always be easy; releasing needs a verified second factor (TOTP),
checked by the caller and passed in as `totp_verified`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradelib.domain import (
    ClientOrderId,
    Market,
    Order,
    OrderType,
    Position,
    Side,
    TimeInForce,
    require_utc,
    round_down,
)
from tradelib.errors import DataError
from tradelib.risk.slippage import price_band


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    """Whether the kill switch is engaged, since when, by whom, why, and whether to flatten."""

    engaged: bool = False
    since: datetime | None = None
    by: str | None = None
    reason: str | None = None
    flatten: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for persistence."""
        return {
            "engaged": self.engaged,
            "since": self.since.isoformat() if self.since else None,
            "by": self.by,
            "reason": self.reason,
            "flatten": self.flatten,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KillSwitchState:
        """Inverse of `to_dict`."""
        since = data.get("since")
        return cls(
            engaged=bool(data["engaged"]),
            since=require_utc(datetime.fromisoformat(since), "since") if since else None,
            by=data.get("by"),
            reason=data.get("reason"),
            flatten=bool(data.get("flatten", False)),
        )


@dataclass(frozen=True, slots=True)
class KillSwitchTransition:
    """Result of asking to engage or release: the state after and whether it changed."""

    state: KillSwitchState
    accepted: bool
    reason: str


def _require_text(value: str, what: str) -> None:
    if not value or not value.strip():
        raise DataError(f"kill switch: {what} must be given")


def engage(
    state: KillSwitchState, by: str, reason: str, now: datetime, flatten: bool = False
) -> KillSwitchTransition:
    """Engage the switch; engaging again can add flatten (never remove it) and keeps `since`."""
    _require_text(by, "who engages it")
    _require_text(reason, "the reason")
    now = require_utc(now, "kill switch time")
    if state.engaged:
        new = replace(state, flatten=state.flatten or flatten)
        what = "flatten added" if new.flatten and not state.flatten else "already engaged"
        return KillSwitchTransition(
            new, new != state, f"kill switch {what} (engaged since {state.since} by {state.by})"
        )
    new = KillSwitchState(engaged=True, since=now, by=by, reason=reason, flatten=flatten)
    action = "cancel all orders and flatten every position" if flatten else "cancel all orders"
    return KillSwitchTransition(new, True, f"kill switch engaged by {by}: {reason}; {action}")


def release(
    state: KillSwitchState, by: str, reason: str, now: datetime, totp_verified: bool
) -> KillSwitchTransition:
    """Release the switch, only with a verified second factor."""
    _require_text(by, "who releases it")
    _require_text(reason, "the reason")
    require_utc(now, "kill switch time")
    if not state.engaged:
        return KillSwitchTransition(state, False, "kill switch is not engaged: nothing to release")
    if not totp_verified:
        return KillSwitchTransition(
            state,
            False,
            f"release refused for {by}: the TOTP code was not verified; the kill switch "
            f"stays engaged (since {state.since} by {state.by}: {state.reason})",
        )
    return KillSwitchTransition(
        KillSwitchState(),
        True,
        f"kill switch released by {by} at {now.isoformat()} (TOTP verified): {reason}",
    )


class KillActionKind(StrEnum):
    """What the executor must do."""

    CANCEL_ORDER = "cancel_order"
    CLOSE_POSITION = "close_position"


@dataclass(frozen=True, slots=True)
class KillAction:
    """One step of the kill plan: cancel an order, or close a position (IOC within the band)."""

    kind: KillActionKind
    symbol: str
    reason: str
    exchange: str
    client_order_id: ClientOrderId | None = None
    strategy_id: str | None = None
    side: Side | None = None
    quantity: Decimal | None = None
    order_type: OrderType | None = None
    limit_price: Decimal | None = None
    time_in_force: TimeInForce | None = None


def kill_plan(
    state: KillSwitchState,
    open_orders: Sequence[Order],
    positions: Sequence[Position],
    prices: Mapping[str, Decimal],
    bound_pct: Decimal,
    markets: Mapping[str, Market] | None = None,
) -> list[KillAction]:
    """Actions enforcing `state`: cancel every open order, then (flatten) close every position.

    Cancels come first so no resting order re-opens exposure while positions are closed. A
    close is a limit IOC at reference ∓ `bound_pct` (rounded inside the band on the market's
    tick). Without a usable price the close falls back to a market order, said in the reason:
    flattening must not wait for data.
    """
    if not state.engaged:
        return []
    actions: list[KillAction] = []
    for order in open_orders:
        if order.status.is_terminal:
            continue
        actions.append(
            KillAction(
                kind=KillActionKind.CANCEL_ORDER,
                symbol=order.symbol,
                exchange=order.exchange,
                client_order_id=order.client_order_id,
                strategy_id=order.strategy_id,
                reason=f"kill switch: cancel {order.side.value} {order.remaining} {order.symbol}",
            )
        )
    if not state.flatten:
        return actions
    for position in positions:
        if position.quantity <= 0:
            continue
        market = (markets or {}).get(position.symbol)
        side = position.side.opposite
        quantity = round_down(position.quantity, market.amount_step if market else None)
        if quantity <= 0:
            continue
        price = prices.get(position.symbol)
        if price is not None and price.is_finite() and price > 0:
            limit = price_band(side, price, bound_pct, market.price_tick if market else None)
            order_type, tif = OrderType.LIMIT, TimeInForce.IOC
            why = (
                f"kill switch flatten: {side.value} {quantity} {position.symbol} IOC limit "
                f"{limit} ({bound_pct}% from {price})"
            )
        else:
            limit, order_type, tif = None, OrderType.MARKET, None
            why = (
                f"kill switch flatten: {side.value} {quantity} {position.symbol} at market — "
                "no usable reference price for a price band"
            )
        if quantity < position.quantity:
            why += f"; {position.quantity - quantity} below the amount step stays as dust"
        actions.append(
            KillAction(
                kind=KillActionKind.CLOSE_POSITION,
                symbol=position.symbol,
                exchange=position.exchange,
                strategy_id=position.strategy_id,
                side=side,
                quantity=quantity,
                order_type=order_type,
                limit_price=limit,
                time_in_force=tif,
                reason=why,
            )
        )
    return actions
