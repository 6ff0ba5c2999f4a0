"""The dashboard on real stores: what it reads, that it redraws only what changed, that it
keeps the person's filters, and that it says so when the store goes away and recovers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import PG_URL, require_postgres
from tcp_proxy import TcpProxy

from tradelib.config import Settings
from tradelib.control import KILL_CONTROL
from tradelib.domain import (
    Balance,
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
from tradelib.errors import ConfigError
from tradelib.operations.valuation import HEARTBEAT_KEY, AccountValuation
from tradelib.store import EngineState, ExecutionState, HeartbeatRecord, Store, open_store
from widgets import Dashboard
from widgets.data import DashboardSource
from widgets.model import HistoryFilter
from widgets.snapshot import SampleBook

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OPENED = datetime(2024, 8, 1, 1, tzinfo=UTC)  # a replay: the engine's clock is the data's
S = StrategyId("unlock")


def _order(n: int, symbol: str, status: OrderStatus, price: str) -> Order:
    return Order(
        client_order_id=ClientOrderId(f"tl-dash-{n}"), symbol=symbol, side=Side.BUY,
        type=OrderType.LIMIT, quantity=Decimal(100), created_at=OPENED + timedelta(hours=n),
        price=Decimal(price), status=status, strategy_id=S, exchange="binance", mode=Mode.PAPER,
    )  # fmt: skip


def _valuation(arb: str = "0.62", at: datetime = OPENED + timedelta(hours=10)) -> AccountValuation:
    return AccountValuation(
        at=at, equity_usd=Decimal("10012.5"), cash_usd=Decimal(8000),
        stablecoin_usd=Decimal(8000), unrealised_usd=Decimal(20), daily_pnl_usd=Decimal(-42),
        day_start_equity_usd=Decimal("10054.5"), peak_equity_usd=Decimal(10100),
        marks={"ARB/USDT": Decimal(arb), "OP/USDT": Decimal("1.5")},
        prices_usd={"ARB": Decimal(arb), "OP": Decimal("1.5")},
        balances={"USDT": (Decimal(7990), Decimal(10)), "ARB": (Decimal(1000), Decimal(0)),
                  "OP": (Decimal(800), Decimal(0))},
    )  # fmt: skip


def _beat(store: Store, valuation: AccountValuation, at: datetime = NOW) -> None:
    store.beat(HeartbeatRecord(
        mode=Mode.PAPER, exchange="binance", strategy=S, state=EngineState.RUNNING, pid=7,
        host="box", started_at=at - timedelta(hours=1), beat_at=at, last_cycle_at=at, cycles=9,
        detail={HEARTBEAT_KEY: valuation.to_detail()},
    ))  # fmt: skip


def _seed(store: Store) -> None:
    store.ensure_strategy(S, {})
    for symbol, entry in (("ARB/USDT", "0.6"), ("OP/USDT", "1.6")):
        store.upsert_position(Position(
            strategy_id=S, exchange="binance", symbol=symbol, side=Side.BUY,
            quantity=Decimal(1000 if symbol == "ARB/USDT" else 800), average_entry=Decimal(entry),
            opened_at=OPENED, stop_loss=Decimal(entry) * Decimal("0.98"), mode=Mode.PAPER,
        ), current_price=Decimal(entry), at=OPENED)  # fmt: skip
    store.upsert_position(Position(
        strategy_id=S, exchange="binance", symbol="SUI/USDT", side=Side.BUY, quantity=Decimal(10),
        average_entry=Decimal(1), opened_at=OPENED, status=PositionStatus.CLOSED,
        realized_pnl=Decimal(12), closed_at=OPENED + timedelta(hours=3), mode=Mode.PAPER,
    ), at=OPENED)  # fmt: skip
    for n, symbol, status, price in (
        (1, "ARB/USDT", OrderStatus.FILLED, "0.6"), (2, "OP/USDT", OrderStatus.FILLED, "1.6"),
        (3, "ARB/USDT", OrderStatus.OPEN, "0.3"), (4, "SUI/USDT", OrderStatus.CANCELLED, "1"),
    ):  # fmt: skip
        store.insert_order(_order(n, symbol, status, price))
    store.upsert_balance(Balance("binance", "USDT", Decimal(5)), Mode.PAPER)  # stale, reconciled
    store.save_execution_state(ExecutionState(
        strategy=S, mode=Mode.PAPER, total_trades=3, winning_trades=2, losing_trades=1,
        total_pnl=Decimal(12), peak_equity=Decimal(10100), max_drawdown=Decimal("1.2"),
        state={"daily_equity": {"2024-07-31": "10000"}}, updated_at=OPENED,
    ))  # fmt: skip
    alert = {"kind": "breaker_tripped", "severity": "critical", "message": "api_errors tripped"}
    store.append_event("alert", alert, OPENED, "alerts")
    store.append_event("cycle", {"equity_usd": "10030"}, OPENED + timedelta(hours=2), "engine")
    _beat(store, _valuation())


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # a safety net against hangs, not a timing assertion
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _refresh_until(dash: Dashboard, condition: Callable[[], bool]) -> None:
    """Refresh until `condition` holds: PostgreSQL's change notice arrives a moment later."""
    _until(lambda: (dash.refresh(), condition())[1], "the dashboard to show the change")


