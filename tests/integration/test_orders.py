"""OrderExecutor, PositionManager and reconciliation on both stores against the paper exchange.

Real parts only: a real store (DuckDB file / PostgreSQL schema), the real PaperExchange on
recorded ARB/USDT candles, the real ledger. Faults are made by doing what a crash would leave
behind (a pending row never sent, an order sent whose answer was never absorbed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tradelib.domain import (
    ClientOrderId,
    Mode,
    OrderStatus,
    OrderType,
    PositionStatus,
    Side,
    StrategyId,
)
from tradelib.errors import ExchangeUnavailable, OrderRejected, ReconciliationError
from tradelib.exchange.base import OrderRequest
from tradelib.exchange.paper import PaperExchange
from tradelib.exchange.paper_data import ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.orders import ExecutionRequest, OrderExecutor, Reconciler, halt_reason
from tradelib.position.exits import ExitRules
from tradelib.position.manager import PositionManager
from tradelib.store import Store

DATA = Path(__file__).resolve().parents[2] / "data"
START = datetime(2024, 3, 10, tzinfo=UTC)
SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("token_unlock")


@pytest.fixture
async def paper() -> AsyncIterator[PaperExchange]:
    replay = ReplayMarket.from_data_dir(DATA, start=START, symbols=[SYMBOL])
    exchange = PaperExchange(ReplayMarketData(replay), balances={"USDT": Decimal(10_000)})
    yield exchange
    await exchange.close()


def _wire(store: Store, exchange: PaperExchange) -> tuple[OrderExecutor, PositionManager]:
    store.ensure_strategy(STRATEGY, {"days_before": 3})
    clock = lambda: exchange.source.now()  # noqa: E731  (replay time, not wall time)
    positions = PositionManager(
        store, mode=Mode.PAPER, exchange_id="binance", exit_rules=ExitRules(), clock=clock
    )
    executor = OrderExecutor(
        store,
        exchange,
        exchange_id="binance",
        mode=Mode.PAPER,
        clock=clock,
        on_fill=positions.on_fill,
    )
    return executor, positions


def _buy(qty: str, key: str = "entry-1", **kw: object) -> ExecutionRequest:
    return ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, Decimal(qty), key, **kw)  # type: ignore[arg-type]


async def test_market_buy_is_written_filled_and_positioned_once(
    store: Store, paper: PaperExchange
) -> None:
    executor, _ = _wire(store, paper)
    order = await executor.submit(_buy("500"))
    assert order.status is OrderStatus.FILLED
    stored = store.get_order(order.client_order_id)
    assert stored == order
    fills = store.list_fills(client_order_id=order.client_order_id)
    assert sum(f.quantity for f in fills) == Decimal(500)
    assert store.get_order_intent(order.client_order_id)["intent_key"] == "entry-1"
    [position] = store.list_positions(Mode.PAPER)
    assert position.quantity == Decimal(500) and position.status is PositionStatus.OPEN
    assert position.stop_loss == position.average_entry * Decimal("0.98")
    # The same intent again (a restart re-evaluating the same candle) sends nothing.
    again = await executor.submit(_buy("500"))
    assert again.client_order_id == order.client_order_id
    assert len(await paper.fetch_my_trades(SYMBOL)) == len(fills)
    assert len(store.list_orders()) == 1


async def test_resting_limit_fills_partially_then_cancel_keeps_the_fills(store: Store) -> None:
    replay = ReplayMarket.from_data_dir(DATA, start=START, symbols=[SYMBOL])
    # Big enough that one crossing print's volume cannot fill it: a partial fill.
    paper = PaperExchange(ReplayMarketData(replay), balances={"USDT": Decimal(100_000_000)})
    executor, positions = _wire(store, paper)
    price = (await paper.fetch_ticker(SYMBOL)).last
    assert price is not None
    limit = (price * Decimal("0.97")).quantize(Decimal("0.0001"))
    order = await executor.submit(
        _buy(
            "20000000",
            key="dip",
            type=OrderType.LIMIT,
            price=limit,
            stop_price=limit * Decimal("0.9"),
        )
    )
    assert order.status is OrderStatus.OPEN
    for _ in range(72):  # three days of hourly candles, until real trades cross the price
        await paper.step()
        order = await executor.sync(order.client_order_id)
        if order.filled_quantity > 0:
            break
    assert Decimal(0) < order.filled_quantity < order.quantity, "expected a partial fill"
    cancelled = await executor.cancel(order.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.filled_quantity >= order.filled_quantity
    fills = store.list_fills(client_order_id=order.client_order_id)
    assert sum(f.quantity for f in fills) == cancelled.filled_quantity
    [position] = positions.positions()
    assert position.quantity == cancelled.filled_quantity
    assert position.stop_loss == limit * Decimal("0.9")  # the strategy's stop, not the default
    # The stop travels on the order itself: any process applying a later fill reads it there.
    assert store.get_order(order.client_order_id).stop_price == limit * Decimal("0.9")  # type: ignore[union-attr]
    exchange_balance = (await paper.fetch_balances())["ARB"].total
    assert exchange_balance == position.quantity
    await paper.close()


async def test_rejections_are_recorded_and_retried_a_bounded_number_of_times(
    store: Store, paper: PaperExchange
) -> None:
    executor, _ = _wire(store, paper)
    for _attempt in range(3):
        order = await executor.submit(_buy("1000000", key="too-big"))
        assert order.status is OrderStatus.REJECTED
        assert "USDT" in (order.reason or "")
    with pytest.raises(OrderRejected, match=r"3 attempt\(s\) refused by the exchange"):
        await executor.submit(_buy("1000000", key="too-big"))
    assert {o.status for o in store.list_orders()} == {OrderStatus.REJECTED}
    assert len(store.list_orders()) == 3


async def test_crash_before_send_expires_then_the_intent_is_sent_once(
    store: Store, paper: PaperExchange
) -> None:
    executor, _ = _wire(store, paper)
    pending, fresh = executor._claim(_buy("300", key="crash"))  # written, never sent
    assert fresh and pending.status is OrderStatus.PENDING
    report = await Reconciler(executor, lambda: [SYMBOL]).run()
    assert report.expired == [pending.client_order_id]
    assert store.get_order(pending.client_order_id).status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    order = await executor.submit(_buy("300", key="crash"))
    assert order.status is OrderStatus.FILLED
    assert order.client_order_id != pending.client_order_id
    assert len(await paper.fetch_my_trades(SYMBOL)) >= 1
    trades = await paper.fetch_my_trades(SYMBOL)
    assert {t.client_order_id for t in trades} == {order.client_order_id}


async def test_crash_after_send_is_resolved_from_the_exchange(
    store: Store, paper: PaperExchange
) -> None:
    executor, _ = _wire(store, paper)
    pending, _ = executor._claim(_buy("400", key="lost-answer"))
    # The order reached the exchange, but the process died before reading the answer.
    await paper.create_order(
        OrderRequest(pending.client_order_id, SYMBOL, Side.BUY, OrderType.MARKET, Decimal(400))
    )
    fresh_positions = PositionManager(
        store, mode=Mode.PAPER, exchange_id="binance", exit_rules=ExitRules(), clock=executor.clock
    )
    executor.on_fill = fresh_positions.on_fill
    report = await Reconciler(executor, lambda: [SYMBOL]).run()
    assert report.resolved == [pending.client_order_id]
    assert report.fills_recorded >= 1
    order = store.get_order(pending.client_order_id)
    assert order is not None and order.status is OrderStatus.FILLED
    [position] = store.list_positions(Mode.PAPER)
    assert position.quantity == Decimal(400)
    balances = store.list_balances(Mode.PAPER, exchange="binance")
    assert balances["ARB"].total == Decimal(400)
    assert balances["USDT"] == (await paper.fetch_balances())["USDT"]
    assert halt_reason(store) is None
    # a second reconciliation changes nothing
    again = await Reconciler(executor, lambda: [SYMBOL]).run()
    assert again.resolved == [] and again.fills_recorded == 0


async def test_orders_unknown_to_the_store_are_adopted(store: Store, paper: PaperExchange) -> None:
    executor, _ = _wire(store, paper)
    price = (await paper.fetch_ticker(SYMBOL)).last
    assert price is not None
    await paper.create_order(
        OrderRequest(
            ClientOrderId("manual-1"), SYMBOL, Side.BUY, OrderType.LIMIT, Decimal(100),
            price=(price * Decimal("0.5")).quantize(Decimal("0.0001")),
        )
    )  # fmt: skip
    report = await Reconciler(executor, lambda: [SYMBOL]).run()
    assert report.adopted == ["manual-1"]
    adopted = store.get_order(ClientOrderId("manual-1"))
    assert adopted is not None and adopted.status is OrderStatus.OPEN
    assert adopted.strategy_id == "adopted"
    assert [e.kind for e in store.list_events(kind="order_adopted")] == ["order_adopted"]


class _Down(PaperExchange):
    async def fetch_order(self, client_order_id: ClientOrderId, symbol: str):  # type: ignore[no-untyped-def]
        raise ExchangeUnavailable("binance did not answer within 10 s")


async def test_reconciliation_fails_closed_and_halts_trading(store: Store) -> None:
    replay = ReplayMarket.from_data_dir(DATA, start=START, symbols=[SYMBOL])
    down = _Down(ReplayMarketData(replay), balances={"USDT": Decimal(1000)})
    executor, _ = _wire(store, down)
    executor._claim(_buy("100", key="unknown"))
    with pytest.raises(ReconciliationError, match="Trading stays halted"):
        await Reconciler(executor, lambda: [SYMBOL]).run()
    reason = halt_reason(store)
    assert reason is not None and "did not answer" in reason
    await down.close()


async def test_positions_rebuilt_from_the_store_equal_the_live_ones(
    store: Store, paper: PaperExchange
) -> None:
    executor, positions = _wire(store, paper)
    await executor.submit(_buy("1000", key="a"))
    await paper.step(3)
    await executor.submit(_buy("500", key="b"))
    await paper.step(3)
    await executor.submit(
        ExecutionRequest(STRATEGY, SYMBOL, Side.SELL, Decimal(700), "c", reduce_only=True)
    )
    price = (await paper.fetch_ticker(SYMBOL)).last
    assert price is not None
    positions.mark(SYMBOL, price * Decimal("1.04"), paper.source.now())  # moves the trailing stop
    live = positions.positions()
    rebuilt = PositionManager(
        store, mode=Mode.PAPER, exchange_id="binance", exit_rules=ExitRules(), clock=executor.clock
    ).rebuild()
    assert rebuilt == live
    assert live[0].quantity == Decimal(800) and live[0].status is PositionStatus.PARTIAL
    assert live[0].trailing_stop is not None
    assert store.list_positions(Mode.PAPER)[0].quantity == Decimal(800)


async def test_reconciliation_zeroes_assets_the_exchange_no_longer_lists(
    store: Store, paper: PaperExchange
) -> None:
    executor, _ = _wire(store, paper)
    await executor.submit(_buy("400", key="in"))
    await Reconciler(executor, lambda: [SYMBOL]).run()
    assert store.list_balances(Mode.PAPER, exchange="binance")["ARB"].total == Decimal(400)
    await executor.submit(
        ExecutionRequest(STRATEGY, SYMBOL, Side.SELL, Decimal(400), "out", reduce_only=True)
    )
    assert "ARB" not in await paper.fetch_balances()  # venues leave empty assets out
    await Reconciler(executor, lambda: [SYMBOL]).run()
    assert store.list_balances(Mode.PAPER, exchange="binance")["ARB"].total == 0


async def test_attempts_that_never_reached_the_exchange_do_not_use_up_the_intent(
    store: Store, paper: PaperExchange
) -> None:
    executor, _ = _wire(store, paper)
    for _crash in range(5):  # written, process died before sending, expired at restart
        pending, fresh = executor._claim(_buy("300", key="unlucky"))
        assert fresh
        await Reconciler(executor, lambda: [SYMBOL]).run()
        assert store.get_order(pending.client_order_id).status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    order = await executor.submit(_buy("300", key="unlucky"))
    assert order.status is OrderStatus.FILLED
    assert len(await paper.fetch_my_trades(SYMBOL)) == 1
