"""Order status transitions and value-type validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelib.domain import (
    Candle,
    ClientOrderId,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Side,
    client_order_id,
    from_ms,
    to_decimal,
    to_ms,
)
from tradelib.errors import DataError, IllegalTransition

T0 = datetime(2024, 3, 16, tzinfo=UTC)
TERMINAL = {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}


def _order(qty: str = "10") -> Order:
    return Order(
        client_order_id=ClientOrderId("tl-1"),
        symbol="ARB/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=Decimal(qty),
        price=Decimal("1.5"),
        created_at=T0,
    )


@given(st.lists(st.sampled_from(list(OrderStatus)), max_size=12))
def test_any_walk_through_statuses_never_leaves_a_terminal_state(walk: list[OrderStatus]) -> None:
    order = _order()
    history = [order.status]
    for step in walk:
        legal = order.status.can_become(step)
        try:
            order = order.transition(step, T0)
        except IllegalTransition:
            assert not legal
            continue
        assert legal
        history.append(step)
    # once terminal, nothing followed
    for i, status in enumerate(history):
        if status in TERMINAL:
            assert i == len(history) - 1


@given(st.sampled_from(list(OrderStatus)))
def test_pending_reaches_every_other_status_and_terminal_reaches_none(target: OrderStatus) -> None:
    assert OrderStatus.PENDING.can_become(target) == (target is not OrderStatus.PENDING)
    for terminal in TERMINAL:
        assert not terminal.can_become(target)
        assert terminal.is_terminal


def test_open_cannot_be_rejected_or_go_back_to_pending() -> None:
    assert not OrderStatus.OPEN.can_become(OrderStatus.REJECTED)
    assert not OrderStatus.OPEN.can_become(OrderStatus.PENDING)
    assert not OrderStatus.PARTIALLY_FILLED.can_become(OrderStatus.OPEN)


@given(
    st.lists(
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal(3), places=3),
        min_size=1,
        max_size=8,
    )
)
def test_fills_accumulate_exactly_and_never_overfill(parts: list[Decimal]) -> None:
    order = _order(str(sum(parts)))
    for i, qty in enumerate(parts):
        fill = Fill(
            trade_id=str(i),
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=qty,
            price=Decimal("1.5") + Decimal(i) / 100,
            fee=qty * Decimal("0.001"),
            fee_currency="USDT",
            timestamp=T0 + timedelta(seconds=i),
        )
        order = order.apply_fill(fill)
    assert order.filled_quantity == order.quantity
    assert order.status is OrderStatus.FILLED
    assert order.fee == sum(p * Decimal("0.001") for p in parts)
    with pytest.raises((DataError, IllegalTransition)):
        order.apply_fill(replace(fill, trade_id="extra"))


def test_overfill_is_refused_with_the_numbers() -> None:
    order = _order("1")
    fill = Fill(
        "x",
        order.client_order_id,
        "ARB/USDT",
        Side.BUY,
        Decimal(2),
        Decimal(1),
        Decimal(0),
        "USDT",
        T0,
    )
    with pytest.raises(DataError, match="overfills"):
        order.apply_fill(fill)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(DataError, match="timezone-aware"):
        replace(_order(), created_at=datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("open", Decimal("NaN")),
        ("low", Decimal(0)),
        ("high", Decimal("1.0")),
        ("volume", Decimal(-1)),
    ],
)
def test_candle_rejects_bad_prices(field: str, value: Decimal) -> None:
    good = dict(
        open=Decimal("1.5"),
        high=Decimal("1.6"),
        low=Decimal("1.4"),
        close=Decimal("1.55"),
        volume=Decimal(100),
    )
    good[field] = value
    with pytest.raises(DataError, match="ARB/USDT 1h candle"):
        Candle("ARB/USDT", "1h", T0, **good)


def test_client_order_id_is_deterministic_and_binance_safe() -> None:
    a = client_order_id("token_unlock", "ARB/USDT", "2024-03-16T00:00:00Z-entry")
    b = client_order_id("token_unlock", "ARB/USDT", "2024-03-16T00:00:00Z-entry")
    c = client_order_id("token_unlock", "ARB/USDT", "2024-03-16T00:00:00Z-entry", attempt=1)
    assert a == b != c
    assert len(a) <= 36
    assert set(a) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


def test_ms_round_trip_and_decimal_parsing() -> None:
    assert from_ms(to_ms(T0)) == T0
    assert to_decimal(0.1, "price") == Decimal("0.1")
    with pytest.raises(DataError, match="price must be finite"):
        to_decimal("inf", "price")
    with pytest.raises(DataError, match="qty is not a number"):
        to_decimal("abc", "qty")
