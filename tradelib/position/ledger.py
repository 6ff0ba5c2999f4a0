"""Positions from fills: open, add, reduce, close and flip, with exact Decimal books.

Each position is kept per (strategy, exchange, symbol) as a `Holding`: the domain `Position`
plus the exact numbers behind it — the signed cost of the open quantity and the entry fees not
yet released into realised P&L. Average entry is shown on the `Position` but never used for
P&L, because a weighted average is an inexact division; cost is released in proportion to the
quantity reduced and the remainder is kept by subtraction, so for any sequence of fills

    cash_flow + quantity * mark == realised_net + unrealised_net     (exactly)

where unrealised_net = signed_quantity * mark - cost - open_fees.

Fees. A fee paid in quote currency is a cash outflow. A fee paid in the base asset reduces the
base actually held, so it is booked as the holding changing by (signed quantity - fee) with the
fee's value at the fill price counted as a fee: the quote-valued books then equal the wallet.
A fee in a third asset (BNB) needs its price in quote (`fee_rate`) and is counted as a
quote-equivalent outflow.

Flips. Fills are facts: the ledger never refuses one, so a sell larger than a long closes the
long (realising its P&L) and opens a short with the rest; the fee is split pro rata by
quantity. Stopping spot flips is the risk manager's job (an exit is capped at the position).

Status. CLOSED: quantity is zero. PARTIAL: an exit fill reduced the position and some quantity
is left, or the latest entry order (the client order id of the last opening/adding fill) has
filled less than its quantity (passed as `entry_target`). OPEN otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from tradelib.domain import (
    ZERO,
    Fill,
    Mode,
    Position,
    PositionStatus,
    Side,
    StrategyId,
    split_symbol,
)
from tradelib.errors import DataError
from tradelib.position.exits import ExitRules, with_exit_levels

# Allocations (released cost and fees) are rounded to this many places; the remainder is kept
# by subtraction so the books stay exact whatever the rounding.
ALLOCATION_QUANTUM = Decimal("1e-12")
AVERAGE_QUANTUM = Decimal("1e-12")


@dataclass(frozen=True, slots=True)
class PositionKey:
    """Identity of a position: one strategy's holding of one symbol on one exchange."""

    strategy_id: StrategyId
    exchange: str
    symbol: str


@dataclass(frozen=True, slots=True)
class Holding:
    """A position with its exact books (all amounts in quote currency)."""

    position: Position
    cost: Decimal
    open_fees: Decimal
    cash_flow: Decimal
    entry_filled: Decimal = ZERO
    entry_target: Decimal | None = None
    entry_order: str | None = None
    reduced: bool = False

    @property
    def key(self) -> PositionKey:
        """The (strategy, exchange, symbol) this holding belongs to."""
        p = self.position
        return PositionKey(p.strategy_id, p.exchange, p.symbol)

    @property
    def signed_quantity(self) -> Decimal:
        """Quantity held, positive for a long and negative for a short."""
        return self.position.quantity * self.position.side.sign

    def unrealised(self, mark: Decimal) -> Decimal:
        """Unrealised P&L at `mark`, net of the entry fees of the open quantity (exact)."""
        return self.signed_quantity * mark - self.cost - self.open_fees


@dataclass(frozen=True, slots=True)
class FillResult:
    """What one fill did: the holding after it, what it realised and what it closed."""

    key: PositionKey
    holding: Holding
    realised: Decimal
    fee_quote: Decimal
    cash_delta: Decimal
    closed: Position | None
    opened: bool
    duplicate: bool
    notes: tuple[str, ...]


def fee_in_quote(fill: Fill, fee_rate: Decimal | None = None) -> tuple[Decimal, Decimal, Decimal]:
    """(fee in base units, fee paid in quote, fee valued in a third asset) for `fill`.

    The base part changes the quantity held; the other two are quote-valued outflows.
    """
    if fill.fee == 0:
        return ZERO, ZERO, ZERO
    base, quote = split_symbol(fill.symbol)
    if fill.fee_currency == quote:
        return ZERO, fill.fee, ZERO
    if fill.fee_currency == base:
        return fill.fee, ZERO, ZERO
    if fee_rate is None or not fee_rate.is_finite() or fee_rate <= 0:
        raise DataError(
            f"fill {fill.trade_id}: fee {fill.fee} {fill.fee_currency} needs the price of "
            f"{fill.fee_currency} in {quote} (fee_rate) to be booked"
        )
    return ZERO, ZERO, fill.fee * fee_rate


