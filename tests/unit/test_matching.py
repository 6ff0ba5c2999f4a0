"""Matching rules: filters, fees, book walking, resting fills, candle paths, the Account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.domain import Candle, Market, MarketTrade, OrderType, Side
from tradelib.errors import DataError, InsufficientFunds, InvalidOrder
from tradelib.exchange.matching import (
    Account,
    buy_lock,
    candle_trades,
    check_order,
    fee_for,
    filter_failure,
    limit_crosses_book,
    match_resting,
    slippage_price,
    walk_book,
)

D = Decimal
T0 = datetime(2024, 8, 1, tzinfo=UTC)
ARB = Market(
    symbol="ARB/USDT",
    base="ARB",
    quote="USDT",
    price_tick=D("0.0001"),
    amount_step=D("0.1"),
    min_amount=D("0.1"),
    max_amount=D("92141578"),
    min_notional=D(5),
)


def trade(price: str, qty: str) -> MarketTrade:
    return MarketTrade("ARB/USDT", "1", D(price), D(qty), T0)


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        ("10", "0.54561", "PRICE_FILTER"),
        ("10.05", "0.5456", "LOT_SIZE"),
        ("0.05", "0.5456", "LOT_SIZE"),
        ("100000000", "0.5456", "LOT_SIZE"),
        ("9.1", "0.5456", "NOTIONAL"),
    ],
)
def test_check_order_names_the_filter_and_numbers(qty: str, price: str, expected: str) -> None:
    with pytest.raises(InvalidOrder, match=expected) as info:
        check_order(ARB, Side.BUY, OrderType.LIMIT, D(qty), D(price), None)
    assert qty in str(info.value)


def test_market_order_notional_uses_reference_price() -> None:
    check_order(ARB, Side.SELL, OrderType.MARKET, D("10"), None, D("0.6"))
    with pytest.raises(InvalidOrder, match=r"NOTIONAL.*0\.4"):
        check_order(ARB, Side.SELL, OrderType.MARKET, D("10"), None, D("0.4"))
    failure = filter_failure(ARB, Side.SELL, OrderType.MARKET, D("10"), None, None)
    assert failure is not None and failure.filter == "NOTIONAL"


def test_fee_is_in_quote_and_rounded_up() -> None:
    assert fee_for(ARB, D("100"), is_maker=True) == D("0.1")
    assert fee_for(ARB, D("0.000012345"), is_maker=False) == D("0.00000002")


def test_walk_book_is_partial_when_book_is_thin() -> None:
    asks = [(D("1.0"), D("2")), (D("1.1"), D("3"))]
    assert walk_book(asks, D("4")) == [(D("1.0"), D("2")), (D("1.1"), D("2"))]
    assert walk_book(asks, D("10")) == [(D("1.0"), D("2")), (D("1.1"), D("3"))]
    assert walk_book([], D("1")) == []


def test_limit_crosses_only_marketable_levels() -> None:
    asks = [(D("1.0"), D("2")), (D("1.1"), D("3")), (D("1.2"), D("5"))]
    assert limit_crosses_book(Side.BUY, D("1.1"), D("10"), asks) == [
        (D("1.0"), D("2")),
        (D("1.1"), D("3")),
    ]
    bids = [(D("0.9"), D("1")), (D("0.8"), D("1"))]
    assert limit_crosses_book(Side.SELL, D("0.95"), D("10"), bids) == []


def test_resting_fills_only_strictly_through_and_up_to_volume() -> None:
    assert match_resting(Side.BUY, D("0.5"), D("10"), trade("0.5", "100")) == 0
    assert match_resting(Side.BUY, D("0.5"), D("10"), trade("0.4999", "3")) == D("3")
    assert match_resting(Side.BUY, D("0.5"), D("10"), trade("0.4", "30")) == D("10")
    assert match_resting(Side.SELL, D("0.5"), D("10"), trade("0.5001", "30"), D("25")) == D("5")
    assert match_resting(Side.SELL, D("0.5"), D("10"), trade("0.4", "30")) == 0


def test_candle_trades_follow_the_path_and_keep_volume() -> None:
    up = Candle("ARB/USDT", "1h", T0, D("1"), D("1.5"), D("0.8"), D("1.2"), D("10"))
    trades = candle_trades(up)
    assert [t.price for t in trades] == [D("1"), D("0.8"), D("1.5"), D("1.2")]
    assert sum(t.quantity for t in trades) == D("10")
    assert trades[-1].timestamp == T0 + timedelta(minutes=45)
    assert [t.taker_side for t in trades] == [None, Side.SELL, Side.BUY, Side.SELL]
    down = Candle("ARB/USDT", "1h", T0, D("1.2"), D("1.5"), D("0.8"), D("1"), D("1"))
    assert [t.price for t in candle_trades(down)] == [D("1.2"), D("1.5"), D("0.8"), D("1")]
    empty = Candle("ARB/USDT", "1h", T0, D("1"), D("1"), D("1"), D("1"), D("0"))
    assert candle_trades(empty) == []


def test_slippage_grows_with_size_and_is_adverse() -> None:
    small = slippage_price(D(100), Side.BUY, D(1), D(10_000))
    large = slippage_price(D(100), Side.BUY, D(1_000), D(10_000))
    assert D(100) < small < large
    assert slippage_price(D(100), Side.SELL, D(1), D(10_000)) < D(100)
    with pytest.raises(DataError):
        slippage_price(D(0), Side.SELL, D(1), D(1))


def test_account_locks_settles_and_releases() -> None:
    account = Account({"USDT": D("100")})
    need = buy_lock(ARB, D("100"), D("0.5"))
    assert need == D("50.05")
    account.lock("o1", "USDT", need)
    assert account.free("USDT") == D("49.95")
    assert account.locked("USDT") == need
    fee = fee_for(ARB, D("25"), is_maker=True)
    account.settle_fill("o1", Side.BUY, "ARB", "USDT", D("50"), D("0.5"), fee)
    assert account.free("ARB") == D("50")
    assert account.release("o1") == need - D("25") - fee
    assert account.free("USDT") == D("100") - D("25") - fee
    assert account.locked("USDT") == 0


def test_account_refuses_naming_asset_needed_and_free() -> None:
    account = Account({"USDT": D("10")})
    with pytest.raises(InsufficientFunds, match=r"USDT.*needed 10\.01.*free 10"):
        account.lock("o1", "USDT", D("10.01"))
    assert account.free("USDT") == D("10")
    with pytest.raises(InsufficientFunds, match="ARB"):
        account.settle_fill(None, Side.SELL, "ARB", "USDT", D("1"), D("1"), D("0"))
    with pytest.raises(DataError):
        account.set_free("USDT", D("-1"))


prices = st.decimals(min_value=D("0.0001"), max_value=D("10"), places=4)
qtys = st.decimals(min_value=D("0.1"), max_value=D("1000"), places=1)


@settings(max_examples=150, deadline=None)
@given(
    orders=st.lists(
        st.tuples(st.sampled_from([Side.BUY, Side.SELL]), qtys, prices, st.booleans()),
        max_size=12,
    ),
    trades=st.lists(st.tuples(prices, qtys), max_size=20),
)
def test_property_balances_conserved_and_fills_bounded(
    orders: list[tuple[Side, Decimal, Decimal, bool]], trades: list[tuple[Decimal, Decimal]]
) -> None:
    start_usdt, start_arb = D("1000"), D("500")
    account = Account({"USDT": start_usdt, "ARB": start_arb})
    book: dict[str, tuple[Side, Decimal, Decimal]] = {}
    filled: dict[str, Decimal] = {}
    fees = D(0)
    for i, (side, qty, price, _) in enumerate(orders):
        key = f"o{i}"
        asset, amount = ("USDT", buy_lock(ARB, qty, price)) if side is Side.BUY else ("ARB", qty)
        try:
            account.lock(key, asset, amount)
        except InsufficientFunds:
            continue
        book[key] = (side, qty, price)
        filled[key] = D(0)
    bought = sold = D(0)
    spent = received = D(0)
    for t_price, t_qty in trades:
        print_ = MarketTrade("ARB/USDT", "t", t_price, t_qty, T0)
        taken = D(0)
        for key, (side, qty, price) in book.items():
            got = match_resting(side, price, qty - filled[key], print_, taken)
            assert got >= 0
            if got == 0:
                continue
            taken += got
            filled[key] += got
            fee = fee_for(ARB, got * price, is_maker=True)
            fees += fee
            account.settle_fill(key, side, "ARB", "USDT", got, price, fee)
            if side is Side.BUY:
                bought += got
                spent += got * price + fee
            else:
                sold += got
                received += got * price - fee
        assert taken <= t_qty
    assert account.free("USDT") >= 0 and account.free("ARB") >= 0
    for key, (_, qty, _) in book.items():
        assert filled[key] <= qty
        account.release(key)  # cancel whatever rests: every lock returns to free
    assert account.locked("USDT") == 0 and account.locked("ARB") == 0
    for asset in ("USDT", "ARB"):
        assert account.free(asset) >= 0
        assert account.locked(asset) >= 0
    assert account.total("USDT") == start_usdt - spent + received
    assert account.total("ARB") == start_arb + bought - sold
    assert fees >= 0


@settings(max_examples=200, deadline=None)
@given(
    levels=st.lists(st.tuples(prices, qtys), max_size=15),
    quantity=qtys,
)
def test_property_walk_book_never_overfills(
    levels: list[tuple[Decimal, Decimal]], quantity: Decimal
) -> None:
    fills = walk_book(levels, quantity)
    total = sum((q for _, q in fills), D(0))
    assert total <= quantity
    assert total == min(quantity, sum((q for _, q in levels), D(0)))
    assert all(q > 0 for _, q in fills)
