"""The engine end to end on the paper exchange over real recorded candles, on both stores."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tradelib.config import load_settings
from tradelib.domain import Mode, OrderStatus
from tradelib.engine import Engine
from tradelib.engine.replay import event_windows, replay_windows
from tradelib.errors import ExchangeUnavailable
from tradelib.exchange.base import BookSnapshot
from tradelib.exchange.paper import PaperExchange
from tradelib.exchange.paper_data import ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.orders import set_halt
from tradelib.risk import Breaker
from tradelib.store import Store
from tradelib.strategy.calendar import UnlockCalendar, load_calendar
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy

DATA = Path(__file__).resolve().parents[2] / "data"
PARAMS = TokenUnlockParams(direction="spot", days_after=4.0)
BAR = timedelta(hours=1)


def _arb_calendar() -> UnlockCalendar:
    full = load_calendar()
    events = [e for e in full.events if e.symbol == "ARB" and e.unlock_time.year == 2024][:2]
    return UnlockCalendar(events, full.known_symbols)


def _engine(store: Store, calendar: UnlockCalendar, exchange_id: str = "replay-test"):  # type: ignore[no-untyped-def]
    windows = event_windows(list(calendar.events), PARAMS, BAR)
    replay = ReplayMarket.from_data_dir(
        DATA, start=windows[0].start - BAR * 48, symbols=["ARB/USDT"]
    )
    paper = PaperExchange(
        ReplayMarketData(replay), balances={"USDT": Decimal(10_000)}, exchange_id=exchange_id
    )
    settings = load_settings(store_url=store.url)
    engine = Engine(
        settings, store, paper, TokenUnlockStrategy(PARAMS, calendar), symbols=[],
        clock=lambda: replay.now, history=24 * 7,
    )  # fmt: skip
    return engine, paper, windows


async def test_engine_trades_each_event_once_and_persists_everything(store: Store) -> None:
    calendar = _arb_calendar()
    engine, paper, windows = _engine(store, calendar)
    reports = await replay_windows(engine, paper, windows, reset_breakers=True)
    await paper.close()
    orders = store.list_orders(mode=Mode.PAPER, exchange="replay-test")
    entries = [o for o in orders if not o.reduce_only and o.status is OrderStatus.FILLED]
    exits = [o for o in orders if o.reduce_only and o.status is OrderStatus.FILLED]
    assert len(entries) == len(calendar.events) == 2
    assert len(exits) == 2
    for event, entry in zip(calendar.events, entries, strict=True):
        # the spot variant buys the first candle closing 24 h after the unlock
        assert entry.created_at == event.unlock_time + timedelta(hours=24)
        assert entry.quantity * entry.average_price <= Decimal(10_000) * Decimal("0.2") * Decimal(
            "1.01"
        )  # at most 20 % of equity (+ rounding and the slippage band)
    closed = store.list_positions(Mode.PAPER, include_closed=True, exchange="replay-test")
    assert [p.status.value for p in closed] == ["closed", "closed"]
    state = store.load_execution_state("token_unlock", Mode.PAPER)
    assert state is not None and state.total_trades == 2
    assert state.winning_trades + state.losing_trades == 2
    assert sum((p.realized_pnl for p in closed), Decimal(0)) == state.total_pnl
    balances = await paper.fetch_balances()
    assert balances["USDT"].total == Decimal(10_000) + state.total_pnl
    # One order path: entries and exits alike are risk decisions, and each order sent is the
    # one its decision allowed (its quantity, a limit IOC at its tick-rounded band edge).
    decisions = [e.payload for e in store.list_events(kind="risk_decision")]
    assert [d["kind"] for d in decisions] == ["entry", "exit", "entry", "exit"]
    assert [(Decimal(d["quantity"]), Decimal(d["limit_price"])) for d in decisions] == [
        (o.quantity, o.price) for o in orders
    ]
    assert all(o.time_in_force.value == "IOC" for o in orders)
    assert all(o.price is not None and o.price % Decimal("0.0001") == 0 for o in orders)
    assert any(r.orders for r in reports)


async def test_exits_still_leave_when_the_order_book_cannot_be_read(store: Store) -> None:
    calendar = _arb_calendar()
    engine, paper, windows = _engine(store, calendar)

    async def unreachable(symbol: str, limit: int = 100) -> BookSnapshot:
        raise ExchangeUnavailable(f"depth of {symbol}: 503 from the exchange")

    paper.fetch_order_book = unreachable  # type: ignore[method-assign]
    await replay_windows(engine, paper, windows, reset_breakers=True)
    await paper.close()
    exits = [o for o in store.list_orders(exchange="replay-test") if o.reduce_only]
    assert [o.status for o in exits] == [OrderStatus.FILLED] * 2
    assert all(o.type.value == "limit" and o.time_in_force.value == "IOC" for o in exits)
    decisions = [e.payload for e in store.list_events(kind="risk_decision")]
    blind = [d for d in decisions if d["kind"] == "exit"]
    assert len(blind) == 2
    assert all(any("order book not known" in r for r in d["reasons"]) for d in blind)


async def test_a_restarted_engine_sends_nothing_twice(store: Store) -> None:
    calendar = _arb_calendar()
    engine, paper, windows = _engine(store, calendar)
    first = windows[0]
    await paper.advance_to(first.start)
    engine.symbols[:] = list(first.symbols)
    engine.candles.symbols = list(first.symbols)
    while not store.list_orders(exchange="replay-test"):
        assert paper.source.now() < first.end, "the entry never came"
        await paper.advance_to(paper.source.now() + BAR)
        await engine.run_once()
    assert len(store.list_orders(exchange="replay-test")) == 1
    # A new engine on the same store and venue (a restart) replays the same hour.
    again = Engine(
        engine.settings, store, paper, TokenUnlockStrategy(PARAMS, calendar),
        symbols=list(first.symbols), clock=engine.clock, history=24 * 7,
    )  # fmt: skip
    await again.run_once()
    assert len(store.list_orders(exchange="replay-test")) == 1
    assert len(again.positions.positions()) == 1
    await paper.close()


async def test_a_failed_reconciliation_halts_the_cycle(store: Store) -> None:
    engine, paper, _ = _engine(store, _arb_calendar())
    await engine.start()
    set_halt(store, "test: exchange disagreed", paper.source.now(), "test")
    report = await engine.run_once()  # the halt is lifted only by a successful reconcile
    assert report.halted is None
    assert store.get_control("trading_halt") == {"halted": False, "reason": None}
    await paper.close()


async def test_kill_switch_stops_the_engine_cycle(store: Store) -> None:
    engine, paper, _ = _engine(store, _arb_calendar())
    engine.control.engage_kill("test", "manual stop before trading")
    report = await engine.run_once()
    assert report.halted == "kill switch engaged"
    assert report.orders == []
    await paper.close()


@pytest.mark.slow
def test_demo_command_runs_and_writes_its_report(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "PATH": subprocess.os.environ["PATH"]}
    result = subprocess.run(
        ["tradelib", "demo", "--events", "5", "--no-backtest", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 unlock events" in result.stdout
    assert "total_return_pct" in result.stdout
    [report] = list(tmp_path.glob("demo-*-run-*.html"))
    text = report.read_text()
    assert "Summary" in text and "plotly" in text.lower()
    assert (tmp_path / "state" / "tradelib" / "tradelib.duckdb").exists()


async def test_candles_ahead_of_the_clock_are_not_fresh(store: Store) -> None:
    engine, paper, windows = _engine(store, _arb_calendar())
    await paper.advance_to(windows[0].start)
    engine.symbols[:] = ["ARB/USDT"]
    engine.candles.symbols = ["ARB/USDT"]
    report = await engine.run_once()
    assert report.halted is None and not engine.control.breaker_state().any_tripped
    now = paper.source.now()
    assert engine.fresh_at("ARB/USDT", now) == now  # the newest candle closed: fresh
    engine.clock = lambda: now - timedelta(hours=3)  # the clock is set back three hours
    await engine.run_once()
    trip = engine.control.breaker_state().tripped.get(Breaker.STALE_DATA)
    assert trip is not None and "ARB/USDT market data is stamped" in trip.reason
    assert "in the future" in trip.reason
    await paper.close()
