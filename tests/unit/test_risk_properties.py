"""Properties: entries through RiskManager.check never breach a limit; exits are never blocked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tradelib.config import RiskSettings
from tradelib.domain import (
    Balance,
    ClientOrderId,
    Fill,
    Market,
    Mode,
    Side,
    SignalKind,
    StrategyId,
)
from tradelib.position import ExitRules, PortfolioSnapshot, PositionLedger, build_snapshot, roll_day
from tradelib.risk import (
    Breaker,
    BreakerState,
    KillSwitchState,
    OrderIntent,
    ReferencePrice,
    RiskAction,
    RiskManager,
    Trip,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
RISK = RiskSettings()
SYMBOLS = ("ARB/USDT", "OP/USDT", "SOL/USDT", "APT/USDT", "SUI/USDT", "TIA/USDT", "SEI/USDT")
FEE = Decimal("0.001")
TOLERANCE = Decimal("1e-9")  # average entry is shown to 12 places; heat reads it


def market(symbol: str) -> Market:
    base, quote = symbol.split("/")
    return Market(
        symbol=symbol,
        base=base,
        quote=quote,
        price_tick=Decimal("0.0001"),
        amount_step=Decimal("0.001"),
        min_amount=Decimal("0.001"),
        min_notional=Decimal(5),
        taker_fee=FEE,
    )


@dataclass
class Account:
    """A spot account: USDT cash, plus the ledger's positions as base balances."""

    cash: Decimal
    prices: dict[str, Decimal]
    ledger: PositionLedger = field(
        default_factory=lambda: PositionLedger(exit_rules=ExitRules.from_settings(RISK))
    )
    trades: int = 0

    def snapshot(self) -> PortfolioSnapshot:
        positions = self.ledger.open_positions()
        held: dict[str, Decimal] = {}
        for p in positions:
            held[p.symbol.split("/")[0]] = held.get(p.symbol.split("/")[0], Decimal(0)) + (
                p.quantity
            )
        balances = [Balance("binance", "USDT", self.cash)] + [
            Balance("binance", asset, qty) for asset, qty in held.items()
        ]
        usd = {s.split("/")[0]: price for s, price in self.prices.items()}
        equity = self.cash + sum((q * usd[a] for a, q in held.items()), Decimal(0))
        day = roll_day(None, NOW, equity, Decimal(0))
        return build_snapshot(positions, balances, self.prices, usd, day, equity, NOW)

    def fill(self, symbol: str, side: Side, quantity: Decimal, stop: Decimal | None) -> None:
        price = self.prices[symbol]
        fee = (quantity * price * FEE).quantize(Decimal("1e-8"))
        self.trades += 1
        fill = Fill(
            trade_id=f"t{self.trades}",
            client_order_id=ClientOrderId(f"o{self.trades}"),
            symbol=symbol,
            side=side,
            quantity=quantity,
            price=price,
            fee=fee,
            fee_currency="USDT",
            timestamp=NOW,
        )
        result = self.ledger.apply(fill, StrategyId("s"), "binance", stop_price=stop)
        self.cash += result.cash_delta


