"""PaperExchange on a small hand-written replay: every fill is checked against the trades that
really printed (prices strictly through, volume caps, priority) and the book at arrival time."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from tradelib.config import load_settings
from tradelib.domain import ClientOrderId, Market, OrderStatus, OrderType, Side, TimeInForce
from tradelib.errors import ConfigError, InsufficientFunds, InvalidOrder, OrderNotFound
from tradelib.exchange.base import Exchange, OrderRequest, OrderUpdate
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.factory import open_exchange
from tradelib.exchange.matching import buy_lock, fee_for
from tradelib.exchange.paper import PaperExchange, ReplayMarketData
from tradelib.exchange.replay import ReplayMarket

SYM = "TST/USDT"
START = datetime(2024, 1, 1, tzinfo=UTC)
MARKET = Market(
    SYM,
    "TST",
    "USDT",
    Decimal("0.01"),
    Decimal("0.01"),
    Decimal("0.01"),
    Decimal(100_000),
    Decimal(5),
)
# hour 0 closes up: prints O 100 (at 00:00), L 98, H 102, C 101 — 10 each at :00/:15/:30/:45
# hour 1 closes down: prints O 101, H 101.5, L 97, C 97.5 — 2 each
CANDLES = pd.DataFrame(
    {
        "date": [START - timedelta(hours=1), START, START + timedelta(hours=1)],
        "open": [100.0, 100.0, 101.0],
        "high": [101.0, 102.0, 101.5],
        "low": [99.0, 98.0, 97.0],
        "close": [100.0, 101.0, 97.5],
        "volume": [100.0, 40.0, 8.0],
    }
)


def paper(latency_ms: int = 0, usdt: str = "10000", book_depth: int = 100) -> PaperExchange:
    replay = ReplayMarket({SYM: CANDLES}, {SYM: MARKET}, start=START)
    return PaperExchange(
        ReplayMarketData(replay),
        balances={"USDT": Decimal(usdt)},
        latency_ms=latency_ms,
        book_depth=book_depth,
    )


def limit(
    name: str, side: Side, qty: str, price: str, tif: TimeInForce = TimeInForce.GTC
) -> OrderRequest:
    return OrderRequest(
        ClientOrderId(f"tl-{name}"), SYM, side, OrderType.LIMIT, Decimal(qty), Decimal(price), tif
    )


def market(name: str, side: Side, qty: str) -> OrderRequest:
    return OrderRequest(ClientOrderId(f"tl-{name}"), SYM, side, OrderType.MARKET, Decimal(qty))


async def test_is_an_exchange_and_fetches_market_data() -> None:
    ex = paper()
    assert isinstance(ex, Exchange)
    assert (await ex.load_markets())[SYM] == MARKET
    ticker = await ex.fetch_ticker(SYM)
    assert ticker.bid is not None and ticker.ask is not None and ticker.bid < ticker.ask
    assert ticker.timestamp == START
    candles = await ex.fetch_ohlcv(SYM, "1h")
    assert [c.open_time for c in candles] == [START - timedelta(hours=1)]


async def test_limit_at_the_traded_price_does_not_fill_strictly_through_does() -> None:
    ex = paper()
    at = await ex.create_order(limit("at", Side.BUY, "5", "98"))
    through = await ex.create_order(limit("through", Side.BUY, "15", "98.01"))
    await ex.step()  # prints 98 (10), 102 (10), 101 (10), 101 (2)
    assert (await ex.fetch_order(at.client_order_id, SYM)).filled_quantity == 0
    order = await ex.fetch_order(through.client_order_id, SYM)
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.filled_quantity == Decimal(10)  # capped by the volume that traded through
    await ex.step()  # 97 (2) and 97.5 (2) go through 98.01 too, and through 98
    order = await ex.fetch_order(through.client_order_id, SYM)
    assert order.filled_quantity == Decimal(14)
    assert (await ex.fetch_order(at.client_order_id, SYM)).filled_quantity == 0  # volume taken


async def test_trade_volume_is_shared_by_price_then_time_priority() -> None:
    ex = paper()
    first = await ex.create_order(limit("first", Side.BUY, "6", "98.01"))
    better = await ex.create_order(limit("better", Side.BUY, "6", "98.05"))
    await ex.step()
    assert (await ex.fetch_order(better.client_order_id, SYM)).filled_quantity == 6
    assert (await ex.fetch_order(first.client_order_id, SYM)).filled_quantity == 4


async def test_balances_locks_and_fees_exact_to_the_last_unit() -> None:
    ex = paper()
    order = await ex.create_order(limit("buy", Side.BUY, "15", "98.01"))
    lock = buy_lock(MARKET, Decimal(15), Decimal("98.01"))
    usdt = (await ex.fetch_balances())["USDT"]
    assert (usdt.free, usdt.locked) == (Decimal(10_000) - lock, lock)
    await ex.step()
    fee = fee_for(MARKET, Decimal(10) * Decimal("98.01"), is_maker=True)
    (fill,) = await ex.fetch_my_trades(SYM)
    assert fill.is_maker and fill.fee == fee and fill.fee_currency == "USDT"
    cancelled = await ex.cancel_order(order.client_order_id, SYM)
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.filled_quantity == 10
    balances = await ex.fetch_balances()
    assert balances["USDT"].free == Decimal(10_000) - Decimal("980.1") - fee
    assert balances["USDT"].locked == 0 and balances["TST"].free == 10


async def test_market_order_walks_the_book_and_expires_what_it_cannot_fill() -> None:
    ex = paper(book_depth=5)
    book = await ex.fetch_order_book(SYM, 5)
    available = sum((q for _, q in book.asks), Decimal(0))
    order = await ex.create_order(market("big", Side.BUY, str(available + 50)))
    assert order.status is OrderStatus.EXPIRED and order.filled_quantity == available
    fills = await ex.fetch_my_trades(SYM)
    assert [(f.price, f.quantity) for f in fills] == book.asks
    cost = sum((f.notional + f.fee for f in fills), Decimal(0))
    assert (await ex.fetch_balances())["USDT"].free == Decimal(10_000) - cost
    again = await ex.create_order(market("again", Side.BUY, "1"))  # liquidity was taken
    assert again.status is OrderStatus.EXPIRED and again.filled_quantity == 0


async def test_ioc_fills_what_crosses_and_fok_is_all_or_nothing() -> None:
    ex = paper()
    ask, size = (await ex.fetch_order_book(SYM, 1)).asks[0]
    ioc = await ex.create_order(limit("ioc", Side.BUY, str(size * 3), str(ask), TimeInForce.IOC))
    assert ioc.status is OrderStatus.EXPIRED and ioc.filled_quantity == size
    fok = await ex.create_order(limit("fok", Side.BUY, str(size * 3), str(ask), TimeInForce.FOK))
    assert fok.status is OrderStatus.EXPIRED and fok.filled_quantity == 0
    assert await ex.fetch_open_orders() == []


async def test_latency_makes_the_order_meet_the_market_at_arrival() -> None:
    ex = paper(latency_ms=30 * 60 * 1000)  # arrives at 00:30, after the 102 print
    order = await ex.create_order(market("late", Side.BUY, "0.1"))
    assert order.created_at == START + timedelta(minutes=30)
    assert order.average_price is not None and order.average_price > Decimal(101)


async def test_insufficient_funds_duplicates_and_unknown_orders() -> None:
    ex = paper(usdt="100")
    with pytest.raises(InsufficientFunds, match="insufficient USDT"):
        await ex.create_order(limit("big", Side.BUY, "2", "99"))
    with pytest.raises(InsufficientFunds, match="insufficient TST"):
        await ex.create_order(market("sell", Side.SELL, "1"))
    resting = await ex.create_order(limit("rest", Side.BUY, "0.5", "99"))
    with pytest.raises(InvalidOrder, match="already used"):
        await ex.create_order(limit("rest", Side.BUY, "0.5", "99"))
    await ex.cancel_order(resting.client_order_id, SYM)
    reused = await ex.create_order(limit("rest", Side.BUY, "0.5", "99"))  # Binance: open only
    assert reused.exchange_order_id != resting.exchange_order_id
    with pytest.raises(OrderNotFound):
        await ex.cancel_order(ClientOrderId("tl-none"), SYM)
    with pytest.raises(InvalidOrder, match="NOTIONAL"):
        await ex.create_order(limit("small", Side.BUY, "0.04", "99"))


async def test_watch_orders_yields_every_change() -> None:
    ex = paper()
    seen: list[OrderUpdate] = []

    async def collect() -> None:
        async for updates in ex.watch_orders(SYM):
            seen.extend(updates)

    task = asyncio.create_task(collect())
    await asyncio.sleep(0)
    order = await ex.create_order(limit("w", Side.BUY, "15", "98.01"))
    await ex.step()
    await ex.cancel_order(order.client_order_id, SYM)
    for _ in range(100):
        if len(seen) >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [u.order.status for u in seen] == [
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.CANCELLED,
    ]
    assert [f.quantity for u in seen for f in u.fills] == [Decimal(10)]


async def test_my_trades_since_and_limit() -> None:
    ex = paper()
    await ex.create_order(limit("a", Side.BUY, "30", "99"))
    await ex.step()
    await ex.step()
    fills = await ex.fetch_my_trades(SYM)
    assert [f.price for f in fills] == [Decimal(99)] * 3  # the 98, 97 and 97.5 prints
    assert fills == sorted(fills, key=lambda f: f.timestamp)
    assert await ex.fetch_my_trades(SYM, limit=1) == fills[-1:]
    assert await ex.fetch_my_trades(SYM, since=fills[1].timestamp, limit=1) == [fills[1]]


async def test_open_exchange_picks_by_mode_and_never_reads_keys_from_settings() -> None:
    settings = load_settings(exchange={"paper_latency_ms": 250, "paper_balances": {"USDT": 123}})
    ex = open_exchange(
        settings,
        market_data=ReplayMarketData(ReplayMarket({SYM: CANDLES}, {SYM: MARKET}, start=START)),
    )
    assert isinstance(ex, PaperExchange) and ex.latency == timedelta(milliseconds=250)
    assert (await ex.fetch_balances())["USDT"].free == 123
    live = load_settings(mode="live", exchange={"base_url": "http://127.0.0.1:9"})
    with pytest.raises(ConfigError, match="API key"):
        open_exchange(live)
    connector = open_exchange(live, api_key="k" * 16, api_secret="s" * 16)
    assert isinstance(connector, CcxtExchange)
    assert connector._rest.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert "k" * 16 not in repr(connector)
    await connector.close()