def test_a_snapshot_reads_the_engines_view_of_the_account(store: Store) -> None:
    _seed(store)
    source = DashboardSource(store, Settings(store_url="duckdb:///:memory:"))
    snap = source.read(HistoryFilter(page_size=3), SampleBook(), NOW)
    assert snap.status.account.mode is Mode.PAPER and snap.status.account.strategy == S
    assert snap.status.engine_alive
    arb, op = snap.positions
    assert arb.price == Decimal("0.62") and arb.unrealised == Decimal(20)  # the engine's mark
    assert op.unrealised == Decimal(-80)
    assert arb.age == timedelta(hours=10)  # on the engine's (replay) clock, not the wall's
    assert snap.balances.source == "engine"  # the store's balance is from the last reconcile
    assert snap.balances.total_usd == Decimal(8000) + Decimal(620) + Decimal(1200)
    assert [o.client_order_id for o in snap.open_orders] == ["tl-dash-3"]
    assert snap.history.total == 4 and len(snap.history.rows) == 3
    assert [a.message for a in snap.alerts] == ["api_errors tripped"]
    metrics = {m.key: m for m in snap.metrics}
    assert metrics["trades"].value == 3 and metrics["daily_pnl"].value == Decimal(-42)
    assert [p.equity for p in snap.pnl.points] == [Decimal(10000), Decimal(10030),
                                                   Decimal("10012.5")]  # fmt: skip


