"""Slippage protection: keep an order's average fill within max_slippage_pct of the reference.

The expected fill price is the volume-weighted average the book gives for the quantity
(`OrderBook.price_for_quantity`, computed elsewhere). An order expected to deviate more than
the bound is cut to the largest quantity whose average stays inside it — walking the book
levels it would consume — or refused when nothing fits. Every order a risk decision allows is
sent as a limit IOC at the band's edge (`price_band`, the one band function), so no fill can be
worse than the band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from tradelib.domain import ZERO, Side, round_down, round_up
from tradelib.errors import DataError

HUNDRED = Decimal(100)
ONE = Decimal(1)

Level = tuple[Decimal, Decimal]


def _check_price(value: Decimal, what: str) -> None:
    if not value.is_finite() or value <= 0:
        raise DataError(f"{what} must be a positive number, got {value}")


def adverse_deviation_pct(side: Side, reference: Decimal, price: Decimal) -> Decimal:
    """How much worse than `reference` `price` is for `side`, in percent (negative = better)."""
    _check_price(reference, "reference price")
    _check_price(price, "fill price")
    return (price - reference) / reference * HUNDRED * side.sign


def price_band(
    side: Side, reference: Decimal, max_pct: Decimal, tick: Decimal | None = None
) -> Decimal:
    """Worst acceptable limit price: reference +bound for buys, -bound for sells, on the tick.

    Rounded towards the reference so the rounded price never lies outside the band.
    """
    _check_price(reference, "reference price")
    edge = reference * (ONE + side.sign * max_pct / HUNDRED)
    return round_down(edge, tick) if side is Side.BUY else round_up(edge, tick)


def average_price(levels: Sequence[Level], quantity: Decimal) -> Decimal | None:
    """Volume-weighted price of taking `quantity` from `levels` (best first), None if too thin."""
    remaining, cost = quantity, ZERO
    for price, size in levels:
        take = min(size, remaining)
        cost += take * price
        remaining -= take
        if remaining == 0:
            return cost / quantity
    return None


def max_quantity_within(
    side: Side,
    levels: Sequence[Level],
    reference: Decimal,
    max_pct: Decimal,
    step: Decimal | None = None,
) -> Decimal:
    """Largest quantity whose average fill from `levels` stays within the band (step-rounded).

    Walking the consumed side of the book, the average only worsens; inside the level where
    it would cross the bound the exact cut solves (cost + x p) / (filled + x) = limit.
    """
    limit = reference * (ONE + side.sign * max_pct / HUNDRED)
    filled = cost = ZERO
    for price, size in levels:
        _check_price(price, "book price")
        if (price - limit) * side.sign <= 0:
            filled += size
            cost += size * price
            continue
        # Worse than the limit: take only as much as keeps the average at the limit.
        room = (limit * filled - cost) * side.sign
        extra = max(room / ((price - limit) * side.sign), ZERO)
        if extra >= size:
            # The whole level still averages inside the band; a later level may too.
            filled += size
            cost += size * price
            continue
        filled += extra
        break
    return round_down(filled, step)


class SlippageAction(StrEnum):
    """Outcome of the slippage check."""

    ACCEPT = "accept"
    REDUCE = "reduce"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class SlippageDecision:
    """Quantity allowed by the slippage bound, the IOC limit price, and why."""

    action: SlippageAction
    quantity: Decimal
    requested: Decimal
    limit_price: Decimal
    expected_price: Decimal | None
    reasons: tuple[str, ...]


def protect(
    side: Side,
    quantity: Decimal,
    reference: Decimal,
    expected_fill_price: Decimal | None,
    max_pct: Decimal,
    levels: Sequence[Level] = (),
    step: Decimal | None = None,
    tick: Decimal | None = None,
) -> SlippageDecision:
    """Accept, cut or refuse an order so its expected average stays within `max_pct`.

    `expected_fill_price` None means the book cannot fill the quantity; `levels` is the book
    side the order consumes (asks for a buy, bids for a sell), best first.
    """
    _check_price(reference, "reference price")
    band = price_band(side, reference, max_pct, tick)
    if expected_fill_price is not None:
        deviation = adverse_deviation_pct(side, reference, expected_fill_price)
        if deviation <= max_pct:
            return SlippageDecision(
                SlippageAction.ACCEPT,
                quantity,
                quantity,
                band,
                expected_fill_price,
                (
                    f"expected fill {expected_fill_price} is {deviation:.4f}% from reference "
                    f"{reference}, within {max_pct}%; IOC limit {band}",
                ),
            )
        first = (
            f"expected fill {expected_fill_price} for {quantity} is {deviation:.4f}% worse than "
            f"reference {reference}, above the {max_pct}% bound"
        )
    else:
        first = f"the book cannot fill {quantity} at all"
    if not levels:
        return SlippageDecision(
            SlippageAction.REFUSE,
            ZERO,
            quantity,
            band,
            expected_fill_price,
            (first, "no book levels to find a smaller quantity: refused"),
        )
    allowed = min(quantity, max_quantity_within(side, levels, reference, max_pct, step))
    if allowed >= quantity:
        # The book itself says the whole quantity fits: the estimate was stale or rounded.
        new_price = average_price(levels, quantity)
        return SlippageDecision(
            SlippageAction.ACCEPT,
            quantity,
            quantity,
            band,
            new_price,
            (first, f"the book levels fill {quantity} at {new_price}, within {max_pct}%"),
        )
    if allowed <= 0:
        return SlippageDecision(
            SlippageAction.REFUSE,
            ZERO,
            quantity,
            band,
            expected_fill_price,
            (first, f"no quantity fills within {max_pct}% of {reference}: refused"),
        )
    new_price = average_price(levels, allowed)
    return SlippageDecision(
        SlippageAction.REDUCE,
        allowed,
        quantity,
        band,
        new_price,
        (
            first,
            f"reduced from {quantity} to {allowed}, expected average {new_price} "
            f"within {max_pct}%; IOC limit {band}",
        ),
    )
