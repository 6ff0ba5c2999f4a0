"""Property: the ledger's books equal the cash it moved, exactly, for any fill sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.domain import ClientOrderId, Fill, PositionStatus, Side, StrategyId
from tradelib.position import PositionLedger, holding_pnl, total_pnl

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EIGHT = Decimal("1e-8")


def dec8(low: str, high: str) -> st.SearchStrategy[Decimal]:
    """Positive decimals with 8 places between low and high (drawn as integer units of 1e-8)."""
    lo = max(int(Decimal(low).scaleb(8)), 1)
    return st.integers(min_value=lo, max_value=int(Decimal(high).scaleb(8))).map(
        lambda units: Decimal(units).scaleb(-8)
    )


@st.composite
def fills(draw: st.DrawFn, symbol: str = "ARB/USDT") -> list[Fill]:
    count = draw(st.integers(min_value=1, max_value=25))
    out = []
    for i in range(count):
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        quantity = draw(dec8("0.00000001", "10000"))
        price = draw(dec8("0.00000001", "100000"))
        fee_kind = draw(st.sampled_from(["none", "quote", "base"]))
        if fee_kind == "quote":
            fee, currency = (quantity * price * Decimal("0.001")).quantize(EIGHT), "USDT"
        elif fee_kind == "base":
            fee = (quantity * Decimal("0.001")).quantize(EIGHT)
            currency = "ARB"
            if fee >= quantity:
                fee = Decimal(0)
        else:
            fee, currency = Decimal(0), "USDT"
        out.append(
            Fill(
                trade_id=f"t{i}",
                client_order_id=ClientOrderId(f"o{i}"),
                symbol=symbol,
                side=side,
                quantity=quantity,
                price=price,
                fee=fee,
                fee_currency=currency,
                timestamp=T0 + timedelta(seconds=i),
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(
    sequence=fills(),
    mark=dec8("0.00000001", "100000"),
    cash0=dec8("0", "1000000"),
)
def test_cash_plus_holdings_equals_pnl_exactly(
    sequence: list[Fill], mark: Decimal, cash0: Decimal
) -> None:
    ledger = PositionLedger()
    cash = cash0
    base_held = Decimal(0)
    realised = Decimal(0)
    for fill in sequence:
        result = ledger.apply(fill, StrategyId("s"), "binance")
        cash += result.cash_delta
        realised += result.realised
        base_fee = fill.fee if fill.fee_currency == "ARB" else Decimal(0)
        base_held += fill.side.sign * fill.quantity - base_fee
    holding = ledger.holdings()[next(iter(ledger.holdings()))]
    # The ledger's quantity is exactly the wallet's base balance change.
    assert holding.signed_quantity == base_held
    unrealised = holding.unrealised(mark) if holding.position.quantity else Decimal(0)
    assert cash + base_held * mark - cash0 == realised + unrealised
    # Closed holdings carry no quantity; open ones carry a consistent status.
    if holding.position.quantity == 0:
        assert holding.position.status is PositionStatus.CLOSED
    else:
        assert holding.position.status in (PositionStatus.OPEN, PositionStatus.PARTIAL)
        assert holding_pnl(holding, mark).unrealised == unrealised


@settings(max_examples=100, deadline=None)
@given(
    first=fills("ARB/USDT"),
    second=fills("ARB/USDT"),
    mark=dec8("0.01", "1000"),
)
def test_identity_across_strategies(first: list[Fill], second: list[Fill], mark: Decimal) -> None:
    ledger = PositionLedger()
    cash = realised = Decimal(0)
    # Same symbol, two strategies: positions are separate and still add up.
    for strategy, sequence in (("a", first), ("b", second)):
        for fill in sequence:
            renamed = Fill(
                trade_id=f"{strategy}-{fill.trade_id}",
                client_order_id=fill.client_order_id,
                symbol=fill.symbol,
                side=fill.side,
                quantity=fill.quantity,
                price=fill.price,
                fee=fill.fee,
                fee_currency=fill.fee_currency,
                timestamp=fill.timestamp,
            )
            result = ledger.apply(renamed, StrategyId(strategy), "binance")
            cash += result.cash_delta
            realised += result.realised
    holdings = list(ledger.holdings().values())
    held = sum((h.signed_quantity for h in holdings), Decimal(0))
    summary = total_pnl(holdings, {"ARB/USDT": mark})
    # A reopened position starts a new holding, so realised comes from the fill results.
    assert cash + held * mark == realised + summary.unrealised


@settings(max_examples=100, deadline=None)
@given(sequence=fills())
def test_replayed_fills_change_nothing(sequence: list[Fill]) -> None:
    ledger = PositionLedger()
    for fill in sequence:
        ledger.apply(fill, StrategyId("s"), "binance")
    before = ledger.holdings()
    for fill in sequence:
        assert ledger.apply(fill, StrategyId("s"), "binance").duplicate
    assert ledger.holdings() == before
