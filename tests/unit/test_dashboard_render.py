"""What the dashboard draws: colours that mean something, aligned numbers, escaped text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tradelib.config import RiskSettings
from tradelib.domain import Mode, Side
from tradelib.operations import ModeRequest, PauseState
from tradelib.risk import Breaker, KillSwitchState, Trip
from tradelib.store import Liveness
from widgets.fmt import age, age_coarse, money, pct, price, qty
from widgets.model import (
    Account,
    BalanceRow,
    BalancesView,
    EngineView,
    Metric,
    PositionRow,
    StatusView,
    Verdict,
)
from widgets.render import (
    Connection,
    render_balances,
    render_kill_bar,
    render_metrics,
    render_positions,
    render_problems,
    render_status,
)

T0 = datetime(2024, 8, 1, 12, tzinfo=UTC)
D = Decimal


def _row(symbol: str, pnl: str | None, strategy: str = "unlock") -> PositionRow:
    value = None if pnl is None else D(pnl)
    return PositionRow(
        strategy=strategy, symbol=symbol, side=Side.BUY, quantity=D("1234.5"), entry=D("0.6613"),
        price=D("0.7"), unrealised=value, unrealised_pct=value, stop=D("0.648"),
        target=None, trailing=None, opened_at=T0, age=timedelta(hours=2, minutes=5),
    )  # fmt: skip


def test_number_formats_are_fixed_width_and_signed() -> None:
    assert money(D("-1234.5"), signed=True) == "−1,234.50"
    assert money(D("1234.5"), signed=True) == "+1,234.50"
    assert money(D("-0.001")) == "0.00"  # no "−0.00"
    assert pct(D("12.346")) == "12.35 %" and pct(None) == "—"
    assert [price(D(v)) for v in ("61234.5", "12.5", "0.6613", "0.0123", "0.00001234")] == [
        "61,234.50", "12.500", "0.6613", "0.012300", "0.00001234",
    ]  # fmt: skip
    assert qty(D("1234.50000000")) == "1,234.5" and qty(D("5827.32451386"), 2) == "5,827.32"
    assert age(timedelta(days=2, hours=3, minutes=4)) == "2d 03h"
    assert age(timedelta(minutes=7, seconds=9)) == "7m 09s"
    assert age_coarse(timedelta(minutes=7, seconds=9)) == "7m" and age_coarse(timedelta(0)) == "<1m"


def test_positions_colour_pnl_by_sign_and_escape_names() -> None:
    html = render_positions(
        [_row("ARB/USDT", "12.5"), _row("OP/USDT", "-3"), _row("X", None, "<b>x</b>")], "USDT"
    )
    arb = html[html.index('data-symbol="ARB/USDT"') :]
    assert '<span class="tl-up">+12.50</span>' in arb.split("</tr>")[0]
    op = html[html.index('data-symbol="OP/USDT"') :]
    assert '<span class="tl-down">−3.00</span>' in op.split("</tr>")[0]
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert '<td class="tl-num">1,234.5</td>' in html  # sizes right-aligned, tabular
    assert "3 open" in html and "+9.50" in html  # the total of the known P&L
    assert "864.15" in html and "2,592.45" in html  # 1,234.5 × 0.7 each, and in total
    assert "2h 05m" in html
    assert "No open position." in render_positions([], "USDT")


def _status(**changes: object) -> StatusView:
    values: dict[str, object] = {
        "account": Account("binance", Mode.PAPER, "unlock"),
        "engine": EngineView(Mode.PAPER, "binance", "unlock", "running", Liveness.ALIVE, 7,
                             "vm", T0, T0, T0, 12, timedelta(seconds=2)),
        "engines": (), "kill": KillSwitchState(), "trips": (), "halt": None,
        "pause": PauseState(), "mode_request": None, "limits": RiskSettings(),
    }  # fmt: skip
    values.update(changes)
    return StatusView(**values)  # type: ignore[arg-type]


def test_status_says_paper_or_live_unmistakably() -> None:
    ok = Connection(True, T0)
    paper = render_status(_status(), T0, ok)
    assert "tl-mode-paper" in paper and "simulated money" in paper and "ENGINE ALIVE" in paper
    live = render_status(_status(account=Account("binance", Mode.LIVE)), T0, ok)
    assert "tl-mode-live" in live and "REAL MONEY" in live
    asked = ModeRequest(Mode.LIVE, "ann", "go", T0, D(300), {}, T0 + timedelta(minutes=5))
    pending = render_status(_status(mode_request=asked), T0 + timedelta(minutes=1), ok)
    assert "LIVE REQUESTED" in pending and "cap $300.00" in pending


def test_kill_switch_breakers_halt_pause_and_store_trouble_are_shown_in_red_or_amber() -> None:
    kill = KillSwitchState(True, T0, "ann", "news <now>", flatten=True)
    status = _status(
        kill=kill, trips=(Trip(Breaker.DAILY_LOSS, T0, "lost 5 %"),), halt="venue disagreed",
        pause=PauseState(True, T0, "bob", "lunch"),
    )  # fmt: skip
    down = Connection(False, T0, "lost PostgreSQL", T0 + timedelta(seconds=3))
    html = render_status(status, T0, down)
    for text in ("KILL SWITCH ON", "1 BREAKER(S) TRIPPED", "daily_loss", "RECONCILIATION HALT",
                 "ENTRIES PAUSED", "STORE UNREACHABLE"):  # fmt: skip
        assert text in html
    bar = render_kill_bar(status)
    assert "KILL SWITCH ENGAGED" in bar and "news &lt;now&gt;" in bar
    assert "close every position" in bar
    assert render_kill_bar(_status()) == ""
    assert "lost PostgreSQL" in render_problems(down, ("bad overrides",))
    assert "bad overrides" in render_problems(Connection(True, T0), ("bad overrides",))


def test_metric_cards_mark_met_and_missed_targets() -> None:
    html = render_metrics([
        Metric("win_rate", "Win rate", D("33.3"), "pct", "target > 40 %", Verdict.MISSED),
        Metric("sharpe", "Sharpe", D("1.4"), "ratio", "target > 1", Verdict.MET),
        Metric("daily_pnl", "Daily P&L", D(-20), "usd", "within limit −5 %", Verdict.MET),
    ])  # fmt: skip
    assert 'class="tl-metric tl-missed" data-metric="win_rate"' in html
    assert "✗ target &gt; 40 %" in html and "✓ target &gt; 1" in html
    assert '<span class="tl-down">−20.00</span>' in html and "Daily P&amp;L" in html


def test_balances_flag_a_reserve_below_its_floor() -> None:
    view = BalancesView(
        rows=(BalanceRow("ARB", D(900), D(0), D(900), False),
              BalanceRow("USDT", D(100), D(0), D(100), True)),
        total_usd=D(1000), stable_usd=D(100), reserve_floor_pct=D(20), min_balance_usd=D(100),
        source="engine", as_of=T0,
    )  # fmt: skip
    html = render_balances(view)
    assert "BELOW FLOOR" in html and "10.00 %" in html and "$1,000.00" in html
    assert 'style="left:20.0%"' in html  # the floor marker on the meter


def test_the_pnl_chart_draws_equity_daily_pnl_and_the_limit_and_redraws_only_on_change() -> None:
    from widgets.charts import PnlChart
    from widgets.model import EquityPoint, PnlView

    points = (
        EquityPoint(T0, D(10_000), D(0)),
        EquityPoint(T0 + timedelta(hours=1), D(9_900), D(-100)),
        EquityPoint(T0 + timedelta(hours=2), D(9_950)),  # a close without a daily figure
    )
    view = PnlView(points, D(-500), D(-400), D(-100), D(10_000))
    chart = PnlChart()
    assert chart.update(view) is True
    equity, daily, limit, alert = chart.figure.data
    assert list(equity.y) == [10_000.0, 9_900.0, 9_950.0]
    assert list(daily.y) == [0.0, -100.0] and daily.line.color == "#cf222e"  # in the red
    assert list(limit.y) == [-500.0, -500.0] and list(limit.x) == [T0, T0 + timedelta(hours=2)]
    assert list(alert.y) == [-400.0, -400.0]
    assert chart.update(view) is False  # same data: the figure is not touched
    assert chart.update(PnlView((), None, None, None, None)) is True
    assert list(chart.figure.data[2].y) == []
