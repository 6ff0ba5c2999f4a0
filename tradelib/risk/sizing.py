"""Position sizing and the equity every limit is computed on: pure arithmetic.

In live mode limits use min(equity, live_capital_usd), whatever the account holds, so the first
live money is capped however large the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradelib.config import RiskSettings, Settings
from tradelib.domain import ZERO, Market, Mode, round_down
from tradelib.errors import DataError

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class SizingLimits:
    """Caps applied by `size_position`: share of equity and the market's amount rules."""

    max_position_pct: Decimal = Decimal(20)
    amount_step: Decimal | None = None
    min_amount: Decimal = ZERO
    max_amount: Decimal | None = None

    @classmethod
    def for_market(cls, market: Market, settings: RiskSettings) -> SizingLimits:
        """Limits of `market` under `settings`."""
        return cls(
            max_position_pct=settings.max_position_pct,
            amount_step=market.amount_step,
            min_amount=market.min_amount,
            max_amount=market.max_amount,
        )


def size_position(
    equity: Decimal,
    entry: Decimal,
    stop: Decimal,
    risk_per_trade_pct: Decimal,
    limits: SizingLimits,
) -> Decimal:
    """Quantity losing `risk_per_trade_pct` of `equity` if the stop is hit, within `limits`.

    Capped at `max_position_pct` of equity, rounded down to the step, 0 below the minimum.
    Equity, entry and stop must share a currency (convert before calling).
    """
    for value, what in ((equity, "equity"), (entry, "entry"), (stop, "stop")):
        if not value.is_finite() or value <= 0:
            raise DataError(f"size_position: {what} must be a positive number, got {value}")
    distance = abs(entry - stop)
    if distance == 0:
        raise DataError(f"size_position: stop {stop} equals entry {entry}")
    quantity = equity * risk_per_trade_pct / HUNDRED / distance
    quantity = min(quantity, equity * limits.max_position_pct / HUNDRED / entry)
    if limits.max_amount is not None:
        quantity = min(quantity, limits.max_amount)
    quantity = round_down(quantity, limits.amount_step)
    return quantity if quantity >= limits.min_amount and quantity > 0 else ZERO


def live_capped(mode: Mode, equity: Decimal, live_capital_usd: Decimal) -> Decimal:
    """`equity`, capped at `live_capital_usd` in live mode: what every limit is computed on."""
    return min(equity, live_capital_usd) if mode is Mode.LIVE else equity


def capital_base(mode: Mode, equity: Decimal, settings: Settings) -> Decimal:
    """Equity the limits use: min(equity, live_capital_usd) in live mode, equity in paper.

    The same rule as `RiskManager.limit_equity`, for callers that hold a number rather than a
    `PortfolioSnapshot` (dashboard, engine sizing, reports).
    """
    return live_capped(mode, equity, settings.live_capital_usd)
