"""The dashboard's numbers: positions, balances, metrics against targets, P&L series, history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tradelib.config import RiskSettings, TargetSettings
from tradelib.domain import (
    ClientOrderId,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Side,
    StrategyId,
)
from tradelib.errors import DataError
from tradelib.operations.valuation import HEARTBEAT_KEY, AccountValuation
from tradelib.store import EventRecord, ExecutionState
from tradelib.store.records import PositionRecord
from widgets.activity import alert_rows, history_page
from widgets.aggregate import (
    balances_view,
    equity_points,
    monthly_pace,
    pnl_view,
    position_rows,
    strategy_metrics,
    usd_prices,
)
from widgets.model import EngineView, EquityPoint, HistoryFilter, HistoryView, Verdict
from widgets.snapshot import SampleBook, choose_mode

T0 = datetime(2024, 8, 1, 12, tzinfo=UTC)
D = Decimal


def _position(symbol: str = "ARB/USDT", **changes: object) -> Position:
    values: dict[str, object] = {
        "strategy_id": StrategyId("s"), "exchange": "binance", "symbol": symbol,
        "side": Side.BUY, "quantity": D(100), "average_entry": D(2), "opened_at": T0,
        "stop_loss": D("1.96"), "take_profit": D("2.1"),
    }  # fmt: skip
    values.update(changes)
    return Position(**values)  # type: ignore[arg-type]


def _record(position: Position, price: str | None = None) -> PositionRecord:
    return PositionRecord(1, position, None if price is None else D(price), None, T0)


def _valuation(**changes: object) -> AccountValuation:
    values: dict[str, object] = {
        "at": T0, "equity_usd": D(10_100), "cash_usd": D(8_000), "stablecoin_usd": D(8_000),
        "unrealised_usd": D(50), "daily_pnl_usd": D(-120), "day_start_equity_usd": D(10_000),
        "peak_equity_usd": D(10_400),
    }  # fmt: skip
    values.update(changes)
    return AccountValuation(**values)  # type: ignore[arg-type]


# -- positions ---------------------------------------------------------------------------------


def test_position_rows_price_at_the_engines_mark_and_fall_back_to_the_stored_price() -> None:
    marked = _record(_position(), price="1.5")
    stored = _record(_position("OP/USDT", side=Side.SELL, average_entry=D(4)), price="3.8")
    rows = position_rows([marked, stored], {"ARB/USDT": D("2.2")}, T0 + timedelta(hours=5))
    arb, op = rows
    assert arb.price == D("2.2") and arb.unrealised == D(20) and arb.unrealised_pct == D(10)
    assert op.price == D("3.8")  # no engine mark: the store's last price
    assert op.unrealised == D(20) and op.unrealised_pct == D(5)  # a short gains as price falls
    assert arb.age == timedelta(hours=5)
    assert (arb.stop, arb.target, arb.trailing) == (D("1.96"), D("2.1"), None)


def test_position_rows_skip_closed_positions_and_never_show_a_negative_age() -> None:
    closed = _record(_position(status=PositionStatus.CLOSED), "2")
    unpriced = _record(_position("OP/USDT"))
    rows = position_rows([closed, unpriced], {}, T0 - timedelta(minutes=3))
    assert [r.symbol for r in rows] == ["OP/USDT"]
    assert rows[0].price is None and rows[0].unrealised is None
    assert rows[0].age == timedelta(0)  # engine clock a little behind the position stamp


# -- balances ----------------------------------------------------------------------------------


def test_balances_value_assets_and_judge_the_reserve_and_minimum() -> None:
    limits = RiskSettings()  # 20 % reserve, $100 minimum
    held = {"USDT": (D(1500), D(100)), "ARB": (D(5000), D(0)), "DOGE": (D(10), D(0))}
    view = balances_view(held, {"ARB": D("0.5")}, ("USDT", "USDC"), limits, "engine", T0)
    assert view.total_usd == D(4100)  # 1600 USDT + 2500 ARB; DOGE has no price
    assert view.unpriced == ("DOGE",)
    assert view.stable_usd == D(1600)
    assert view.stable_pct == D(1600) / D(4100) * 100
    assert view.reserve_ok and view.min_balance_ok
    assert [r.asset for r in view.rows] == ["ARB", "USDT", "DOGE"]  # by value, unpriced last
    thin = balances_view({"ARB": (D(170), D(0)), "USDT": (D(10), D(0))}, {"ARB": D("0.5")},
                         ("USDT",), limits, "store", None)  # fmt: skip
    assert not thin.reserve_ok and not thin.min_balance_ok  # 10/95 < 20 %, $95 < $100
    assert balances_view({}, {}, ("USDT",), limits, "store", None).stable_pct is None


def test_usd_prices_come_from_marks_quoted_in_stablecoins_only() -> None:
    marks = {"ARB/USDT": D("0.6"), "ETH/BTC": D("0.05"), "OP/USDC": D("1.5")}
    assert usd_prices(marks, ("USDT", "USDC")) == {"ARB": D("0.6"), "OP": D("1.5")}


# -- metrics -----------------------------------------------------------------------------------


def _state(**changes: object) -> ExecutionState:
    values: dict[str, object] = {
        "strategy": "s", "total_trades": 10, "winning_trades": 6, "losing_trades": 4,
        "total_pnl": D(100), "peak_equity": D(10_400), "max_drawdown": D("12.5"),
        "sharpe_ratio": D("1.4"),
    }  # fmt: skip
    values.update(changes)
    return ExecutionState(**values)  # type: ignore[arg-type]


def test_metrics_stand_beside_the_targets_from_the_settings() -> None:
    targets = TargetSettings(win_rate_pct=D(65), sharpe=D("1.2"))  # not the seed's numbers
    metrics = {m.key: m for m in strategy_metrics(_state(), _valuation(), targets, RiskSettings())}
    assert metrics["win_rate"].value == D(60)
    assert metrics["win_rate"].target == "target > 65 %"
    assert metrics["win_rate"].verdict is Verdict.MISSED
    assert metrics["sharpe"].verdict is Verdict.MET and metrics["sharpe"].target == "target > 1.2"
    assert metrics["max_drawdown"].verdict is Verdict.MISSED  # 12.5 % against < 10 %
    assert metrics["daily_pnl"].value == D(-120)
    assert metrics["daily_pnl"].verdict is Verdict.MET  # −120 within −5 % of 10,000
    assert "−500.00" in metrics["daily_pnl"].target
    assert metrics["equity"].value == D(10_100)
    assert metrics["trades"].note == "6 won · 4 lost"
    # 100 realised on a start of 10,100 − 100 − 50 open = 9,950
    assert metrics["total_pnl"].note.startswith(f"+{D(100) / D(9950) * 100:.2f} %")


def test_metrics_without_data_have_no_verdict() -> None:
    metrics = {m.key: m for m in strategy_metrics(None, None, TargetSettings(), RiskSettings())}
    assert metrics["win_rate"].value is None and metrics["win_rate"].verdict is Verdict.NONE
    assert metrics["daily_pnl"].verdict is Verdict.NONE
    assert metrics["equity"].note == "the engine publishes no valuation"
    breach = {m.key: m for m in strategy_metrics(
        _state(), _valuation(daily_pnl_usd=D(-501)), TargetSettings(), RiskSettings(),
    )}  # fmt: skip
    assert breach["daily_pnl"].verdict is Verdict.MISSED


def test_monthly_pace_needs_a_week_of_closes() -> None:
    closes = [(date(2024, 8, 1), D(10_000)), (date(2024, 8, 3), D(10_100))]
    total, pace, days = monthly_pace(closes, D(10_200))
    assert (total, pace, days) == (D(2), None, 2)
    week = [(date(2024, 8, 1), D(10_000)), (date(2024, 8, 11), D(10_300))]
    total, pace, days = monthly_pace(week, None)
    assert total == D(3) and days == 10 and pace == D(3) * D("30.4375") / 10


# -- P&L chart ---------------------------------------------------------------------------------


def _event(at: datetime, equity: str, kind: str = "cycle", id: int = 1) -> EventRecord:
    return EventRecord(id, at, kind, "engine", {"equity_usd": equity})


def test_equity_points_merge_closes_events_and_samples_and_derive_the_daily_pnl() -> None:
    day1 = datetime(2024, 8, 1, 10, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    points = equity_points(
        [_event(day1, "10000"), _event(day1 + timedelta(hours=5), "10080"),
         _event(day2, "10050")],
        [EquityPoint(day2 + timedelta(hours=1), D(10_020), D(-75))],
        [(date(2024, 7, 31), D(9_990)), (date(2024, 8, 2), D(10_020))],
    )  # fmt: skip
    assert [p.equity for p in points] == [D(9990), D(10000), D(10080), D(10050), D(10020)]
    # today's close (stamped 23:59:59) lies ahead of the live point and is left out
    assert points[1].daily_pnl == D(10)  # since 9,990 at the end of the day before
    assert points[2].daily_pnl == D(90)
    assert points[3].daily_pnl == D(-30)  # a new day starts at the previous day's last equity
    assert points[4].daily_pnl == D(-75)  # the engine's own number wins


def test_pnl_view_draws_the_loss_limit_and_alert_level_in_usd() -> None:
    view = pnl_view((), _valuation(), RiskSettings(daily_loss_limit_pct=D(4)))
    assert view.loss_limit_usd == D(-400)
    assert view.alert_level_usd == D(-320)  # 80 % of the limit
    assert pnl_view((), None, RiskSettings()).loss_limit_usd is None


def test_sample_book_keeps_one_point_per_valuation_and_ignores_older_clocks() -> None:
    book = SampleBook(limit=3)
    book.add(None)
    for minutes in (0, 0, 5, 3, 10, 15):
        book.add(_valuation(at=T0 + timedelta(minutes=minutes)))
    assert [p.at - T0 for p in book.points()] == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(minutes=15),
    ]


# -- mode, alerts, history ---------------------------------------------------------------------


def _engine(mode: Mode, liveness: str, beat: datetime = T0) -> EngineView:
    from tradelib.store import Liveness

    return EngineView(mode, "binance", "s", "running", Liveness(liveness), 1, "h", T0, beat,
                      None, 0, timedelta(0))  # fmt: skip


def test_the_dashboard_follows_the_live_engine_first_then_the_latest() -> None:
    paper, live = _engine(Mode.PAPER, "alive"), _engine(Mode.LIVE, "alive")
    assert choose_mode([paper, live], Mode.PAPER) is Mode.LIVE
    assert choose_mode([paper, _engine(Mode.LIVE, "stale")], Mode.LIVE) is Mode.PAPER
    later = _engine(Mode.LIVE, "stopped", T0 + timedelta(hours=1))
    assert choose_mode([_engine(Mode.PAPER, "stale"), later], Mode.PAPER) is Mode.LIVE
    assert choose_mode([], Mode.LIVE) is Mode.LIVE


def test_alert_feed_holds_alerts_and_peoples_actions_newest_first() -> None:
    events = [
        EventRecord(1, T0, "alert", "alerts",
                    {"severity": "critical", "kind": "breaker_tripped", "message": "daily loss"}),
        EventRecord(2, T0 + timedelta(seconds=1), "risk_decision", "risk", {}),
        EventRecord(3, T0 + timedelta(seconds=2), "strategy_paused", "ops",
                    {"by": "ann", "reason": "news"}),
        EventRecord(4, T0 + timedelta(seconds=3), "go_live_refused", "ops",
                    {"by": "bob", "refused": "wrong code"}),
    ]  # fmt: skip
    rows = alert_rows(events)
    assert [r.id for r in rows] == [4, 3, 1]
    assert rows[0].message == "going live refused for bob: wrong code"
    assert rows[1].message == "entries paused by ann: news" and rows[1].severity == "warning"
    assert rows[2].severity == "critical" and rows[2].message == "daily loss"


def _order(n: int, symbol: str, status: OrderStatus, mode: Mode = Mode.PAPER) -> Order:
    return Order(
        client_order_id=ClientOrderId(f"tl-{n}"), symbol=symbol, side=Side.BUY,
        type=OrderType.LIMIT, quantity=D(1), created_at=T0 + timedelta(days=n), price=D(1),
        status=status, strategy_id=StrategyId("s"), exchange="binance", mode=mode,
    )  # fmt: skip


def test_history_filters_pages_and_clamps_the_page() -> None:
    orders = [
        _order(i, "ARB/USDT" if i % 2 else "OP/USDT",
               OrderStatus.OPEN if i % 3 == 0 else OrderStatus.FILLED,
               Mode.LIVE if i == 7 else Mode.PAPER)
        for i in range(10)
    ]  # fmt: skip
    page = history_page(orders, (), HistoryFilter(page_size=4, page=1))
    assert page.total == 10 and page.pages == 3
    assert [r.client_order_id for r in page.rows] == ["tl-5", "tl-4", "tl-3", "tl-2"]
    assert page.symbols == ("ARB/USDT", "OP/USDT")
    arb = history_page(orders, (), HistoryFilter(symbol="ARB/USDT", status="open", page_size=4))
    assert [r.client_order_id for r in arb.rows] == ["tl-9", "tl-3"]
    live = history_page(orders, (), HistoryFilter(mode=Mode.LIVE))
    assert [r.client_order_id for r in live.rows] == ["tl-7"]
    dated = history_page(orders, (), HistoryFilter(start=date(2024, 8, 3), end=date(2024, 8, 4)))
    assert [r.client_order_id for r in dated.rows] == ["tl-3", "tl-2"]
    beyond = history_page(orders, (), HistoryFilter(status="filled", page=9, page_size=4))
    assert beyond.filter.page == 1 and len(beyond.rows) == 2  # 6 filled: page 2 of 2


def test_trade_history_shows_closed_round_trips_won_or_lost() -> None:
    won = _position(status=PositionStatus.CLOSED, realized_pnl=D(12), closed_at=T0 + timedelta(1))
    lost = _position("OP/USDT", status=PositionStatus.CLOSED, realized_pnl=D(-3),
                     closed_at=T0 + timedelta(2))  # fmt: skip
    still_open = _position("SUI/USDT")
    page = history_page((), [won, lost, still_open], HistoryFilter(view=HistoryView.TRADES))
    assert [r.symbol for r in page.rows] == ["OP/USDT", "ARB/USDT"]
    winners = history_page((), [won, lost], HistoryFilter(view=HistoryView.TRADES, status="won"))
    assert [r.symbol for r in winners.rows] == ["ARB/USDT"]
    assert winners.rows[0].return_pct == D(6)  # type: ignore[union-attr]


# -- the engine's published valuation ----------------------------------------------------------


def test_valuation_round_trips_through_a_heartbeat_and_malformed_ones_are_named() -> None:
    valuation = _valuation(marks={"ARB/USDT": D("0.61")}, balances={"ARB": (D(10), D(1))})
    detail = {HEARTBEAT_KEY: valuation.to_detail()}
    assert AccountValuation.from_detail(detail) == valuation
    assert AccountValuation.from_detail({}) is None
    broken = {HEARTBEAT_KEY: {**valuation.to_detail(), "equity_usd": "NaN"}}
    with pytest.raises(DataError, match="equity_usd"):
        AccountValuation.from_detail(broken)
    with pytest.raises(DataError, match="malformed"):
        AccountValuation.from_detail({HEARTBEAT_KEY: {"at": "yesterday"}})


def test_staleness_and_the_engine_clock_follow_what_the_engine_announced() -> None:
    from tradelib.store import EngineState, HeartbeatRecord
    from widgets.snapshot import engine_clock, stale_after

    def beat(**detail: object) -> HeartbeatRecord:
        return HeartbeatRecord(Mode.PAPER, "binance", "s", EngineState.RUNNING, 1, "h", T0, T0,
                               T0, 1, dict(detail))  # fmt: skip

    assert stale_after(beat(stale_after_seconds=10), 30) == 10
    assert stale_after(beat(tick_seconds=20), 30) == 60
    assert stale_after(beat(tick_seconds="soon"), 30) == 30
    assert stale_after(beat(), 30) == 30
    later = T0 + timedelta(seconds=90)
    market = datetime(2024, 8, 1, tzinfo=UTC)
    assert engine_clock(None, beat(market_time=market.isoformat()), later) == market + timedelta(
        seconds=90
    )
    assert engine_clock(_valuation(at=market), beat(), later) == market + timedelta(seconds=90)
    assert engine_clock(None, beat(market_time="not a time"), later) == later
    assert engine_clock(None, None, later) == later
