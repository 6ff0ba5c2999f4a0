"""Realised and unrealised P&L of holdings, net of fees, in quote currency and in USD."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from tradelib.domain import ZERO, Position
from tradelib.errors import DataError
from tradelib.position.ledger import Holding, PositionKey

HUNDRED = Decimal(100)


def _check_rate(rate: Decimal, what: str) -> None:
    if not rate.is_finite() or rate <= 0:
        raise DataError(f"{what} must be a positive number, got {rate}")


def to_usd(amount: Decimal, quote_usd_rate: Decimal) -> Decimal:
    """`amount` in quote currency converted to USD at `quote_usd_rate` (USD per quote unit)."""
    _check_rate(quote_usd_rate, "quote->USD rate")
    return amount * quote_usd_rate


def unrealised_gross(position: Position, mark: Decimal) -> Decimal:
    """Unrealised P&L of a domain position at `mark`, from its average entry, before fees."""
    _check_rate(mark, f"{position.symbol} mark price")
    return (mark - position.average_entry) * position.quantity * position.side.sign


@dataclass(frozen=True, slots=True)
class PnL:
    """Realised and unrealised P&L of one holding, net of fees, in quote and in USD."""

    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    quote_usd_rate: Decimal

    @property
    def total(self) -> Decimal:
        """Realised plus unrealised, in quote currency."""
        return self.realised + self.unrealised

    @property
    def realised_usd(self) -> Decimal:
        """Realised P&L in USD."""
        return self.realised * self.quote_usd_rate

    @property
    def unrealised_usd(self) -> Decimal:
        """Unrealised P&L in USD."""
        return self.unrealised * self.quote_usd_rate

    @property
    def total_usd(self) -> Decimal:
        """Total P&L in USD."""
        return self.total * self.quote_usd_rate


def holding_pnl(
    holding: Holding,
    mark: Decimal,
    quote_usd_rate: Decimal = Decimal(1),
    exit_fee_rate: Decimal = ZERO,
) -> PnL:
    """Exact P&L of `holding` at `mark`; `exit_fee_rate` (e.g. 0.001) deducts the fee a close
    at `mark` would cost, for a conservative view (0 keeps the exact cash identity)."""
    _check_rate(mark, f"{holding.position.symbol} mark price")
    _check_rate(quote_usd_rate, "quote->USD rate")
    exit_fee = holding.position.quantity * mark * exit_fee_rate
    return PnL(
        realised=holding.position.realized_pnl,
        unrealised=holding.unrealised(mark) - exit_fee,
        fees=holding.position.fees,
        quote_usd_rate=quote_usd_rate,
    )


def total_pnl(
    holdings: Iterable[Holding],
    marks: Mapping[str, Decimal],
    quote_usd_rates: Mapping[str, Decimal] | None = None,
) -> PnL:
    """Summed P&L in USD of several holdings (marks by symbol, USD rates by symbol, default 1).

    The result's quote fields are USD (its rate is 1) because the holdings may have different
    quote currencies.
    """
    realised = unrealised = fees = ZERO
    for holding in holdings:
        symbol = holding.position.symbol
        rate = (quote_usd_rates or {}).get(symbol, Decimal(1))
        if holding.position.quantity == 0:
            pnl = PnL(holding.position.realized_pnl, ZERO, holding.position.fees, rate)
        else:
            if symbol not in marks:
                raise DataError(f"no mark price for open position {symbol}")
            pnl = holding_pnl(holding, marks[symbol], rate)
        realised += pnl.realised_usd
        unrealised += pnl.unrealised_usd
        fees += pnl.fees * rate
    return PnL(realised=realised, unrealised=unrealised, fees=fees, quote_usd_rate=Decimal(1))


def return_pct(holding: Holding, mark: Decimal) -> Decimal:
    """Unrealised return of the open quantity in percent of its cost (fees included)."""
    if holding.cost == 0:
        return ZERO
    return holding.unrealised(mark) / abs(holding.cost) * HUNDRED


def pnl_by_key(
    holdings: Mapping[PositionKey, Holding], marks: Mapping[str, Decimal]
) -> dict[PositionKey, PnL]:
    """P&L of every holding in quote currency (closed ones have no unrealised part)."""
    out: dict[PositionKey, PnL] = {}
    for key, holding in holdings.items():
        if holding.position.quantity == 0:
            out[key] = PnL(holding.position.realized_pnl, ZERO, holding.position.fees, Decimal(1))
        else:
            if key.symbol not in marks:
                raise DataError(f"no mark price for open position {key.symbol}")
            out[key] = holding_pnl(holding, marks[key.symbol])
    return out
