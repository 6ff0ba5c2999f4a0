"""Positions from fills, P&L in quote and USD, exit levels, and the portfolio snapshot."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.config import RiskSettings
from tradelib.domain import (
    Balance,
    ClientOrderId,
    Fill,
    Mode,
    Position,
    PositionStatus,
    Side,
    StrategyId,
)
from tradelib.errors import DataError
from tradelib.position import (
    ExitReason,
    ExitRules,
    PositionKey,
    PositionLedger,
    add_realised,
    build_snapshot,
    evaluate_exits,
    holding_pnl,
    roll_day,
    step_exits,
    track_price,
    with_exit_levels,
)

T0 = datetime(2026, 2, 10, 8, tzinfo=UTC)
S = StrategyId("unlock")
D = Decimal
_count = 0


def fill(
    side: Side,
    qty: str,
    price: str,
    fee: str = "0",
    currency: str = "USDT",
    symbol: str = "ARB/USDT",
    trade_id: str | None = None,
) -> Fill:
    global _count
    _count += 1
    return Fill(
        trade_id=trade_id or f"t{_count}",
        client_order_id=ClientOrderId("o"),
        symbol=symbol,
        side=side,
        quantity=D(qty),
        price=D(price),
        fee=D(fee),
        fee_currency=currency,
        timestamp=T0 + timedelta(seconds=_count),
    )


def test_open_add_reduce_close_with_fees() -> None:
    ledger = PositionLedger()
    r = ledger.apply(fill(Side.BUY, "10", "1.00", "0.01"), S, "binance", entry_target=D(20))
    assert r.opened and r.holding.position.status is PositionStatus.PARTIAL  # 10 of 20 filled
    r = ledger.apply(fill(Side.BUY, "10", "1.30", "0.013"), S, "binance")
    p = r.holding.position
    assert p.status is PositionStatus.OPEN
    assert p.quantity == D(20) and p.average_entry == D("1.15")
    assert r.holding.open_fees == D("0.023")
    # Sell half at 1.40: realised = 10 * (1.40 - 1.15) - half the entry fees - exit fee.
    r = ledger.apply(fill(Side.SELL, "10", "1.40", "0.014"), S, "binance")
    assert r.realised == D("2.5") - D("0.0115") - D("0.014")
    assert r.holding.position.status is PositionStatus.PARTIAL
    assert r.holding.position.quantity == D(10)
    r = ledger.apply(fill(Side.SELL, "10", "1.00", "0.01"), S, "binance")
    assert r.closed is not None and r.closed.status is PositionStatus.CLOSED
    assert r.realised == D("-1.5") - D("0.0115") - D("0.01")
    assert r.closed.realized_pnl == D("2.5") - D("1.5") - D("0.023") - D("0.024")
    assert r.closed.fees == D("0.047")
    assert r.closed.closed_at is not None


def test_flip_closes_the_long_and_opens_a_short_with_the_rest() -> None:
    ledger = PositionLedger()
    ledger.apply(fill(Side.BUY, "5", "10"), S, "binance")
    r = ledger.apply(fill(Side.SELL, "8", "12", "0.8"), S, "binance")
    assert r.closed is not None and r.closed.quantity == 0
    # 5 of the 8 closed the long: 5/8 of the fee is an exit fee.
    assert r.closed.realized_pnl == D(10) - D("0.5")
    assert r.opened and r.holding.position.side is Side.SELL
    assert r.holding.position.quantity == D(3) and r.holding.open_fees == D("0.3")
    assert r.holding.unrealised(D(11)) == D(3) - D("0.3")


def test_partial_status_follows_the_latest_entry_order() -> None:
    ledger = PositionLedger()
    first = fill(Side.BUY, "5", "10")
    r = ledger.apply(first, S, "binance", entry_target=D(5))
    assert r.holding.position.status is PositionStatus.OPEN
    second = replace(fill(Side.BUY, "1", "10"), client_order_id=ClientOrderId("o2"))
    r = ledger.apply(second, S, "binance", entry_target=D(4))
    assert r.holding.position.status is PositionStatus.PARTIAL  # 1 of the add-on's 4
    # A sell of 10 flips: 6 close the long, 4 open a short that is the order's whole rest.
    flip = replace(fill(Side.SELL, "10", "11"), client_order_id=ClientOrderId("o3"))
    r = ledger.apply(flip, S, "binance", entry_target=D(10))
    assert r.holding.position.side is Side.SELL and r.holding.position.quantity == D(4)
    assert r.holding.position.status is PositionStatus.OPEN


def test_base_asset_fee_reduces_the_quantity_held() -> None:
    ledger = PositionLedger()
    r = ledger.apply(fill(Side.BUY, "100", "2", "0.1", currency="ARB"), S, "binance")
    assert r.holding.position.quantity == D("99.9")
    assert r.fee_quote == D("0.2") and r.cash_delta == D(-200)
    assert r.holding.position.status is PositionStatus.OPEN  # entry measured gross of the fee


def test_third_asset_fee_needs_its_price() -> None:
    ledger = PositionLedger()
    with pytest.raises(DataError, match="BNB"):
        ledger.apply(fill(Side.BUY, "1", "2", "0.001", currency="BNB"), S, "binance")
    r = ledger.apply(
        fill(Side.BUY, "1", "2", "0.001", currency="BNB"), S, "binance", fee_rate=D(600)
    )
    assert r.fee_quote == D("0.6")


def test_replayed_fill_is_a_duplicate() -> None:
    ledger = PositionLedger()
    f = fill(Side.BUY, "1", "2", trade_id="same")
    ledger.apply(f, S, "binance")
    again = ledger.apply(f, S, "binance")
    assert again.duplicate and again.holding.position.quantity == D(1)
    assert ("binance", "ARB/USDT", "same") in ledger.applied_trade_ids()


def test_ledger_sets_exit_levels_on_open_and_keeps_them_on_adds() -> None:
    ledger = PositionLedger(exit_rules=ExitRules.from_settings(RiskSettings()), mode=Mode.LIVE)
    r = ledger.apply(fill(Side.BUY, "1", "100"), S, "binance")
    p = r.holding.position
    assert (p.stop_loss, p.take_profit, p.high_water, p.mode) == (D(98), D(105), D(100), Mode.LIVE)
    r = ledger.apply(fill(Side.BUY, "1", "102"), S, "binance")
    assert r.holding.position.stop_loss == D(98)
    # A strategy stop on the wrong side falls back to the default, with a note.
    other = ledger.apply(
        fill(Side.BUY, "1", "10", symbol="OP/USDT"), S, "binance", stop_price=D(11)
    )
    assert other.holding.position.stop_loss == D("9.8")
    assert any("default stop-loss" in n for n in other.notes)


def test_pnl_in_usd() -> None:
    ledger = PositionLedger()
    r = ledger.apply(fill(Side.BUY, "2", "50", "0.1", symbol="ARB/EUR", currency="EUR"), S, "k")
    pnl = holding_pnl(r.holding, D(55), quote_usd_rate=D("1.1"))
    assert pnl.unrealised == D("9.9") and pnl.unrealised_usd == D("10.89")
    assert pnl.total_usd == D("10.89")
    assert holding_pnl(r.holding, D(55), exit_fee_rate=D("0.001")).unrealised == D("9.79")


def position(side: Side = Side.BUY, entry: str = "100") -> Position:
    base = Position(S, "binance", "ARB/USDT", side, D(1), D(entry), T0)
    return with_exit_levels(base, ExitRules())


def test_seed_exit_levels_long_and_short() -> None:
    long = position(Side.BUY)
    assert (long.stop_loss, long.take_profit) == (D(98), D(105))
    short = position(Side.SELL)
    assert (short.stop_loss, short.take_profit) == (D(102), D(95))
    with pytest.raises(DataError):
        with_exit_levels(long, ExitRules(), stop_price=D(101))


def test_stop_and_take_profit_trigger_with_reason_and_trigger_price() -> None:
    long = position()
    assert evaluate_exits(long, D("98.01"), T0) is None
    stop = evaluate_exits(long, D(98), T0)
    assert stop is not None and stop.reason is ExitReason.STOP_LOSS
    assert stop.trigger_price == D(98) and stop.side is Side.SELL and stop.quantity == D(1)
    assert "-2.00%" in stop.explanation
    take = evaluate_exits(long, D(105), T0)
    assert take is not None and take.reason is ExitReason.TAKE_PROFIT
    short_stop = evaluate_exits(position(Side.SELL), D(102), T0)
    assert short_stop is not None and short_stop.side is Side.BUY


def test_trailing_stop_activates_after_three_percent_and_trails_two() -> None:
    rules = ExitRules()
    p = track_price(position(), D("102.9"), rules)
    assert p.trailing_stop is None and p.high_water == D("102.9")
    p = track_price(p, D(103), rules)
    assert p.trailing_stop == D("100.94")
    p = track_price(p, D(104), rules)
    assert p.trailing_stop == D("101.92")
    p = track_price(p, D("103.5"), rules)  # never loosens
    assert p.trailing_stop == D("101.92") and p.high_water == D(104)
    p, decision = step_exits(p, D("101.9"), T0, rules)
    assert decision is not None and decision.reason is ExitReason.TRAILING_STOP
    assert decision.trigger_price == D("101.92")


def test_trailing_stop_for_a_short_uses_the_low_water_mark() -> None:
    rules = ExitRules()
    p = track_price(position(Side.SELL), D(96), rules)
    assert p.high_water == D(96) and p.trailing_stop == D("97.92")
    decision = evaluate_exits(p, D(98), T0)
    assert decision is not None and decision.reason is ExitReason.TRAILING_STOP


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.decimals(min_value=80, max_value=120, places=2), max_size=30))
def test_trailing_stop_only_tightens_and_trails_the_high(path: list[Decimal]) -> None:
    rules = ExitRules()
    p = position()
    previous = None
    for i, price in enumerate(path):
        p = track_price(p, price, rules)
        assert p.high_water == max([D(100), *path[: i + 1]])
        if previous is not None:
            assert p.trailing_stop is not None and p.trailing_stop >= previous
        if p.trailing_stop is not None:
            assert p.high_water >= D(103)
            assert p.trailing_stop == p.high_water * D("0.98")
        previous = p.trailing_stop


def test_closed_positions_have_no_exits() -> None:
    closed = replace(position(), quantity=D(0), status=PositionStatus.CLOSED)
    assert evaluate_exits(closed, D(1), T0) is None


def test_portfolio_snapshot_metrics() -> None:
    ledger = PositionLedger(exit_rules=ExitRules())
    ledger.apply(fill(Side.BUY, "10", "100"), S, "binance")
    ledger.apply(fill(Side.BUY, "2", "1000", symbol="ETH/BTC"), S, "binance")
    balances = [
        Balance("binance", "USDT", D(3000), D(500)),
        Balance("binance", "ARB", D(10)),
        Balance("binance", "ETH", D(2)),
        Balance("binance", "BTC", D("0.01")),
    ]
    now = T0 + timedelta(hours=3)
    day = roll_day(None, T0, D(5000), D(0))
    day = add_realised(day, D(-20), now)
    snap = build_snapshot(
        ledger.open_positions(),
        balances,
        {"ARB/USDT": D(110), "ETH/BTC": D("0.05")},
        {"ARB": D(110), "ETH": D(3000), "BTC": D(60000)},
        day,
        D(12000),
        now,
    )
    # 3500 USDT + 1100 ARB + 6000 ETH + 600 BTC
    assert snap.equity_usd == D(11200)
    assert snap.cash_usd == D(3000) and snap.free("USDT") == D(3000)
    assert snap.stablecoin_usd == D(3500)
    assert snap.stablecoin_share_pct == D(3500) / D(11200) * 100
    assert snap.open_positions == 2
    eth = snap.position("unlock", "binance", "ETH/BTC")
    assert eth is not None and eth.notional_usd == D("0.1") * D(60000)
    assert snap.gross_exposure_usd == D(1100) + D(6000)
    # Risk to the 2% stops: 10 * 2 USDT + 2 * 20 BTC * 60000 USD/BTC... in quote then USD.
    assert snap.heat_usd == D(20) + D(2) * D(20) * D(60000)
    assert snap.peak_equity_usd == D(12000)
    assert snap.drawdown_pct == D(800) / D(12000) * 100
    assert snap.unrealised_usd == D(100) + D(2) * (D("0.05") - D(1000)) * D(60000)
    assert snap.daily_pnl_usd == D(-20) + snap.unrealised_usd


def test_day_mark_rolls_at_utc_midnight() -> None:
    day = roll_day(None, T0, D(1000), D(5))
    day = add_realised(day, D(7), T0)
    assert roll_day(day, T0.replace(hour=23, minute=59), D(1), D(1)) is day
    tomorrow = roll_day(day, T0 + timedelta(days=1), D(990), D(3))
    assert (tomorrow.start_equity, tomorrow.start_unrealised, tomorrow.realised) == (
        D(990),
        D(3),
        D(0),
    )
    with pytest.raises(DataError):
        add_realised(day, D(1), T0 + timedelta(days=1))


def test_snapshot_refuses_unpriced_assets() -> None:
    day = roll_day(None, T0, D(0), D(0))
    with pytest.raises(DataError, match="PEPE"):
        build_snapshot([], [Balance("binance", "PEPE", D(1))], {}, {}, day, D(0), T0)
    key = PositionKey(S, "binance", "ARB/USDT")
    assert key.symbol == "ARB/USDT"
