"""A trading process for the crash test: reconcile, then work through a fixed plan of intents.

Run as ``python crash_trader.py STORE_URL BASE_URL API_KEY API_SECRET STEPS``. It is killed
with SIGKILL at random moments and restarted; every start rebuilds positions from the store,
reconciles with the exchange, and carries on with the plan. Exit 0 once every step is done.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from decimal import Decimal

from tradelib.domain import Mode, OrderStatus, OrderType, Side, StrategyId
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.orders import ExecutionRequest, OrderExecutor, Reconciler
from tradelib.position.exits import ExitRules
from tradelib.position.manager import PositionManager
from tradelib.store import open_store

SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("crash_test")
QTY = Decimal(50)


def plan(steps: int) -> list[ExecutionRequest]:
    """Deterministic intents: a far resting limit, then buy/sell pairs; the same on every start."""
    requests = [
        ExecutionRequest(
            STRATEGY, SYMBOL, Side.BUY, Decimal(10), "rest", type=OrderType.LIMIT,
            price=Decimal("0.5"),
        )
    ]  # fmt: skip
    for i in range(steps):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        requests.append(
            ExecutionRequest(
                STRATEGY, SYMBOL, side, QTY, f"step-{i}", reduce_only=side is Side.SELL
            )
        )
    return requests


async def main(store_url: str, base_url: str, key: str, secret: str, steps: int) -> int:
    """One life of the trading process."""
    store = open_store(store_url)
    store.ensure_strategy(STRATEGY, {"steps": steps})
    exchange = CcxtExchange("binance", api_key=key, api_secret=secret, base_url=base_url)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    positions = PositionManager(
        store, mode=Mode.LIVE, exchange_id="binance", exit_rules=ExitRules(), clock=clock
    )
    positions.rebuild()
    executor = OrderExecutor(
        store, exchange, exchange_id="binance", mode=Mode.LIVE, clock=clock,
        on_fill=positions.on_fill,
    )  # fmt: skip
    try:
        await Reconciler(executor, lambda: [SYMBOL]).run()
        requests = plan(steps)
        for request in requests:
            order = await executor.submit(request)
            while not order.status.is_terminal and request.type is OrderType.MARKET:
                await asyncio.sleep(0.05)  # outcome unknown: ask again by client order id
                order = await executor.sync(order.client_order_id)
            print(f"{request.intent_key} {order.client_order_id} {order.status}", flush=True)
        rest = store.list_orders(statuses=[OrderStatus.OPEN], strategy=STRATEGY)
        for order in rest:
            await executor.cancel(order.client_order_id)
        await Reconciler(executor, lambda: [SYMBOL]).run()  # final balances into the store
        print("DONE", flush=True)
        return 0
    finally:
        await exchange.close()
        store.close()


if __name__ == "__main__":
    url, base, api_key, api_secret, count = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, base, api_key, api_secret, int(count))))
