"""RiskManager checks and sizing, slippage protection, and the kill switch's pure part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.config import RiskSettings
from tradelib.domain import (
    Balance,
    ClientOrderId,
    Market,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    SignalKind,
    StrategyId,
    TimeInForce,
)
from tradelib.errors import BreakerTripped, DataError, KillSwitchEngaged, RiskRejected
from tradelib.position import (
    ExitRules,
    PortfolioSnapshot,
    build_snapshot,
    evaluate_exits,
    roll_day,
)
from tradelib.position import with_exit_levels as levels
from tradelib.risk import (
    Breaker,
    BreakerState,
    KillActionKind,
    KillSwitchState,
    OrderIntent,
    ReferencePrice,
    RejectCause,
    RiskAction,
    RiskDecision,
    RiskManager,
    SizingLimits,
    SlippageAction,
    Trip,
    average_price,
    engage,
    exit_intent,
    kill_plan,
    max_quantity_within,
    price_band,
    protect,
    release,
    size_position,
)

NOW = datetime(2026, 4, 1, 14, tzinfo=UTC)
D = Decimal
S = StrategyId("unlock")
RISK = RiskSettings()
ARB = Market("ARB/USDT", "ARB", "USDT", D("0.0001"), D("0.1"), D("0.1"), None, D(5))
FRESH = ReferencePrice(D(1), NOW - timedelta(seconds=3))
CLEAR = BreakerState()
OFF = KillSwitchState()


def snapshot(
    usdt: str = "10000", positions: list[Position] | None = None, other: str = "0"
) -> PortfolioSnapshot:
    balances = [Balance("binance", "USDT", D(usdt))]
    held = sum((p.quantity for p in positions or []), D(0))
    if held:
        balances.append(Balance("binance", "ARB", held))
    if D(other):
        balances.append(Balance("binance", "BTC", D(other)))
    prices = {"ARB": D(1), "BTC": D(1)}
    day = roll_day(None, NOW, D(0), D(0))
    return build_snapshot(positions or [], balances, {"ARB/USDT": D(1)}, prices, day, D(0), NOW)


def entry(
    quantity: Decimal | None = None,
    notional: Decimal | None = None,
    risk_pct: Decimal | None = None,
    stop_price: Decimal | None = None,
) -> OrderIntent:
    return OrderIntent(
        S,
        "ARB/USDT",
        Side.BUY,
        SignalKind.ENTRY,
        quantity=quantity,
        notional=notional,
        risk_pct=risk_pct,
        stop_price=stop_price,
    )


def check(
    intent: OrderIntent,
    snap: PortfolioSnapshot,
    manager: RiskManager | None = None,
    reference: ReferencePrice = FRESH,
    breakers: BreakerState = CLEAR,
    kill: KillSwitchState = OFF,
    expected: Decimal | None = None,
) -> RiskDecision:
    manager = manager or RiskManager(RISK, Mode.PAPER, D(500))
    return manager.check(intent, snap, ARB, NOW, reference, breakers, kill, expected)


def test_within_limits_is_approved_with_its_numbers() -> None:
    decision = check(entry(quantity=D(1000)), snapshot())
    assert decision.action is RiskAction.APPROVE and decision.quantity == D(1000)
    assert "10.00% of 10000.00 USD" in decision.reasons[-1]


def test_max_position_resizes_down_to_twenty_percent() -> None:
    decision = check(entry(notional=D(5000)), snapshot())
    assert decision.action is RiskAction.RESIZE and decision.quantity == D(2000)
    assert any("max position 20% of 10000.00 USD" in r for r in decision.reasons)


def test_live_mode_limits_use_the_live_capital_cap() -> None:
    live = RiskManager(RISK, Mode.LIVE, D(500))
    decision = check(entry(notional=D(5000)), snapshot(), manager=live)
    assert decision.quantity == D(100)  # 20% of 500, not of 10,000
    assert any("live capital cap" in r for r in decision.reasons)


def test_heat_resizes_with_a_wide_stop() -> None:
    decision = check(entry(notional=D(2000), stop_price=D("0.5")), snapshot())
    # Heat allows ~6,000 units at 0.5 of risk each; the requested 2,000 fit.
    assert decision.action is RiskAction.APPROVE
    assert decision.quantity == D(2000)
    others = [
        levels(
            Position(StrategyId(f"s{i}"), "binance", "ARB/USDT", Side.BUY, D(2000), D(1), NOW),
            ExitRules(),
            stop_price=D("0.4"),
        )
        for i in range(2)
    ]
    hot = snapshot("6000", positions=others)
    assert hot.heat_usd == D(2400) and hot.equity_usd == D(10000)
    wide = check(entry(notional=D(2000), stop_price=D("0.5")), hot)
    # (3,000 - 2,400) / (0.5 + 30% of the 0.001 fee per unit) = 1,199.28 -> step 0.1.
    assert wide.action is RiskAction.RESIZE and wide.quantity == D("1199.2")
    assert any("portfolio heat 30% of 10000.00 USD = 3000.00" in r for r in wide.reasons)


def test_stablecoin_reserve_resizes() -> None:
    # 1,000 USDT of 5,000 equity: nothing may be spent without going below 20%.
    decision = check(entry(notional=D(500)), snapshot("1000", other="4000"))
    assert decision.action is RiskAction.REJECT
    assert any("stablecoin reserve 20%" in r for r in decision.reasons)
    smaller = check(entry(notional=D(500)), snapshot("1300", other="3700"))
    assert smaller.action is RiskAction.RESIZE and D(290) <= smaller.quantity < D(300)


def test_below_fifty_dollars_is_rejected_after_resizing() -> None:
    decision = check(entry(notional=D(5000)), snapshot("240"))
    assert decision.action is RiskAction.REJECT
    assert any("below the minimum position 50" in r for r in decision.reasons)


def test_minimum_balance_rejects_entries() -> None:
    decision = check(entry(notional=D(50)), snapshot("99"))
    assert decision.action is RiskAction.REJECT
    assert "below the minimum balance 100" in decision.reasons[0]


def test_max_open_positions() -> None:
    others = [
        Position(StrategyId(f"s{i}"), "binance", "ARB/USDT", Side.BUY, D(10), D(1), NOW)
        for i in range(5)
    ]
    decision = check(entry(notional=D(100)), snapshot(positions=others))
    assert decision.action is RiskAction.REJECT
    assert "5 positions open, the maximum is 5" in decision.reasons[0]


def test_market_step_and_minimums() -> None:
    decision = check(entry(quantity=D("123.456")), snapshot())
    assert decision.quantity == D("123.4") and decision.action is RiskAction.RESIZE
    tiny = check(entry(quantity=D("0.05")), snapshot())
    assert tiny.action is RiskAction.REJECT and any("market minimum" in r for r in tiny.reasons)
    inactive = RiskManager(RISK, Mode.PAPER, D(500)).check(
        entry(quantity=D(100)),
        snapshot(),
        Market("ARB/USDT", "ARB", "USDT", D("0.0001"), D("0.1"), active=False),
        NOW,
        FRESH,
        CLEAR,
        OFF,
    )
    assert inactive.cause is RejectCause.MARKET


def test_risk_pct_sizing_from_the_stop() -> None:
    decision = check(entry(risk_pct=D(1), stop_price=D("0.98")), snapshot())
    # 1% of 10,000 = 100 USD at 0.02 per unit = 5,000 units, capped to 2,000 by max position.
    assert decision.quantity == D(2000) and decision.requested_quantity == D(5000)


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        (ReferencePrice(D(1), NOW - timedelta(seconds=121)), "121s old"),
        (ReferencePrice(D("NaN"), NOW), "not a positive number"),
        (ReferencePrice(D(0), NOW), "not a positive number"),
        (ReferencePrice(D(1), NOW + timedelta(hours=1)), "stamped 3600s in the future"),
    ],
)
def test_stale_or_broken_prices_reject_entries(reference: ReferencePrice, why: str) -> None:
    decision = check(entry(quantity=D(100)), snapshot(), reference=reference)
    assert decision.cause is RejectCause.STALE_DATA and why in decision.reasons[0]


def test_a_reference_price_a_little_ahead_of_the_clock_is_still_fresh() -> None:
    decision = check(entry(quantity=D(100)), snapshot(), reference=ReferencePrice(D(1), NOW))
    ahead = ReferencePrice(D(1), NOW + timedelta(seconds=4))  # within MAX_CLOCK_SKEW
    assert check(entry(quantity=D(100)), snapshot(), reference=ahead) == decision


def test_kill_switch_and_breakers_reject_entries_and_raise_the_right_error() -> None:
    kill = engage(OFF, "ops", "exchange incident", NOW).state
    decision = check(entry(quantity=D(100)), snapshot(), kill=kill)
    assert decision.cause is RejectCause.KILL_SWITCH
    with pytest.raises(KillSwitchEngaged, match="exchange incident"):
        decision.raise_if_rejected()
    tripped = BreakerState(trips=(Trip(Breaker.DRAWDOWN, NOW, "equity 10.5% below peak"),))
    decision = check(entry(quantity=D(100)), snapshot(), breakers=tripped)
    with pytest.raises(BreakerTripped, match=r"10\.5% below peak"):
        decision.raise_if_rejected()


def test_slippage_beyond_the_bound_rejects_an_entry() -> None:
    decision = check(entry(quantity=D(100)), snapshot(), expected=D("1.006"))
    assert decision.action is RiskAction.REJECT and "0.600% worse" in decision.reasons[0]
    ok = check(entry(quantity=D(100)), snapshot(), expected=D("1.005"))
    assert ok.approved


def test_exits_are_capped_at_the_position_and_need_one() -> None:
    held = levels(Position(S, "binance", "ARB/USDT", Side.BUY, D(300), D(1), NOW), ExitRules())
    snap = snapshot(positions=[held])
    exit_all = OrderIntent(S, "ARB/USDT", Side.SELL, SignalKind.EXIT)
    decision = check(exit_all, snap)
    assert decision.quantity == D(300) and decision.limit_price == D("0.995")
    too_much = OrderIntent(S, "ARB/USDT", Side.SELL, SignalKind.EXIT, quantity=D(500))
    decision = check(too_much, snap)
    assert decision.action is RiskAction.RESIZE and decision.quantity == D(300)
    wrong_side = OrderIntent(S, "ARB/USDT", Side.BUY, SignalKind.EXIT)
    assert check(wrong_side, snap).cause is RejectCause.POSITION
    with pytest.raises(RiskRejected, match="no open ARB/USDT position"):
        check(exit_all, snapshot()).raise_if_rejected()
    # Entering the other way while a long is open is refused: exit first.
    short = OrderIntent(S, "ARB/USDT", Side.SELL, SignalKind.ENTRY, quantity=D(100))
    assert check(short, snap).cause is RejectCause.POSITION


ENGAGED = KillSwitchState(engaged=True, since=NOW, by="ops", reason="incident")
LONG = levels(Position(S, "binance", "ARB/USDT", Side.BUY, D(300), D(1), NOW), ExitRules())


def test_an_entry_decision_carries_its_tick_rounded_ioc_limit() -> None:
    odd = ReferencePrice(D("1.00037"), NOW)
    decision = check(entry(quantity=D(100)), snapshot(), reference=odd)
    # 1.00037 * 1.005 = 1.00537185, rounded down (inside the band) to the 0.0001 tick.
    assert decision.approved and decision.limit_price == D("1.0053")
    assert decision.reasons[-1].endswith("IOC limit 1.0053")
    assert check(entry(quantity=D(100)), snapshot(), kill=ENGAGED).limit_price is None


def exit_check(bids: list[tuple[Decimal, Decimal]] | None, **kw: object) -> RiskDecision:
    manager = RiskManager(RISK, Mode.PAPER, D(500))
    intent = OrderIntent(S, "ARB/USDT", Side.SELL, SignalKind.EXIT, reference_price=D(1))
    return manager.check(
        intent, snapshot(positions=[LONG]), ARB, NOW, FRESH, kw.get("breakers", CLEAR),  # type: ignore[arg-type]
        kw.get("kill", OFF), book=bids,  # type: ignore[arg-type]
    )  # fmt: skip


def test_an_exit_is_held_to_the_band_against_the_book_it_would_take() -> None:
    deep = [(D("0.9999"), D(500))]
    ok = exit_check(deep)
    assert ok.action is RiskAction.APPROVE and ok.quantity == D(300)
    assert ok.limit_price == D("0.995") and any("within 0.5%" in r for r in ok.reasons)
    # 100 at the touch, the rest 2 % down: only what keeps the average within 0.5 % may go.
    thin = [(D(1), D(100)), (D("0.98"), D(1000))]
    cut = exit_check(thin)
    assert cut.action is RiskAction.RESIZE and cut.quantity == D("133.3")
    assert cut.limit_price == D("0.995") and any("reduced from 300" in r for r in cut.reasons)
    avg = average_price(thin, cut.quantity)
    assert avg is not None and avg >= D("0.995")
    # Every bid is beyond the band: refused, with the position left to manage.
    gone = exit_check([(D("0.99"), D(1000))])
    assert not gone.approved and gone.cause is RejectCause.SLIPPAGE
    assert "stays open and managed" in gone.reasons[-1]
    with pytest.raises(RiskRejected, match=r"no quantity fills within 0\.5%"):
        gone.raise_if_rejected()
    # Cut below the market minimum: refused the same way, never sent to be rejected.
    dust = exit_check([(D(1), D("4.5")), (D("0.9"), D(1000))])
    assert dust.cause is RejectCause.SLIPPAGE and "below the market minimum" in " ".join(
        dust.reasons
    )
    # No book known: the IOC limit alone bounds the fills; the exit is never held up for it.
    blind = exit_check(None)
    assert blind.approved and blind.quantity == D(300) and blind.limit_price == D("0.995")
    assert any("order book not known" in r for r in blind.reasons)


def test_the_book_limits_an_exit_the_same_under_a_kill_switch_or_breaker() -> None:
    thin = [(D(1), D(100)), (D("0.98"), D(1000))]
    tripped = BreakerState(trips=(Trip(Breaker.DAILY_LOSS, NOW, "-6%"),))
    blocked = exit_check(thin, kill=ENGAGED, breakers=tripped)
    clean = exit_check(thin)
    assert (blocked.action, blocked.quantity, blocked.limit_price) == (
        clean.action,
        clean.quantity,
        clean.limit_price,
    )


def test_a_triggered_stop_becomes_an_approved_exit_even_when_halted() -> None:
    held = levels(Position(S, "binance", "ARB/USDT", Side.BUY, D(300), D(1), NOW), ExitRules())
    stop = evaluate_exits(held, D("0.97"), NOW)
    assert stop is not None
    intent = exit_intent(stop)
    assert intent.kind is SignalKind.EXIT and "stop loss" in intent.reason
    kill = engage(OFF, "ops", "halt", NOW, flatten=True).state
    halted = BreakerState(trips=(Trip(Breaker.DAILY_LOSS, NOW, "-5%"),))
    reference = ReferencePrice(D("0.97"), NOW)
    decision = check(
        intent, snapshot(positions=[held]), reference=reference, breakers=halted, kill=kill
    )
    assert decision.approved and decision.quantity == D(300)
    assert any("kill switch engaged: exits still allowed" in r for r in decision.reasons)


def test_short_entries_are_off_unless_enabled() -> None:
    short = OrderIntent(S, "ARB/USDT", Side.SELL, SignalKind.ENTRY, quantity=D(100))
    assert "short entries are disabled" in check(short, snapshot()).reasons[0]
    margin = RiskManager(RISK, Mode.PAPER, D(500), allow_short=True)
    assert check(short, snapshot(), manager=margin).approved


def test_intent_validation() -> None:
    with pytest.raises(DataError, match="exactly one"):
        OrderIntent(S, "ARB/USDT", Side.BUY, SignalKind.ENTRY)
    with pytest.raises(DataError, match="positive"):
        OrderIntent(S, "ARB/USDT", Side.BUY, SignalKind.ENTRY, quantity=D(-1))


def test_size_position() -> None:
    limits = SizingLimits(max_position_pct=D(20), amount_step=D("0.01"), min_amount=D("0.1"))
    assert size_position(D(10000), D(100), D(98), D(1), limits) == D(20)  # 100 / 2 = 50 -> 20
    assert size_position(D(10000), D(100), D(90), D(1), limits) == D(10)
    assert size_position(D(10), D(100), D(90), D(1), limits) == D(0)
    with pytest.raises(DataError):
        size_position(D(10000), D(100), D(100), D(1), limits)


@settings(max_examples=200, deadline=None)
@given(
    equity=st.decimals(min_value=1, max_value=10**7, places=2),
    entry_price=st.decimals(min_value=D("0.01"), max_value=10**5, places=4),
    stop_pct=st.decimals(min_value=D("0.1"), max_value=D(50), places=2),
    risk_pct=st.decimals(min_value=D("0.01"), max_value=D(10), places=2),
)
def test_size_position_never_risks_more_than_asked(
    equity: Decimal, entry_price: Decimal, stop_pct: Decimal, risk_pct: Decimal
) -> None:
    stop = entry_price * (1 - stop_pct / 100)
    qty = size_position(equity, entry_price, stop, risk_pct, SizingLimits(amount_step=D("0.001")))
    assert qty * (entry_price - stop) <= equity * risk_pct / 100
    assert qty * entry_price <= equity * D("0.2")
    assert qty % D("0.001") == 0


BOOK = [(D(100), D(1)), (D("100.2"), D(2)), (D(101), D(5))]


def test_slippage_protect_accepts_reduces_or_refuses() -> None:
    ok = protect(Side.BUY, D(2), D(100), D("100.1"), D("0.5"))
    assert ok.action is SlippageAction.ACCEPT and ok.limit_price == D("100.5")
    cut = protect(Side.BUY, D(8), D(100), average_price(BOOK, D(8)), D("0.5"), BOOK, D("0.01"))
    assert cut.action is SlippageAction.REDUCE and cut.quantity < D(8)
    avg = average_price(BOOK, cut.quantity)
    assert avg is not None and avg <= D("100.5")
    refused = protect(Side.BUY, D(1), D(100), D(102), D("0.5"))
    assert refused.action is SlippageAction.REFUSE and "no book levels" in refused.reasons[1]
    bids = [(D(99), D(3))]
    none = protect(Side.SELL, D(1), D(100), D(99), D("0.5"), bids)
    assert none.action is SlippageAction.REFUSE


def test_price_band_rounds_inside_the_band() -> None:
    assert price_band(Side.BUY, D("1.23456"), D("0.5"), D("0.001")) == D("1.240")
    assert price_band(Side.SELL, D("1.23456"), D("0.5"), D("0.001")) == D("1.229")


levels_st = st.lists(
    st.tuples(
        st.decimals(min_value=D("0.01"), max_value=D(5), places=2),
        st.decimals(min_value=D("0.001"), max_value=D(10), places=3),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(steps=levels_st, side=st.sampled_from([Side.BUY, Side.SELL]))
def test_max_quantity_within_keeps_the_average_inside_the_band(
    steps: list[tuple[Decimal, Decimal]], side: Side
) -> None:
    reference = D(100)
    prices, level_price = [], reference
    for gap, size in steps:  # walk away from the reference, as a real book does
        level_price += gap * side.sign
        prices.append((level_price, size))
    quantity = max_quantity_within(side, prices, reference, D(2), D("0.001"))
    total = sum((s for _, s in prices), D(0))
    assert D(0) <= quantity <= total
    if quantity > 0:
        avg = average_price(prices, quantity)
        assert avg is not None and (avg - reference) * side.sign <= D(2)
    # One more step would break the bound, unless the book is exhausted.
    more = quantity + D("0.002")
    if more <= total:
        avg_more = average_price(prices, more)
        assert avg_more is not None and (avg_more - reference) * side.sign > D(2) - D("1e-20")


def test_kill_switch_engage_and_release_needs_totp() -> None:
    engaged = engage(OFF, "alice", "runaway strategy", NOW, flatten=True)
    assert engaged.accepted and engaged.state.engaged and engaged.state.flatten
    refused = release(engaged.state, "alice", "fixed", NOW, totp_verified=False)
    assert not refused.accepted and refused.state == engaged.state
    assert "TOTP code was not verified" in refused.reason
    released = release(engaged.state, "alice", "fixed", NOW, totp_verified=True)
    assert released.accepted and not released.state.engaged
    again = engage(engaged.state, "bob", "again", NOW + timedelta(minutes=1))
    assert again.state.since == NOW and again.state.by == "alice"
    assert KillSwitchState.from_dict(engaged.state.to_dict()) == engaged.state


def test_kill_plan_cancels_then_flattens_within_the_band() -> None:
    order = Order(
        ClientOrderId("tl-1"),
        "ARB/USDT",
        Side.BUY,
        OrderType.LIMIT,
        D(10),
        NOW,
        D(1),
        status=OrderStatus.OPEN,
    )
    done = Order(
        ClientOrderId("tl-2"),
        "ARB/USDT",
        Side.BUY,
        OrderType.LIMIT,
        D(10),
        NOW,
        D(1),
        status=OrderStatus.FILLED,
    )
    long = Position(S, "binance", "ARB/USDT", Side.BUY, D("10.05"), D(1), NOW)
    short = Position(S, "binance", "OP/USDT", Side.SELL, D(3), D(2), NOW)
    state = engage(OFF, "ops", "halt", NOW, flatten=True).state
    plan = kill_plan(
        state, [order, done], [long, short], {"ARB/USDT": D("1.2")}, D("0.5"), {"ARB/USDT": ARB}
    )
    assert [a.kind for a in plan] == [
        KillActionKind.CANCEL_ORDER,
        KillActionKind.CLOSE_POSITION,
        KillActionKind.CLOSE_POSITION,
    ]
    close_long = plan[1]
    assert close_long.side is Side.SELL and close_long.quantity == D("10.0")
    assert close_long.limit_price == D("1.1940") and close_long.time_in_force is TimeInForce.IOC
    assert "dust" in close_long.reason
    close_short = plan[2]
    assert close_short.side is Side.BUY and close_short.order_type is OrderType.MARKET
    no_flatten = engage(OFF, "ops", "halt", NOW).state
    assert len(kill_plan(no_flatten, [order], [long], {}, D("0.5"))) == 1
    assert kill_plan(OFF, [order], [long], {}, D("0.5")) == []
