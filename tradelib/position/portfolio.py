"""Portfolio metrics as one frozen snapshot: equity, exposure, heat, drawdown, daily P&L.

Equity is what the account owns: every balance valued in USD (a spot position is already in
the balances as its base asset). Positions add what balances cannot say: exposure, risk to
the stops (heat) and unrealised P&L. Percentages are 0-100 like the settings.

The daily P&L counter rolls at the UTC day boundary: `DayMark` keeps the day, the equity and
unrealised P&L at its start and the P&L realised since, and `roll_day` starts a new one on the
first call of a new UTC day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from tradelib.domain import ZERO, Balance, Position, Side, require_utc, split_symbol
from tradelib.errors import DataError

HUNDRED = Decimal(100)
ONE = Decimal(1)
DEFAULT_STABLECOINS = ("USDT", "USDC", "FDUSD", "DAI", "USD")


def pct(part: Decimal, whole: Decimal) -> Decimal:
    """`part` as a percentage of `whole`; Infinity when `whole` <= 0 and `part` > 0."""
    if whole <= 0:
        return ZERO if part <= 0 else Decimal("Infinity")
    return part / whole * HUNDRED


@dataclass(frozen=True, slots=True)
class DayMark:
    """The UTC trading day: equity and unrealised P&L at its start, P&L realised since."""

    day: date
    start_equity: Decimal
    start_unrealised: Decimal
    realised: Decimal = ZERO


def roll_day(mark: DayMark | None, now: datetime, equity: Decimal, unrealised: Decimal) -> DayMark:
    """`mark` if `now` is still its UTC day, otherwise a new day starting at these values."""
    today = require_utc(now, "day roll time").date()
    if mark is not None and mark.day == today:
        return mark
    if mark is not None and mark.day > today:
        raise DataError(f"day mark {mark.day} is after now ({today}): clock went backwards")
    return DayMark(day=today, start_equity=equity, start_unrealised=unrealised)


def add_realised(mark: DayMark, amount: Decimal, at: datetime) -> DayMark:
    """`mark` with `amount` (USD) realised at `at`, which must fall on the mark's UTC day."""
    day = require_utc(at, "realised time").date()
    if day != mark.day:
        raise DataError(f"P&L realised on {day} cannot be added to day {mark.day}: roll first")
    return replace(mark, realised=mark.realised + amount)


@dataclass(frozen=True, slots=True)
class PositionView:
    """One open position valued at its mark, in USD."""

    strategy_id: str
    exchange: str
    symbol: str
    side: Side
    quantity: Decimal
    average_entry: Decimal
    mark: Decimal
    stop_loss: Decimal | None
    quote_usd_rate: Decimal
    notional_usd: Decimal
    risk_usd: Decimal
    unrealised_usd: Decimal


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """Everything the risk manager and the dashboard need to know about the account now."""

    at: datetime
    quote_currency: str
    equity_usd: Decimal
    cash_usd: Decimal
    stablecoin_usd: Decimal
    stablecoin_share_pct: Decimal
    gross_exposure_usd: Decimal
    net_exposure_usd: Decimal
    heat_usd: Decimal
    heat_pct: Decimal
    peak_equity_usd: Decimal
    drawdown_pct: Decimal
    unrealised_usd: Decimal
    realised_today_usd: Decimal
    daily_pnl_usd: Decimal
    daily_pnl_pct: Decimal
    day: DayMark
    positions: tuple[PositionView, ...]
    free_by_asset: Mapping[str, Decimal] = field(default_factory=dict, hash=False)
    stablecoins: tuple[str, ...] = DEFAULT_STABLECOINS

    @property
    def open_positions(self) -> int:
        """Number of positions with a non-zero quantity."""
        return len(self.positions)

    def free(self, asset: str) -> Decimal:
        """Free (not locked) balance of `asset`."""
        return self.free_by_asset.get(asset, ZERO)

    def position(self, strategy_id: str, exchange: str, symbol: str) -> PositionView | None:
        """The open position of (strategy, exchange, symbol), if any."""
        for view in self.positions:
            if (view.strategy_id, view.exchange, view.symbol) == (strategy_id, exchange, symbol):
                return view
        return None


