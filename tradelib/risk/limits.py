"""Pre-trade checks: every entry passes here, sized and capped; exits always may leave.

Entries are refused while the kill switch is engaged, a breaker is tripped, or the reference
price is stale or unusable; otherwise they are cut down (never up) to the tightest of: max
position share of equity, portfolio heat, stablecoin reserve, free quote balance and the
market's maximum, rounded DOWN to the amount step; then refused if they fall below the minimum
position, the market minimums, or would leave less than the minimum balance.

In live mode every equity-based limit uses min(equity, live_capital_usd), whatever the
account holds. The stablecoin reserve and the minimum balance are about the whole account, so
they use its real equity and balances.

Exits reduce risk and are never blocked by the kill switch, breakers or stale data; they are
only capped so they cannot open a new exposure (an exit never exceeds the position), and, when
the book is known, cut to what it fills within the slippage bound or refused when nothing does
(the position stays open and managed; the next cycle tries again).

Every approved decision carries the IOC limit price of its order: the slippage band around the
reference price, rounded inside the band on the market's tick (`slippage.price_band`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tradelib.config import RiskSettings
from tradelib.domain import (
    ZERO,
    Market,
    Mode,
    Side,
    SignalKind,
    require_utc,
    round_down,
    stamped_in_future,
)
from tradelib.errors import DataError
from tradelib.position.exits import default_stop
from tradelib.position.portfolio import DEFAULT_STABLECOINS, PortfolioSnapshot
from tradelib.risk.breakers import BreakerState
from tradelib.risk.intent import (
    OrderIntent,
    ReferencePrice,
    RejectCause,
    RiskAction,
    RiskDecision,
)
from tradelib.risk.killswitch import KillSwitchState
from tradelib.risk.sizing import live_capped
from tradelib.risk.slippage import (
    Level,
    SlippageAction,
    adverse_deviation_pct,
    average_price,
    price_band,
    protect,
)

HUNDRED = Decimal(100)
ONE = Decimal(1)


def _below_minimums(quantity: Decimal, price: Decimal | None, market: Market) -> str | None:
    """Why the exchange would refuse `quantity` (at `price`, when known), or None."""
    if quantity <= 0 or quantity < market.min_amount:
        return (
            f"quantity {quantity} is below the market minimum {market.min_amount} "
            f"(step {market.amount_step})"
        )
    if price is not None and quantity * price < market.min_notional:
        return (
            f"notional {quantity * price:.8f} {market.quote} is below the market minimum "
            f"{market.min_notional}"
        )
    return None


def _usable(price: Decimal | None) -> bool:
    return price is not None and price.is_finite() and price > 0


@dataclass(frozen=True, slots=True)
class _Case:
    """What one `RiskManager.check` looks at, and the two ways it can answer."""

    intent: OrderIntent
    portfolio: PortfolioSnapshot
    market: Market
    now: datetime
    reference: ReferencePrice
    breakers: BreakerState
    killswitch: KillSwitchState

    def reject(
        self,
        cause: RejectCause,
        reasons: list[str],
        requested: Decimal = ZERO,
        price: Decimal | None = None,
    ) -> RiskDecision:
        """Refused: nothing may be sent."""
        return RiskDecision(
            RiskAction.REJECT, self.intent, ZERO, requested, price, self.now, tuple(reasons),
            cause=cause,
        )  # fmt: skip

    def allow(
        self,
        quantity: Decimal,
        requested: Decimal,
        price: Decimal | None,
        reasons: list[str],
        limit_price: Decimal | None,
    ) -> RiskDecision:
        """Approved as asked, or resized to `quantity`, to be sent as an IOC at `limit_price`."""
        action = RiskAction.APPROVE if quantity == requested else RiskAction.RESIZE
        return RiskDecision(
            action, self.intent, quantity, requested, price, self.now, tuple(reasons),
            limit_price=limit_price,
        )  # fmt: skip


class RiskManager:
    """Pre-trade checks under `settings`; stateless, so one instance serves every strategy."""

    def __init__(
        self,
        settings: RiskSettings,
        mode: Mode,
        live_capital_usd: Decimal,
        stablecoins: tuple[str, ...] = DEFAULT_STABLECOINS,
        allow_short: bool = False,
    ) -> None:
        self.settings = settings
        self.mode = mode
        self.live_capital_usd = live_capital_usd
        self.stablecoins = stablecoins
        # Spot accounts cannot sell what they do not hold: short entries only when enabled.
        self.allow_short = allow_short

    def limit_equity(self, portfolio: PortfolioSnapshot) -> Decimal:
        """Equity the limits are computed on: capped at live capital in live mode."""
        return live_capped(self.mode, portfolio.equity_usd, self.live_capital_usd)

    def check(
        self,
        intent: OrderIntent,
        portfolio: PortfolioSnapshot,
        market: Market,
        now: datetime,
        reference_price: ReferencePrice,
        breakers_state: BreakerState,
        killswitch_state: KillSwitchState,
        expected_fill_price: Decimal | None = None,
        book: Sequence[Level] | None = None,
    ) -> RiskDecision:
        """Approve, resize or reject `intent`, with every reason and the numbers behind it.

        `book` is the side of the order book the order would take from (bids for a sell, asks
        for a buy), best first; exits are held to the slippage bound against it. None means
        the book is not known: the IOC limit still bounds every fill.
        """
        now = require_utc(now, "risk check time")
        if intent.symbol != market.symbol:
            raise DataError(f"intent for {intent.symbol} checked against market {market.symbol}")
        case = _Case(
            intent, portfolio, market, now, reference_price, breakers_state, killswitch_state
        )
        if intent.kind is SignalKind.EXIT:
            return self._check_exit(case, book)
        return self._check_entry(case, expected_fill_price)

    def _check_exit(self, case: _Case, book: Sequence[Level] | None) -> RiskDecision:
        intent, market, now, reference = case.intent, case.market, case.now, case.reference
        breakers, killswitch = case.breakers, case.killswitch
        reasons: list[str] = []
        if killswitch.engaged:
            reasons.append("kill switch engaged: exits still allowed, they reduce risk")
        if breakers.any_tripped:
            names = ", ".join(b.value for b in breakers.tripped)
            reasons.append(f"breakers tripped ({names}): exits still allowed")
        view = case.portfolio.position(intent.strategy_id, intent.exchange, intent.symbol)
        if view is None or view.quantity <= 0:
            reasons.append(
                f"no open {intent.symbol} position of {intent.strategy_id} on "
                f"{intent.exchange}: an exit would open a new exposure"
            )
            return case.reject(RejectCause.POSITION, reasons)
        if intent.side is view.side:
            reasons.append(
                f"exit side {intent.side.value} would add to the {view.side.value} position "
                f"of {view.quantity}"
            )
            return case.reject(RejectCause.POSITION, reasons)
        price = reference.price if _usable(reference.price) else None
        if intent.quantity is not None:
            requested = intent.quantity
        elif intent.notional is not None:
            if price is None:
                reasons.append("exit sized by notional needs a usable reference price")
                return case.reject(RejectCause.STALE_DATA, reasons)
            requested = intent.notional / price
        else:
            requested = view.quantity
        quantity = requested
        if quantity > view.quantity:
            quantity = view.quantity
            reasons.append(
                f"exit of {requested} capped at the position's {view.quantity} so it cannot "
                f"open a {intent.side.value} exposure"
            )
        quantity = round_down(quantity, market.amount_step)
        refusal = _below_minimums(quantity, price, market)
        if refusal:
            reasons.append(f"exit {refusal}: the exchange would refuse it")
            return case.reject(RejectCause.MARKET, reasons, requested, price)
        limit_price = None
        if price is None:
            reasons.append(
                f"reference price {reference.price} unusable: no IOC price band, exit at market"
            )
        else:
            age = (now - reference.at).total_seconds()
            if stamped_in_future(reference.at, now):
                reasons.append(
                    f"reference price is stamped {-age:.0f}s in the future: exit allowed, band "
                    "may not fill"
                )
            elif age > self.settings.stale_data_seconds:
                reasons.append(
                    f"reference price is {age:.0f}s old (limit {self.settings.stale_data_seconds}s)"
                    ": exit allowed, band may not fill"
                )
            limit_price = price_band(
                intent.side, price, self.settings.max_slippage_pct, market.price_tick
            )
            if book is None:
                reasons.append("order book not known: the IOC limit alone bounds the fills")
            else:
                guarded = protect(
                    intent.side, quantity, price, average_price(book, quantity),
                    self.settings.max_slippage_pct, book, market.amount_step, market.price_tick,
                )  # fmt: skip
                reasons.extend(guarded.reasons)
                quantity = guarded.quantity
                refusal = _below_minimums(quantity, price, market)
                if guarded.action is SlippageAction.REFUSE or refusal:
                    if guarded.action is not SlippageAction.REFUSE:
                        reasons.append(f"reduced exit {refusal}: refused")
                    reasons.append(
                        f"the {view.side.value} position of {view.quantity} stays open and managed"
                    )
                    return case.reject(RejectCause.SLIPPAGE, reasons, requested, price)
        reasons.append(
            f"exit {intent.side.value} {quantity} {intent.symbol} of a {view.quantity} "
            f"{view.side.value} position"
            + (f", IOC limit {limit_price}" if limit_price is not None else "")
        )
        return case.allow(quantity, requested, price, reasons, limit_price)

    def _check_entry(self, case: _Case, expected: Decimal | None) -> RiskDecision:
        intent, market, now, reference = case.intent, case.market, case.now, case.reference
        breakers, killswitch = case.breakers, case.killswitch
        s = self.settings
        if killswitch.engaged:
            return case.reject(
                RejectCause.KILL_SWITCH,
                [
                    f"kill switch engaged since {killswitch.since} by {killswitch.by}: "
                    f"{killswitch.reason}; no new entries"
                ],
            )
        if breakers.any_tripped:
            reasons = [
                f"{trip.breaker.value} breaker tripped at {trip.at.isoformat()}: {trip.reason}"
                for trip in breakers.trips
            ]
            reasons.append("no new entries until a person resets it")
            return case.reject(RejectCause.BREAKER, reasons)
        if intent.side is Side.SELL and not self.allow_short:
            return case.reject(
                RejectCause.POSITION,
                [f"short entries are disabled (spot): cannot sell {intent.symbol} not held"],
            )
        if not market.active:
            return case.reject(RejectCause.MARKET, [f"{market.symbol} is not trading (inactive)"])
        if not _usable(reference.price) or not _usable(reference.quote_usd_rate):
            return case.reject(
                RejectCause.STALE_DATA,
                [
                    f"reference price {reference.price} (USD rate {reference.quote_usd_rate}) "
                    "is not a positive number"
                ],
            )
        age = (now - reference.at).total_seconds()
        if stamped_in_future(reference.at, now):
            return case.reject(
                RejectCause.STALE_DATA,
                [
                    f"reference price {reference.price} is stamped {-age:.0f}s in the future "
                    f"({reference.at.isoformat()}): the data or the clock is wrong, not fresh"
                ],
            )
        if age > s.stale_data_seconds:
            return case.reject(
                RejectCause.STALE_DATA,
                [
                    f"reference price {reference.price} is {age:.0f}s old "
                    f"(limit {s.stale_data_seconds}s): market data is stale"
                ],
            )
        ref = reference.price
        if expected is not None:
            if not _usable(expected):
                return case.reject(
                    RejectCause.STALE_DATA,
                    [f"expected fill price {expected} is not a positive number"],
                )
            deviation = adverse_deviation_pct(intent.side, ref, expected)
            if deviation > s.max_slippage_pct:
                return case.reject(
                    RejectCause.LIMIT,
                    [
                        f"expected fill {expected} is {deviation:.3f}% worse than reference "
                        f"{ref} (max slippage {s.max_slippage_pct}%)"
                    ],
                )
        return self._size_entry(case, expected)

    def _size_entry(self, case: _Case, expected: Decimal | None) -> RiskDecision:
        intent, portfolio, market = case.intent, case.portfolio, case.market
        s = self.settings
        ref, rate = case.reference.price, case.reference.quote_usd_rate
        # The worse of reference and expected fill: bigger notional, longer way to the stop.
        px = max(ref, expected) if expected is not None else ref
        px_usd = px * rate
        equity = self.limit_equity(portfolio)
        capped = " (live capital cap)" if equity < portfolio.equity_usd else ""
        reasons: list[str] = []
        if equity < s.min_account_balance_usd:
            reasons.append(
                f"equity {equity:.2f} USD{capped} is below the minimum balance "
                f"{s.min_account_balance_usd} USD"
            )
            return case.reject(RejectCause.LIMIT, reasons, price=px)

        view = portfolio.position(intent.strategy_id, intent.exchange, intent.symbol)
        if view is not None and view.side is not intent.side:
            reasons.append(
                f"an open {view.side.value} {intent.symbol} position of {view.quantity} exists: "
                "exit it before entering the other way"
            )
            return case.reject(RejectCause.POSITION, reasons, price=px)
        if view is None and portfolio.open_positions >= s.max_open_positions:
            reasons.append(
                f"{portfolio.open_positions} positions open, the maximum is {s.max_open_positions}"
            )
            return case.reject(RejectCause.LIMIT, reasons, price=px)

        # The stop that will protect this quantity: an add keeps the position's stop.
        if view is not None and view.stop_loss is not None:
            stop, stop_note = view.stop_loss, "the position's stop"
        elif intent.stop_price is not None:
            stop, stop_note = intent.stop_price, "the strategy's stop"
        else:
            stop, stop_note = default_stop(intent.side, px, s.stop_loss_pct), "the default stop"
        if (stop - px) * intent.side.sign >= 0 or (stop - ref) * intent.side.sign >= 0:
            reasons.append(
                f"{stop_note} {stop} is not on the losing side of a {intent.side.value} at {px}"
            )
            return case.reject(RejectCause.LIMIT, reasons, price=px)
        distance_usd = max(abs(ref - stop), abs(px - stop)) * rate

        if intent.quantity is not None:
            requested = intent.quantity
        elif intent.notional is not None:
            requested = intent.notional / px
        else:
            assert intent.risk_pct is not None  # guaranteed by OrderIntent
            requested = equity * intent.risk_pct / HUNDRED / distance_usd

        caps: list[tuple[Decimal, str]] = []
        existing_usd = view.notional_usd if view is not None else ZERO
        max_usd = equity * s.max_position_pct / HUNDRED
        caps.append(
            (
                (max_usd - existing_usd) / px_usd,
                f"max position {s.max_position_pct}% of {equity:.2f} USD equity{capped} = "
                f"{max_usd:.2f} USD, {existing_usd:.2f} already held",
            )
        )
        heat_frac = s.max_portfolio_heat_pct / HUNDRED
        heat_max = equity * heat_frac
        fee = market.taker_fee
        # The entry fee lowers equity, so heat is held within the limit of equity after it.
        caps.append(
            (
                (heat_max - portfolio.heat_usd) / (distance_usd + heat_frac * px_usd * fee),
                f"portfolio heat {s.max_portfolio_heat_pct}% of {equity:.2f} USD = "
                f"{heat_max:.2f} USD at risk, {portfolio.heat_usd:.2f} already at risk, "
                f"{distance_usd:.8f} USD per unit to {stop_note} {stop}",
            )
        )
        quote = market.quote
        if intent.side is Side.BUY and quote in self.stablecoins:
            r = s.stablecoin_reserve_pct / HUNDRED
            caps.append(
                (
                    (portfolio.stablecoin_usd - r * portfolio.equity_usd)
                    / (px_usd * (ONE + fee - r * fee)),
                    f"stablecoin reserve {s.stablecoin_reserve_pct}%: "
                    f"{portfolio.stablecoin_usd:.2f} of {portfolio.equity_usd:.2f} USD in "
                    "stablecoins",
                )
            )
        if intent.side is Side.BUY:
            free = portfolio.free(quote)
            caps.append((free / (px * (ONE + fee)), f"free {quote} balance {free}"))
        if market.max_amount is not None:
            caps.append((market.max_amount, f"market maximum amount {market.max_amount}"))

        quantity = requested
        for cap, why in caps:
            if cap < quantity:
                quantity = max(cap, ZERO)
                reasons.append(f"{why}: at most {quantity:.8f} {market.base}")
        rounded = round_down(quantity, market.amount_step)
        if rounded != quantity:
            reasons.append(f"rounded down to the amount step {market.amount_step}: {rounded}")
        quantity = rounded

        notional_usd = quantity * px_usd
        refusals: list[str] = []
        if quantity <= 0:
            refusals.append("no quantity left within the limits")
        if notional_usd < s.min_position_usd:
            refusals.append(
                f"order value {notional_usd:.2f} USD is below the minimum position "
                f"{s.min_position_usd} USD"
            )
        if quantity < market.min_amount:
            refusals.append(f"quantity {quantity} is below the market minimum {market.min_amount}")
        if quantity * px < market.min_notional:
            refusals.append(
                f"notional {quantity * px:.8f} {quote} is below the market minimum "
                f"{market.min_notional}"
            )
        fee_usd = notional_usd * fee
        if portfolio.equity_usd - fee_usd < s.min_account_balance_usd:
            refusals.append(
                f"equity after fees {portfolio.equity_usd - fee_usd:.2f} USD would be below the "
                f"minimum balance {s.min_account_balance_usd} USD"
            )
        if intent.side is Side.BUY:
            free_after = (portfolio.free(quote) - quantity * px * (ONE + fee)) * rate
            if free_after < s.min_account_balance_usd:
                refusals.append(
                    f"free {quote} after the order {free_after:.2f} USD would be below the "
                    f"minimum balance {s.min_account_balance_usd} USD"
                )
        if refusals:
            return case.reject(RejectCause.LIMIT, reasons + refusals, requested, price=px)

        heat_after = portfolio.heat_usd + quantity * distance_usd
        limit_price = price_band(intent.side, ref, s.max_slippage_pct, market.price_tick)
        reasons.append(
            f"{intent.side.value} {quantity} {intent.symbol} at ~{px} = {notional_usd:.2f} USD "
            f"({(existing_usd + notional_usd) / equity * HUNDRED:.2f}% of {equity:.2f} USD, "
            f"max {s.max_position_pct}%); heat after {heat_after / equity * HUNDRED:.2f}% "
            f"(max {s.max_portfolio_heat_pct}%); stop {stop}; IOC limit {limit_price}"
        )
        return case.allow(quantity, requested, px, reasons, limit_price)