def test_the_dashboard_redraws_only_what_changed_and_keeps_the_filters(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        _seed(store)
        clock = [NOW]
        dash = Dashboard(store_url, settings=Settings(store_url=store_url), operator="ann",
                         clock=lambda: clock[0], start=False)  # fmt: skip
        try:
            changes: dict[str, int] = {}
            for name, widget in dash.sections.items():
                widget.observe(lambda _, n=name: changes.__setitem__(n, changes.get(n, 0) + 1),
                               names="value")  # fmt: skip
            dash.refresh()
            assert dash.connection.ok
            positions = dash.sections["positions"].value
            assert 'data-symbol="ARB/USDT"' in positions and "+20.00" in positions
            assert "ENGINE ALIVE" in dash.sections["status"].value
            changes.clear()
            dash.refresh()  # nothing changed in the store
            assert changes == {}, "a refresh without news must not redraw"

            _beat(store, _valuation(arb="0.65"))
            _refresh_until(dash, lambda: "+50.00" in dash.sections["positions"].value)
            assert set(changes) == {"positions", "balances"}  # equity kept: metrics did not move
            assert "+50.00" in dash.sections["positions"].value

            dash.history.symbol.value = "ARB/USDT"  # a person picks a filter
            dash.refresh()
            table = dash.sections["history"].value
            assert "tl-dash-1" in table and "tl-dash-3" in table and "tl-dash-2" not in table
            store.insert_order(_order(5, "ETH/USDT", OrderStatus.OPEN, "3000"))
            # new data, new symbol choices: the person's pick stays
            _refresh_until(dash, lambda: "ETH/USDT" in dash.history.symbol.options)
            assert dash.history.symbol.value == "ARB/USDT"
            assert "ETH/USDT" in dash.history.symbol.options
            assert "tl-dash-5" not in dash.sections["history"].value

            kill = {"engaged": True, "since": NOW.isoformat(), "by": "bob", "reason": "test"}
            store.set_control(KILL_CONTROL, kill, NOW, "bob")
            _refresh_until(dash, lambda: "KILL SWITCH ENGAGED" in dash.sections["kill"].value)
            assert "KILL SWITCH ON" in dash.sections["status"].value
            clock[0] = NOW + timedelta(minutes=2)  # the engine stops beating
            dash.refresh()
            assert "ENGINE STALE" in dash.sections["status"].value
        finally:
            dash.close()


def test_an_unreachable_store_is_said_and_recovers(tmp_path: Any) -> None:
    require_postgres()
    parts = urlsplit(PG_URL)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.restore()
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    schema = f"tl_dash_{datetime.now(UTC).strftime('%H%M%S%f')}"
    url = urlunsplit((parts.scheme, netloc, parts.path, f"schema={schema}", ""))
    dash = Dashboard(url, settings=Settings(store_url=url), start=False)
    try:
        with open_store(url) as store:
            _seed(store)
        dash.refresh()
        assert dash.connection.ok and dash.snapshot is not None
        proxy.cut()
        dash.refresh()
        assert not dash.connection.ok
        assert "PostgreSQL" in (dash.connection.error or "")
        status = dash.sections["status"].value
        assert "STORE UNREACHABLE" in status
        assert 'data-symbol="ARB/USDT"' in dash.sections["positions"].value  # last data stays
        assert "Store unreachable" in dash.sections["problems"].value
        proxy.restore()
        # The first read may still meet a connection that died with the cut; the follower
        # reads again a second later. Here the test reads again at once.
        _refresh_until(dash, lambda: dash.connection.ok)
        assert "STORE OK" in dash.sections["status"].value
        assert dash.sections["problems"].value == ""
    finally:
        dash.close()
        proxy.cut()
        from conftest import drop_schema

        drop_schema(schema)


def test_a_store_object_must_be_the_configured_one(store: Store, store_url: str) -> None:
    with pytest.raises(ConfigError, match="emergency stop opens its own handle"):
        Dashboard(store, settings=Settings(store_url="duckdb:///elsewhere.duckdb"), start=False)
    dash = Dashboard(store, settings=Settings(store_url=store_url), start=False)
    dash.refresh()
    assert dash.connection.ok
    dash.close()
    assert store.list_controls() == []  # the dashboard did not close a store it did not open


def test_the_store_is_read_again_only_when_its_change_token_moved(store: Store) -> None:
    _seed(store)
    source = DashboardSource(store, Settings(store_url="duckdb:///:memory:"))
    samples, wanted = SampleBook(), HistoryFilter()
    first = source.read(wanted, samples, NOW)
    again = source.read(wanted, samples, NOW + timedelta(seconds=1))
    assert source.reads == 1  # nothing was written: the same reading, judged a second later
    assert [p.unrealised for p in again.positions] == [p.unrealised for p in first.positions]
    assert again.positions[0].age == first.positions[0].age + timedelta(seconds=1)
    assert again.status.engine_alive
    stale = source.read(wanted, samples, NOW + timedelta(minutes=5))
    assert source.reads == 1 and not stale.status.engine_alive  # the clock alone says so
    source.read(HistoryFilter(symbol="OP/USDT"), samples, NOW)
    assert source.reads == 2  # the person asked for other rows
    store.set_control("unrelated", {"x": 1}, NOW, "test")
    _until(lambda: (source.read(HistoryFilter(symbol="OP/USDT"), samples, NOW), source.reads)[1]
           == 3, "a write by anyone to move the token")  # fmt: skip


def test_a_dashboard_beside_an_engine_in_this_kernel_follows_its_account(store_url: str) -> None:
    from tradelib.config import load_settings
    from tradelib.engine import Engine
    from tradelib.exchange.paper import PaperExchange
    from tradelib.exchange.paper_data import ReplayMarketData
    from tradelib.exchange.replay import ReplayMarket
    from tradelib.strategy.calendar import load_calendar
    from tradelib.strategy.params import TokenUnlockParams
    from tradelib.strategy.token_unlock import TokenUnlockStrategy

    with open_store(store_url) as store:
        settings = load_settings(store_url=store_url, mode="live", live_capital_usd="250")
        replay = ReplayMarket.from_data_dir(settings.data_dir, symbols=["ARB/USDT"])
        venue = PaperExchange(ReplayMarketData(replay), exchange_id="rehearsal")
        strategy = TokenUnlockStrategy(TokenUnlockParams(), load_calendar())
        engine = Engine(settings, store, venue, strategy, symbols=["ARB/USDT"],
                        clock=lambda: replay.now)  # fmt: skip
        dash = Dashboard(engine=engine, start=False)
        try:
            assert (dash.exchange, dash.mode, dash.strategy) == ("rehearsal", Mode.LIVE,
                                                                 strategy.strategy_id)  # fmt: skip
            dash.refresh()
            snap = dash.snapshot
            assert snap is not None and snap.status.account.mode is Mode.LIVE
            assert snap.status.account.exchange == "rehearsal"
            assert snap.status.live_capital_usd == Decimal(250)
            assert "tl-frame-live" in dash.widget._dom_classes
        finally:
            dash.close()