def asset_usd(asset: str, prices_usd: Mapping[str, Decimal], stablecoins: Sequence[str]) -> Decimal:
    """USD price of `asset`; a stablecoin without a quoted price counts as 1 USD."""
    price = prices_usd.get(asset)
    if price is None:
        if asset in stablecoins:
            return ONE
        raise DataError(f"no USD price for {asset}: cannot value it")
    if not price.is_finite() or price <= 0:
        raise DataError(f"USD price of {asset} must be a positive number, got {price}")
    return price


def position_risk(position: Position) -> Decimal:
    """Quote amount lost if the position were stopped at its stop-loss (whole value if none).

    |entry - stop| per unit, as the seed defines heat; a position without a stop could lose
    its whole value, so that is what it counts.
    """
    if position.stop_loss is None:
        return position.quantity * position.average_entry
    return position.quantity * abs(position.average_entry - position.stop_loss)


def build_snapshot(
    positions: Sequence[Position],
    balances: Sequence[Balance],
    marks: Mapping[str, Decimal],
    prices_usd: Mapping[str, Decimal],
    day: DayMark,
    peak_equity_usd: Decimal,
    now: datetime,
    quote_currency: str = "USDT",
    stablecoins: Sequence[str] = DEFAULT_STABLECOINS,
) -> PortfolioSnapshot:
    """Value the account: balances by asset, open positions at `marks` (by symbol, in quote).

    `prices_usd` gives USD per unit of every non-stable asset held or quoted; `day` must be
    the current UTC day (use `roll_day` first) and `peak_equity_usd` the highest equity so far.
    """
    now = require_utc(now, "snapshot time")
    if day.day != now.date():
        raise DataError(f"day mark is for {day.day} but now is {now.date()}: roll the day first")
    stables = tuple(stablecoins)
    equity = stable = ZERO
    free: dict[str, Decimal] = {}
    for balance in balances:
        free[balance.asset] = free.get(balance.asset, ZERO) + balance.free
        if balance.total == 0:
            continue
        value = balance.total * asset_usd(balance.asset, prices_usd, stables)
        equity += value
        if balance.asset in stables:
            stable += value

    views: list[PositionView] = []
    gross = net = heat = unrealised = ZERO
    for position in positions:
        if position.quantity == 0:
            continue
        mark = marks.get(position.symbol)
        if mark is None or not mark.is_finite() or mark <= 0:
            raise DataError(f"no usable mark price for open position {position.symbol}: {mark}")
        rate = asset_usd(split_symbol(position.symbol)[1], prices_usd, stables)
        notional = position.quantity * mark * rate
        risk = position_risk(position) * rate
        upnl = (mark - position.average_entry) * position.quantity * position.side.sign * rate
        views.append(
            PositionView(
                strategy_id=position.strategy_id,
                exchange=position.exchange,
                symbol=position.symbol,
                side=position.side,
                quantity=position.quantity,
                average_entry=position.average_entry,
                mark=mark,
                stop_loss=position.stop_loss,
                quote_usd_rate=rate,
                notional_usd=notional,
                risk_usd=risk,
                unrealised_usd=upnl,
            )
        )
        gross += notional
        net += notional * position.side.sign
        heat += risk
        unrealised += upnl

    peak = max(peak_equity_usd, equity)
    daily = day.realised + unrealised - day.start_unrealised
    return PortfolioSnapshot(
        at=now,
        quote_currency=quote_currency,
        equity_usd=equity,
        cash_usd=free.get(quote_currency, ZERO) * asset_usd(quote_currency, prices_usd, stables),
        stablecoin_usd=stable,
        stablecoin_share_pct=pct(stable, equity),
        gross_exposure_usd=gross,
        net_exposure_usd=net,
        heat_usd=heat,
        heat_pct=pct(heat, equity),
        peak_equity_usd=peak,
        drawdown_pct=pct(peak - equity, peak),
        unrealised_usd=unrealised,
        realised_today_usd=day.realised,
        daily_pnl_usd=daily,
        daily_pnl_pct=pct(daily, day.start_equity) if day.start_equity > 0 else ZERO,
        day=day,
        positions=tuple(views),
        free_by_asset=free,
        stablecoins=stables,
    )