prices_st = st.decimals(min_value=Decimal("0.5"), max_value=Decimal(2000), places=4)
# Order sizes over four orders of magnitude, so both tiny and limit-busting orders occur.
size_st = st.builds(
    lambda mantissa, scale: mantissa * scale,
    st.decimals(min_value=Decimal(1), max_value=Decimal(10), places=2),
    st.sampled_from([Decimal(100), Decimal(1000), Decimal(10_000), Decimal(100_000)]),
)
# Stops from tight to very wide, so the heat limit binds before the position limit.
stop_st = st.sampled_from(
    [None, Decimal(1), Decimal(2), Decimal(5), Decimal(25), Decimal(50), Decimal(75), Decimal(95)]
)
entry_st = st.tuples(
    st.just("entry"),
    st.integers(0, len(SYMBOLS) - 1),
    st.sampled_from(["quantity", "notional", "risk_pct"]),
    size_st,
    stop_st,
)
action_st = st.one_of(
    entry_st,
    entry_st,
    entry_st,
    st.tuples(
        st.just("exit"),
        st.integers(0, len(SYMBOLS) - 1),
        st.decimals(min_value=Decimal("0.1"), max_value=Decimal("1.5"), places=2),
    ),
    st.tuples(
        st.just("move"),
        st.integers(0, len(SYMBOLS) - 1),
        st.decimals(min_value=Decimal("0.85"), max_value=Decimal("1.15"), places=3),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    cash=st.one_of(
        st.decimals(min_value=Decimal(50), max_value=Decimal(1000), places=2),
        st.decimals(min_value=Decimal(1000), max_value=Decimal(100_000), places=2),
    ),
    start_prices=st.lists(prices_st, min_size=len(SYMBOLS), max_size=len(SYMBOLS)),
    actions=st.lists(action_st, min_size=10, max_size=40),
    live=st.booleans(),
    live_capital=st.decimals(min_value=Decimal(100), max_value=Decimal(20_000), places=0),
)
def test_entries_through_check_never_breach_limits(
    cash: Decimal,
    start_prices: list[Decimal],
    actions: list[tuple],
    live: bool,
    live_capital: Decimal,
) -> None:
    account = Account(cash=cash, prices=dict(zip(SYMBOLS, start_prices, strict=True)))
    manager = RiskManager(RISK, Mode.LIVE if live else Mode.PAPER, live_capital)
    for action in actions:
        kind, index = action[0], action[1]
        symbol = SYMBOLS[index]
        held = sorted(p.symbol for p in account.ledger.open_positions())
        if kind == "exit" and held and index % 3:
            symbol = held[index % len(held)]  # mostly exit what is held, sometimes not
        price = account.prices[symbol]
        if kind == "move":
            account.prices[symbol] = (price * action[2]).quantize(Decimal("0.0001"))
            continue
        before = account.snapshot()
        reference = ReferencePrice(price, NOW - timedelta(seconds=5))
        if kind == "entry":
            size_kind, size, stop_pct = action[2], action[3], action[4]
            stop = None if stop_pct is None else price * (1 - stop_pct / 100)
            # One generated value in USD, read as a quantity, a notional or a risk percent.
            sized = {
                "quantity": max((size / price).quantize(Decimal("0.001")), Decimal("0.001")),
                "notional": size,
                "risk_pct": size / 10_000,
            }
            intent = OrderIntent(
                strategy_id=StrategyId("s"),
                symbol=symbol,
                side=Side.BUY,
                kind=SignalKind.ENTRY,
                stop_price=stop,
                **{size_kind: sized[size_kind]},
            )
        else:
            view = before.position("s", "binance", symbol)
            quantity = (view.quantity * action[2]).quantize(Decimal("0.001")) if view else None
            intent = OrderIntent(
                strategy_id=StrategyId("s"),
                symbol=symbol,
                side=Side.SELL,
                kind=SignalKind.EXIT,
                quantity=quantity or None,
            )
        decision = manager.check(
            intent, before, market(symbol), NOW, reference, BreakerState(), KillSwitchState()
        )
        if not decision.approved:
            assert decision.action is RiskAction.REJECT
            event(f"{kind} rejected: {decision.cause}")
            assert decision.reasons
            continue
        if kind == "exit":
            view = before.position("s", "binance", symbol)
            assert view is not None and decision.quantity <= view.quantity
            event("exit approved")
            account.fill(symbol, Side.SELL, decision.quantity, None)
            continue
        assert decision.quantity <= decision.requested_quantity
        event(f"entry {decision.action.value}")
        account.fill(symbol, Side.BUY, decision.quantity, intent.stop_price)
        after = account.snapshot()
        capped = min(before.equity_usd, live_capital) if live else before.equity_usd
        position = after.position("s", "binance", symbol)
        assert position is not None
        assert decision.quantity * price >= RISK.min_position_usd
        assert position.quantity * price <= capped * RISK.max_position_pct / 100
        capped_after = min(after.equity_usd, live_capital) if live else after.equity_usd
        assert after.heat_usd <= capped_after * RISK.max_portfolio_heat_pct / 100 + TOLERANCE
        assert after.open_positions <= RISK.max_open_positions
        event(f"open positions after an entry: {after.open_positions}")
        event(f"heat after an entry >= 25%: {after.heat_usd >= capped / 4}")
        event(f"stablecoins after an entry <= 30%: {after.stablecoin_share_pct <= 30}")
        assert after.stablecoin_share_pct >= RISK.stablecoin_reserve_pct
        assert after.equity_usd >= RISK.min_account_balance_usd
        assert account.cash >= RISK.min_account_balance_usd


trips_st = st.lists(st.sampled_from(list(Breaker)), unique=True, max_size=3)


@settings(max_examples=150, deadline=None)
@given(
    quantity=st.one_of(
        st.none(), st.decimals(min_value=Decimal("0.001"), max_value=Decimal(50), places=3)
    ),
    held=st.decimals(min_value=Decimal("0.1"), max_value=Decimal(20), places=3),
    trips=trips_st,
    engaged=st.booleans(),
    flatten=st.booleans(),
    stale_seconds=st.integers(0, 10_000),
)
def test_exits_never_blocked_by_breakers_or_kill_switch(
    quantity: Decimal | None,
    held: Decimal,
    trips: list[Breaker],
    engaged: bool,
    flatten: bool,
    stale_seconds: int,
) -> None:
    account = Account(cash=Decimal(10_000), prices={"ARB/USDT": Decimal(100)})
    account.fill("ARB/USDT", Side.BUY, held, None)
    snap = account.snapshot()
    manager = RiskManager(RISK, Mode.PAPER, Decimal(500))
    intent = OrderIntent(StrategyId("s"), "ARB/USDT", Side.SELL, SignalKind.EXIT, quantity=quantity)
    reference = ReferencePrice(Decimal(100), NOW - timedelta(seconds=stale_seconds))
    blocked = BreakerState(trips=tuple(Trip(b, NOW, "test") for b in trips))
    kill = KillSwitchState(engaged=engaged, since=NOW, by="ops", reason="test", flatten=flatten)
    clean = manager.check(
        intent, snap, market("ARB/USDT"), NOW, reference, BreakerState(), KillSwitchState()
    )
    guarded = manager.check(intent, snap, market("ARB/USDT"), NOW, reference, blocked, kill)
    # Only the market's own minimums may refuse an exit, whatever blocks entries.
    assert guarded.approved == clean.approved
    if quantity is None or quantity * 100 >= 5:
        assert guarded.approved
    assert (guarded.action, guarded.quantity, guarded.limit_price) == (
        clean.action,
        clean.quantity,
        clean.limit_price,
    )
    assert guarded.quantity <= held
    # An entry in the same conditions is refused whenever anything blocks it.
    entry = OrderIntent(
        StrategyId("s"), "ARB/USDT", Side.BUY, SignalKind.ENTRY, quantity=Decimal(1)
    )
    entry_decision = manager.check(entry, snap, market("ARB/USDT"), NOW, reference, blocked, kill)
    if engaged or trips or stale_seconds > RISK.stale_data_seconds:
        assert not entry_decision.approved


@settings(max_examples=100, deadline=None)
@given(
    cash=st.decimals(min_value=Decimal(6000), max_value=Decimal(100_000), places=2),
    order=st.permutations(range(len(SYMBOLS))),
    shares=st.lists(
        st.decimals(min_value=Decimal(1), max_value=Decimal(10), places=1),
        min_size=len(SYMBOLS),
        max_size=len(SYMBOLS),
    ),
)
def test_open_positions_stop_at_the_maximum(
    cash: Decimal, order: list[int], shares: list[Decimal]
) -> None:
    account = Account(cash=cash, prices={s: Decimal(10) for s in SYMBOLS})
    manager = RiskManager(RISK, Mode.PAPER, Decimal(500))
    opened = 0
    for index, share in zip(order, shares, strict=True):
        symbol = SYMBOLS[index]
        intent = OrderIntent(
            StrategyId("s"),
            symbol,
            Side.BUY,
            SignalKind.ENTRY,
            notional=(cash * share / 100).quantize(Decimal("0.01")),
        )
        reference = ReferencePrice(Decimal(10), NOW)
        decision = manager.check(
            intent,
            account.snapshot(),
            market(symbol),
            NOW,
            reference,
            BreakerState(),
            KillSwitchState(),
        )
        if decision.approved:
            opened += 1
            account.fill(symbol, Side.BUY, decision.quantity, None)
        else:
            assert account.snapshot().open_positions == RISK.max_open_positions
        assert account.snapshot().open_positions <= RISK.max_open_positions
    # Small entries (<= 10% each) fit every other limit, so exactly the maximum opens.
    assert opened == RISK.max_open_positions
