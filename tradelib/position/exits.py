"""Stop-loss, take-profit and trailing-stop levels per position, and their evaluation.

Levels live on the domain `Position` (stop_loss, take_profit, trailing_stop, high_water) so a
persisted position carries its exits. Everything here returns new values; nothing mutates.

For a long, `high_water` is the highest price seen since the position opened; for a short it
is the lowest (a "low-water" mark) — one field, read according to the position's side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from tradelib.config import RiskSettings
from tradelib.domain import Position, PositionStatus, Side, require_utc
from tradelib.errors import DataError

HUNDRED = Decimal(100)
ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class ExitRules:
    """Exit distances in percent of the entry price (2 means 2 %); seed values by default."""

    stop_loss_pct: Decimal = Decimal(2)
    take_profit_pct: Decimal = Decimal(5)
    trailing_activation_pct: Decimal = Decimal(3)
    trailing_distance_pct: Decimal = Decimal(2)

    @classmethod
    def from_settings(cls, risk: RiskSettings) -> ExitRules:
        """The exit rules configured in `risk`."""
        return cls(
            stop_loss_pct=risk.stop_loss_pct,
            take_profit_pct=risk.take_profit_pct,
            trailing_activation_pct=risk.trailing_activation_pct,
            trailing_distance_pct=risk.trailing_distance_pct,
        )


class ExitReason(StrEnum):
    """Which exit level the price crossed."""

    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """Close `quantity` of a position on `side` because `price` crossed `trigger_price`."""

    reason: ExitReason
    strategy_id: str
    exchange: str
    symbol: str
    side: Side
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    at: datetime
    explanation: str


def _fraction(pct: Decimal) -> Decimal:
    return pct / HUNDRED


def default_stop(side: Side, entry: Decimal, stop_loss_pct: Decimal) -> Decimal:
    """The stop `stop_loss_pct` percent below a long's entry (above a short's)."""
    return entry * (ONE - side.sign * _fraction(stop_loss_pct))


def default_take_profit(side: Side, entry: Decimal, take_profit_pct: Decimal) -> Decimal:
    """The take-profit `take_profit_pct` percent above a long's entry (below a short's)."""
    return entry * (ONE + side.sign * _fraction(take_profit_pct))


def with_exit_levels(
    position: Position,
    rules: ExitRules,
    stop_price: Decimal | None = None,
    take_profit_price: Decimal | None = None,
) -> Position:
    """Return `position` with stop, take-profit and high-water set from its entry and `rules`.

    An explicit `stop_price` / `take_profit_price` (from the strategy) wins over the default
    distances; a stop on the wrong side of the entry is refused because it would close the
    position at once.
    """
    entry = position.average_entry
    stop = (
        stop_price
        if stop_price is not None
        else default_stop(position.side, entry, rules.stop_loss_pct)
    )
    take = (
        take_profit_price
        if take_profit_price is not None
        else default_take_profit(position.side, entry, rules.take_profit_pct)
    )
    if (stop - entry) * position.side.sign >= 0:
        raise DataError(
            f"{position.symbol}: stop {stop} is not on the losing side of the "
            f"{position.side.value} entry {entry}"
        )
    if (take - entry) * position.side.sign <= 0:
        raise DataError(
            f"{position.symbol}: take-profit {take} is not on the winning side of the "
            f"{position.side.value} entry {entry}"
        )
    return replace(position, stop_loss=stop, take_profit=take, trailing_stop=None, high_water=entry)


def track_price(position: Position, price: Decimal, rules: ExitRules) -> Position:
    """Return `position` with its high-water mark and trailing stop moved by `price`.

    The trailing stop activates once the high-water mark is `trailing_activation_pct` beyond
    the entry, then sits `trailing_distance_pct` behind the high-water mark and only ever
    tightens (it never moves back towards the entry).
    """
    if position.quantity <= 0 or position.status is PositionStatus.CLOSED:
        return position
    _check_price(position, price)
    entry = position.average_entry
    sign = position.side.sign
    water = position.high_water if position.high_water is not None else entry
    water = max(water, price) if sign > 0 else min(water, price)
    trailing = position.trailing_stop
    activation = entry * (ONE + sign * _fraction(rules.trailing_activation_pct))
    if (water - activation) * sign >= 0:
        candidate = water * (ONE - sign * _fraction(rules.trailing_distance_pct))
        if trailing is None or (candidate - trailing) * sign > 0:
            trailing = candidate
    return replace(position, high_water=water, trailing_stop=trailing)


def _check_price(position: Position, price: Decimal) -> None:
    if not price.is_finite() or price <= 0:
        raise DataError(f"{position.symbol}: price must be a positive number, got {price}")


def evaluate_exits(position: Position, price: Decimal, now: datetime) -> ExitDecision | None:
    """The exit `price` triggers on `position` (stop, trailing stop or take-profit), or None.

    Uses the levels already on the position: call `track_price` after evaluating a price, not
    before, so a new high cannot trigger the trailing stop it just raised. When both a stop and
    the trailing stop are crossed, the one a moving price crosses first (the tighter) is named.
    """
    if position.quantity <= 0 or position.status is PositionStatus.CLOSED:
        return None
    _check_price(position, price)
    now = require_utc(now, "exit evaluation time")
    sign = position.side.sign
    stops: list[tuple[Decimal, ExitReason]] = []
    if position.stop_loss is not None and (price - position.stop_loss) * sign <= 0:
        stops.append((position.stop_loss, ExitReason.STOP_LOSS))
    if position.trailing_stop is not None and (price - position.trailing_stop) * sign <= 0:
        stops.append((position.trailing_stop, ExitReason.TRAILING_STOP))
    if stops:
        # Long: the highest stop is crossed first by a falling price; short: the lowest.
        trigger, reason = max(stops, key=lambda s: s[0] * sign)
    elif position.take_profit is not None and (price - position.take_profit) * sign >= 0:
        trigger, reason = position.take_profit, ExitReason.TAKE_PROFIT
    else:
        return None
    direction = (
        "at or below" if (reason is not ExitReason.TAKE_PROFIT) == (sign > 0) else ("at or above")
    )
    move = (price - position.average_entry) / position.average_entry * HUNDRED * sign
    explanation = (
        f"{reason.value.replace('_', ' ')}: {position.symbol} {position.side.value} "
        f"{position.quantity} price {price} is {direction} {trigger} "
        f"(entry {position.average_entry}, {move:+.2f}% from entry)"
    )
    return ExitDecision(
        reason=reason,
        strategy_id=position.strategy_id,
        exchange=position.exchange,
        symbol=position.symbol,
        side=position.side.opposite,
        quantity=position.quantity,
        trigger_price=trigger,
        price=price,
        at=now,
        explanation=explanation,
    )


def step_exits(
    position: Position, price: Decimal, now: datetime, rules: ExitRules
) -> tuple[Position, ExitDecision | None]:
    """Evaluate `price` against the current levels, then move the high-water mark."""
    decision = evaluate_exits(position, price, now)
    return track_price(position, price, rules), decision
