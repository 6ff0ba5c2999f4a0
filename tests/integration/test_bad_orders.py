"""Malformed orders never leave a pending row, and `tradelib reconcile` repairs what a person can.

Issue 16 item 1: a mistyped symbol used to write a pending row before the symbol was checked;
every reconciliation after that failed on it and halted trading for good. Item 5: a NaN, a
float or a -0 in an order gave a traceback (and, for a float price, a pending row).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tradelib.cli import app
from tradelib.domain import ClientOrderId, Mode, Order, OrderStatus, OrderType, Side, StrategyId
from tradelib.errors import DataError, InvalidOrder, TradelibError, UnknownSymbol
from tradelib.exchange.base import OrderRequest
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.paper import PaperExchange
from tradelib.exchange.paper_data import ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.orders import ExecutionRequest, OrderExecutor, Reconciler, halt_reason, set_halt
from tradelib.store import EngineState, HeartbeatRecord, Store, open_store
from tradelib.testing.binance_emulator import BinanceEmulator

DATA = Path(__file__).resolve().parents[2] / "data"
START = datetime(2024, 3, 10, tzinfo=UTC)
SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("token_unlock")
runner = CliRunner()


def _replay_paper() -> PaperExchange:
    replay = ReplayMarket.from_data_dir(DATA, start=START, symbols=[SYMBOL])
    return PaperExchange(ReplayMarketData(replay), balances={"USDT": Decimal(10_000)})


@pytest.fixture
async def paper() -> AsyncIterator[PaperExchange]:
    exchange = _replay_paper()
    yield exchange
    await exchange.close()


def _executor(store: Store, exchange: Any, exchange_id: str, mode: Mode) -> OrderExecutor:
    store.ensure_strategy(STRATEGY, {})
    return OrderExecutor(
        store, exchange, exchange_id=exchange_id, mode=mode, clock=lambda: datetime.now(UTC)
    )


def _pending(store: Store) -> list[Order]:
    return store.list_orders(statuses=[OrderStatus.PENDING])


async def test_a_mistyped_symbol_writes_nothing_and_halts_nothing(
    store: Store, paper: PaperExchange
) -> None:
    executor = _executor(store, paper, "binance", Mode.PAPER)
    request = ExecutionRequest(STRATEGY, "ARBB/USDT", Side.BUY, Decimal(100), "entry-typo")
    with pytest.raises(UnknownSymbol, match=r"'ARBB/USDT' is not listed on binance.*not written"):
        await executor.submit(request)
    assert store.list_orders() == []
    await Reconciler(executor, lambda: [SYMBOL]).run()  # nothing to trip over
    assert halt_reason(store) is None


async def test_an_order_below_the_market_minimums_writes_nothing(
    store: Store, paper: PaperExchange
) -> None:
    executor = _executor(store, paper, "binance", Mode.PAPER)
    dust = ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, Decimal("0.01"), "dust")
    with pytest.raises(InvalidOrder, match=r"refused before it was written.*LOT_SIZE"):
        await executor.submit(dust)
    tiny = ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, Decimal(2), "tiny", type=OrderType.LIMIT,
                            price=Decimal("0.5"))  # fmt: skip
    with pytest.raises(InvalidOrder, match="NOTIONAL"):
        await executor.submit(tiny)
    assert store.list_orders() == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("quantity", Decimal("NaN"), "quantity must be finite"),
        ("quantity", Decimal("-0"), "quantity must be greater than 0"),
        ("quantity", 1.5, "not float 1.5: pass Decimal"),
        ("price", Decimal("NaN"), "price must be finite"),
        ("price", 0.5, "not float 0.5"),
        ("price", Decimal("-0"), "price must be greater than 0"),
        ("stop_price", Decimal("Infinity"), "stop_price must be finite"),
    ],
)
def test_non_finite_float_and_negative_zero_numbers_are_refused_clearly(
    field: str, value: object, message: str
) -> None:
    fields: dict[str, Any] = {"quantity": Decimal(100), "price": Decimal("0.9")}
    fields[field] = value
    with pytest.raises(DataError, match=message):
        ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, intent_key="k", type=OrderType.LIMIT,
                         **fields)  # fmt: skip
    if field == "stop_price":
        return  # the wire order carries no stop
    with pytest.raises(DataError, match=message):  # the last check before any venue
        OrderRequest(ClientOrderId("tl-x"), SYMBOL, Side.BUY, OrderType.LIMIT, **fields)


_NUMBERS = st.one_of(
    st.sampled_from([Decimal("NaN"), Decimal("-0"), Decimal(0), Decimal(-1), Decimal("sNaN"),
                     Decimal("Infinity"), Decimal("1E-12"), Decimal("1E+15"), 0.5, "abc", None,
                     True]),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(100_000), places=4),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    symbol=st.sampled_from([SYMBOL, "ARBB/USDT", "arb/usdt", "ARB-USDT", " "]),
    side=st.sampled_from(list(Side)),
    order_type=st.sampled_from(list(OrderType)),
    quantity=_NUMBERS,
    price=_NUMBERS,
)
def test_random_malformed_requests_never_leave_a_pending_row(
    symbol: str, side: Side, order_type: OrderType, quantity: Any, price: Any
) -> None:
    async def attempt() -> None:
        exchange = _replay_paper()
        store = open_store("duckdb:///:memory:")
        try:
            executor = _executor(store, exchange, "binance", Mode.PAPER)
            try:
                request = ExecutionRequest(
                    STRATEGY, symbol, side, quantity, "random",
                    type=order_type, price=price if order_type is OrderType.LIMIT else None,
                )  # fmt: skip
                await executor.submit(request)
            except TradelibError:
                pass  # refused with a tradelib error: fine, as long as nothing is left behind
            assert _pending(store) == []
        finally:
            await exchange.close()
            store.close()

    asyncio.run(attempt())


async def test_on_the_emulator_too_a_refused_order_leaves_no_pending_row(store: Store) -> None:
    emulator = BinanceEmulator(balances={"USDT": Decimal(10_000)}, symbols=[SYMBOL])
    await emulator.start()
    venue = CcxtExchange("binance", api_key=emulator.api_key, api_secret=emulator.api_secret,
                         base_url=emulator.base_url)  # fmt: skip
    try:
        executor = _executor(store, venue, "binance", Mode.LIVE)
        for request in (
            ExecutionRequest(STRATEGY, "ARBB/USDT", Side.BUY, Decimal(100), "typo"),
            ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, Decimal("0.001"), "dust"),
        ):
            with pytest.raises((UnknownSymbol, InvalidOrder)):
                await executor.submit(request)
        assert store.list_orders() == [] and emulator.orders() == []
    finally:
        await venue.close()
        await emulator.stop()


def _stuck_row(store: Store, symbol: str = "ARBB/USDT") -> ClientOrderId:
    """What the old executor left behind for a mistyped symbol: a pending row, never sent."""
    store.ensure_strategy(STRATEGY, {})
    coid = ClientOrderId("tl-mistyped-symbol-row")
    order = Order(coid, symbol, Side.BUY, OrderType.MARKET, Decimal(100),
                  datetime.now(UTC) - timedelta(hours=1), strategy_id=STRATEGY,
                  exchange="binance", mode=Mode.PAPER)  # fmt: skip
    store.insert_order(order, intent={"intent_key": "old-typo"})
    set_halt(store, "reconciliation failed: 'ARBB/USDT' is not a spot market", datetime.now(UTC),
             "reconciler")  # fmt: skip
    return coid


def test_reconcile_dry_run_shows_the_repair_and_changes_nothing(store_url: str) -> None:
    with open_store(store_url) as store:
        coid = _stuck_row(store)
        orders_before = store.list_orders()
        events_before = len(store.list_events(limit=1000))
    result = runner.invoke(app, ["reconcile", "--dry-run", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert "DRY RUN (nothing was written)" in result.output
    assert f"1 rejected  pending orders the exchange could never take: {coid}" in result.output
    assert "trading halt would be lifted" in result.output
    with open_store(store_url) as store:
        assert store.list_orders() == orders_before
        assert len(store.list_events(limit=1000)) == events_before
        assert halt_reason(store) is not None

    result = runner.invoke(app, ["reconcile", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert "trading halt lifted" in result.output
    with open_store(store_url) as store:
        row = store.get_order(coid)
        assert row is not None and row.status is OrderStatus.REJECTED
        assert "never sendable" in (row.reason or "")
        assert halt_reason(store) is None
    killed = runner.invoke(app, ["kill", "--reason", "drill", "--store", store_url])
    assert killed.exit_code == 0, killed.output
    assert "FAILED" not in killed.output


def test_reconcile_refuses_while_an_engine_runs_the_account(store_url: str) -> None:
    now = datetime.now(UTC)
    with open_store(store_url) as store:
        _stuck_row(store)
        store.beat(HeartbeatRecord(Mode.PAPER, "binance", "token_unlock", EngineState.RUNNING,
                                   4242, "box", now, now))  # fmt: skip
    result = runner.invoke(app, ["reconcile", "--store", store_url])
    assert result.exit_code == 2
    assert "an engine runs the paper account on binance (pid 4242" in result.output
    with open_store(store_url) as store:
        assert [o.status for o in store.list_orders()] == [OrderStatus.PENDING]
    dry = runner.invoke(app, ["reconcile", "--dry-run", "--store", store_url])
    assert dry.exit_code == 0, dry.output