def _allocate(amount: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    if part == whole:
        return amount
    return (amount * part / whole).quantize(ALLOCATION_QUANTUM, rounding=ROUND_HALF_EVEN)


def _status(holding: Holding) -> PositionStatus:
    if holding.position.quantity == 0:
        return PositionStatus.CLOSED
    if holding.reduced:
        return PositionStatus.PARTIAL
    if holding.entry_target is not None and holding.entry_filled < holding.entry_target:
        return PositionStatus.PARTIAL
    return PositionStatus.OPEN


def _average(cost: Decimal, quantity: Decimal) -> Decimal:
    return (abs(cost) / quantity).quantize(AVERAGE_QUANTUM, rounding=ROUND_HALF_EVEN)


def _new_holding(
    key: PositionKey, signed_qty: Decimal, price: Decimal, fee: Decimal, at: datetime, mode: Mode
) -> Holding:
    side = Side.BUY if signed_qty > 0 else Side.SELL
    position = Position(
        strategy_id=key.strategy_id,
        exchange=key.exchange,
        symbol=key.symbol,
        side=side,
        quantity=abs(signed_qty),
        average_entry=price,
        opened_at=at,
        fees=fee,
        mode=mode,
    )
    return Holding(position=position, cost=signed_qty * price, open_fees=fee, cash_flow=ZERO)


def _levels(
    position: Position, rules: ExitRules, stop_price: Decimal | None, notes: list[str]
) -> Position:
    # A fill is a fact: a bad strategy stop must not stop it being booked, so fall back.
    try:
        return with_exit_levels(position, rules, stop_price)
    except DataError as exc:
        notes.append(f"{exc}; default stop-loss of {rules.stop_loss_pct}% used instead")
        return with_exit_levels(position, rules)


def apply_fill(
    holding: Holding | None,
    fill: Fill,
    key: PositionKey,
    *,
    mode: Mode = Mode.PAPER,
    fee_rate: Decimal | None = None,
    entry_target: Decimal | None = None,
    exit_rules: ExitRules | None = None,
    stop_price: Decimal | None = None,
) -> FillResult:
    """Apply one fill to a holding (None or closed: a new position) and report the change.

    `entry_target` is the entry order's quantity, used for the PARTIAL status; `exit_rules`
    (and an optional strategy `stop_price`) set the exit levels when a position opens. Adds keep
    the existing levels: the risk check for the add measured its heat against that stop.
    """
    if fill.symbol != key.symbol:
        raise DataError(f"fill {fill.trade_id} is for {fill.symbol}, not {key.symbol}")
    fee_base, fee_quote, fee_other = fee_in_quote(fill, fee_rate)
    price = fill.price
    delta = fill.side.sign * fill.quantity - fee_base
    fee = fee_quote + fee_other + fee_base * price
    cash_delta = -(delta * price) - fee
    notes: list[str] = []
    closed: Position | None = None
    realised = ZERO
    opened = False
    added = False
    # Entry progress is measured in order quantity (gross of a base-asset fee).
    entry_gross = fill.quantity

    if holding is not None and holding.position.quantity == 0:
        holding = None
    if delta == 0:
        raise DataError(f"fill {fill.trade_id}: base fee {fee_base} cancels the whole quantity")

    if holding is None:
        holding = _new_holding(key, delta, price, fee, fill.timestamp, mode)
        holding = replace(holding, cash_flow=cash_delta)
        opened = True
        notes.append(f"opened {holding.position.side.value} {abs(delta)} @ {price}")
    else:
        q = holding.signed_quantity
        if (q > 0) == (delta > 0):
            added = True
            cost = holding.cost + delta * price
            qty = abs(q + delta)
            position = replace(
                holding.position,
                quantity=qty,
                average_entry=_average(cost, qty),
                fees=holding.position.fees + fee,
            )
            holding = replace(
                holding,
                position=position,
                cost=cost,
                open_fees=holding.open_fees + fee,
                cash_flow=holding.cash_flow + cash_delta,
            )
            notes.append(f"added {abs(delta)} @ {price}, average entry {position.average_entry}")
        else:
            closing = min(abs(delta), abs(q))
            close_fee = _allocate(fee, closing, abs(delta))
            released_cost = _allocate(holding.cost, closing, abs(q))
            released_fees = _allocate(holding.open_fees, closing, abs(q))
            closing_signed = closing if delta > 0 else -closing
            realised = -(closing_signed * price) - released_cost - released_fees - close_fee
            remaining = abs(q) - closing
            close_cash = -(closing_signed * price) - close_fee
            position = replace(
                holding.position,
                quantity=remaining,
                realized_pnl=holding.position.realized_pnl + realised,
                fees=holding.position.fees + close_fee,
            )
            holding = replace(
                holding,
                position=position,
                cost=holding.cost - released_cost,
                open_fees=holding.open_fees - released_fees,
                cash_flow=holding.cash_flow + close_cash,
                reduced=True,
            )
            notes.append(
                f"reduced {position.side.value} by {closing} @ {price}: realised {realised}"
            )
            if remaining == 0:
                position = replace(position, status=PositionStatus.CLOSED, closed_at=fill.timestamp)
                holding = replace(holding, position=position)
                closed = position
                notes.append(f"closed, total realised {position.realized_pnl}")
            rest = abs(delta) - closing
            if rest > 0:
                open_signed = rest if delta > 0 else -rest
                flipped = _new_holding(
                    key, open_signed, price, fee - close_fee, fill.timestamp, mode
                )
                holding = replace(flipped, cash_flow=-(open_signed * price) - (fee - close_fee))
                opened = True
                entry_gross = rest
                notes.append(
                    f"flipped: opened {holding.position.side.value} {rest} @ {price} "
                    "with the rest of the fill"
                )

    if opened:
        # A flip's entry is what is left of the order after closing the old position.
        target = None if entry_target is None else entry_target - (fill.quantity - entry_gross)
        holding = replace(
            holding,
            entry_target=target,
            entry_filled=entry_gross,
            entry_order=fill.client_order_id,
        )
        if exit_rules is not None:
            holding = replace(
                holding, position=_levels(holding.position, exit_rules, stop_price, notes)
            )
    elif added and fill.client_order_id == holding.entry_order:
        holding = replace(
            holding,
            entry_filled=holding.entry_filled + fill.quantity,
            entry_target=entry_target if entry_target is not None else holding.entry_target,
        )
    elif added:
        # A new entry order adds to the position: its progress is measured on its own.
        holding = replace(
            holding,
            entry_filled=fill.quantity,
            entry_target=entry_target,
            entry_order=fill.client_order_id,
        )
    holding = replace(holding, position=replace(holding.position, status=_status(holding)))
    return FillResult(
        key=key,
        holding=holding,
        realised=realised,
        fee_quote=fee,
        cash_delta=cash_delta,
        closed=closed,
        opened=opened,
        duplicate=False,
        notes=tuple(notes),
    )


class PositionLedger:
    """Holdings by (strategy, exchange, symbol), fed with fills; each trade id counts once.

    Deterministic and free of I/O: a store-backed manager loads the holdings and the trade
    ids already applied, feeds new fills, and persists what `apply` returns. Replaying a fill
    (after a reconnect or a reconciliation) is reported as a duplicate and changes nothing.
    """

    def __init__(
        self,
        holdings: Mapping[PositionKey, Holding] | None = None,
        applied_trade_ids: Iterable[tuple[str, str, str]] = (),
        mode: Mode = Mode.PAPER,
        exit_rules: ExitRules | None = None,
    ) -> None:
        self._holdings: dict[PositionKey, Holding] = dict(holdings or {})
        self._seen: set[tuple[str, str, str]] = set(applied_trade_ids)
        self.mode = mode
        self.exit_rules = exit_rules

    def apply(
        self,
        fill: Fill,
        strategy_id: StrategyId,
        exchange: str,
        *,
        fee_rate: Decimal | None = None,
        entry_target: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> FillResult:
        """Apply `fill` to the position of (strategy_id, exchange, fill.symbol)."""
        key = PositionKey(strategy_id, exchange, fill.symbol)
        trade = (exchange, fill.symbol, fill.trade_id)
        current = self._holdings.get(key)
        if trade in self._seen:
            if current is None:
                raise DataError(f"trade {fill.trade_id} was applied but {key} has no holding")
            return FillResult(
                key=key,
                holding=current,
                realised=ZERO,
                fee_quote=ZERO,
                cash_delta=ZERO,
                closed=None,
                opened=False,
                duplicate=True,
                notes=(f"trade {fill.trade_id} already applied: ignored",),
            )
        result = apply_fill(
            current,
            fill,
            key,
            mode=self.mode,
            fee_rate=fee_rate,
            entry_target=entry_target,
            exit_rules=self.exit_rules,
            stop_price=stop_price,
        )
        self._holdings[key] = result.holding
        self._seen.add(trade)
        return result

    def replace_position(self, position: Position) -> None:
        """Store a position whose exit levels moved (trailing stop, high-water mark)."""
        key = PositionKey(position.strategy_id, position.exchange, position.symbol)
        current = self._holdings.get(key)
        if current is None or current.position.quantity != position.quantity:
            raise DataError(f"{key}: position does not match the ledger's holding")
        self._holdings[key] = replace(current, position=position)

    def holding(self, key: PositionKey) -> Holding | None:
        """The holding of `key` (a closed one stays until the next fill reopens it)."""
        return self._holdings.get(key)

    def holdings(self) -> dict[PositionKey, Holding]:
        """Every holding, open or last closed, by key."""
        return dict(self._holdings)

    def open_positions(self) -> list[Position]:
        """Positions with a non-zero quantity."""
        return [h.position for h in self._holdings.values() if h.position.quantity > 0]

    def applied_trade_ids(self) -> frozenset[tuple[str, str, str]]:
        """(exchange, symbol, trade id) of every fill applied, for persistence."""
        return frozenset(self._seen)
