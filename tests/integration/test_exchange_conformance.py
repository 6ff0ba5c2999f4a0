"""One conformance suite, two venues: PaperExchange on a ReplayMarket, and CcxtExchange -> real
ccxt -> the Binance emulator (in-process, free port). Both replay the same recorded market from
the same start, so every number a test checks is the same on both.

Fault tests run against the emulator only and always end by reading the emulator's own order
list: no order lost, none duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from emulator_fixtures import EMULATOR_START, running_emulator, until

from tradelib.config import repo_data_dir
from tradelib.domain import (
    ClientOrderId,
    OrderStatus,
    OrderType,
    Side,
    client_order_id,
    round_down,
)
from tradelib.errors import (
    ExchangeBanned,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    UnknownSymbol,
)
from tradelib.exchange.base import Exchange, OrderRequest, OrderUpdate
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.matching import buy_lock, fee_for
from tradelib.exchange.paper import PaperExchange, ReplayMarketData
from tradelib.exchange.ratelimit import RetryPolicy
from tradelib.exchange.replay import ReplayMarket
from tradelib.testing.binance_emulator import BinanceEmulator

BTC = "BTC/USDT"
START_USDT = Decimal(10_000_000)
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@dataclass
class Venue:
    """One implementation under test plus the handles to drive its market."""

    kind: str
    ex: Any  # PaperExchange | CcxtExchange, both Exchange
    emu: BinanceEmulator | None = None
    order_posts: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    async def advance(self, steps: int = 1) -> None:
        """Let the replayed market move on by `steps` hours (fills resting orders)."""
        if self.emu is not None:
            self.emu.advance(steps)
        else:
            await self.ex.step(steps)

    async def subscribed(self, what: str) -> None:
        """Wait until a watch_trades ("trades") or watch_orders ("orders") stream is live."""
        if self.emu is not None:
            conns = self.emu.streams._connections
            if what == "trades":
                ready = lambda: any(  # noqa: E731
                    n.startswith("btcusdt@trade") for c in conns for n in c.streams
                )
            else:
                ready = lambda: any(c.user_subscriptions or c.raw_user for c in conns)  # noqa: E731
        elif what == "trades":
            buffers = self.ex.source._buffers._buffers
            ready = lambda: any(k[0].startswith("watch-") for k in buffers)  # noqa: E731
        else:
            ready = lambda: bool(self.ex._subscribers)  # noqa: E731
        await until(ready, f"{what} stream subscribed")

    def emulator_orders(self, cid: str) -> list[Any]:
        """The emulator's own records of orders with client id `cid`."""
        assert self.emu is not None
        return [o for o in self.emu.orders() if o.client_order_id == cid]


def ccxt_venue(emu: BinanceEmulator, **kw: Any) -> Venue:
    venue = Venue("emulator", None, emu)

    async def recording_sleep(seconds: float) -> None:
        venue.sleeps.append(seconds)
        await asyncio.sleep(min(seconds, 2.0))

    kw.setdefault("late_arrival_seconds", 0.2)
    ex = CcxtExchange(
        "binance",
        api_key=emu.api_key,
        api_secret=emu.api_secret,
        base_url=emu.base_url,
        retry_policy=RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.5, sleep=recording_sleep),
        lookup_delay=0.05,
        sleep=recording_sleep,
        **kw,
    )
    inner = ex.transport

    async def counting(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        if method == "POST" and url.split("?")[0].endswith("/api/v3/order"):
            venue.order_posts.append(url)
        return await inner(url, method, headers, body)

    ex.transport = counting
    venue.ex = ex
    return venue


@contextlib.asynccontextmanager
async def open_venue(kind: str, **kw: Any) -> AsyncIterator[Venue]:
    if kind == "paper":
        replay = ReplayMarket.from_data_dir(repo_data_dir(), start=EMULATOR_START, symbols=SYMBOLS)
        ex = PaperExchange(ReplayMarketData(replay), balances={"USDT": START_USDT}, **kw)
        yield Venue("paper", ex)
        await ex.close()
        return
    async with running_emulator(balances={"USDT": START_USDT}, symbols=SYMBOLS) as emu:
        venue = ccxt_venue(emu, **kw)
        try:
            yield venue
        finally:
            await venue.ex.close()


@pytest.fixture(params=["paper", "emulator"])
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[Venue]:
    async with open_venue(request.param) as v:
        yield v


@pytest.fixture
async def emulated() -> AsyncIterator[Venue]:
    async with open_venue("emulator", timeout_ms=1500) as v:
        yield v


def cid(name: str) -> ClientOrderId:
    return client_order_id("conformance", BTC, name)


async def resting_buy(venue: Venue, name: str, quantity: str = "0.5") -> OrderRequest:
    ticker = await venue.ex.fetch_ticker(BTC)
    return OrderRequest(
        cid(name), BTC, Side.BUY, OrderType.LIMIT, Decimal(quantity), ticker.bid - Decimal(1000)
    )


async def test_protocol_is_implemented(venue: Venue) -> None:
    assert isinstance(venue.ex, Exchange)
    markets = await venue.ex.load_markets()
    assert markets[BTC].price_tick == Decimal("0.01")
    assert markets[BTC].min_notional == Decimal(5)


async def test_limit_round_trip_rests_is_found_and_cancels(venue: Venue) -> None:
    request = await resting_buy(venue, "rt")
    order = await venue.ex.create_order(request)
    assert order.status is OrderStatus.OPEN and order.client_order_id == request.client_order_id
    market = (await venue.ex.load_markets())[BTC]
    balances = await venue.ex.fetch_balances()
    locked = buy_lock(market, order.quantity, order.price)
    assert balances["USDT"].locked == locked
    assert balances["USDT"].free == START_USDT - locked
    fetched = await venue.ex.fetch_order(request.client_order_id, BTC)
    assert (fetched.status, fetched.quantity, fetched.price) == (
        OrderStatus.OPEN,
        order.quantity,
        order.price,
    )
    assert [o.client_order_id for o in await venue.ex.fetch_open_orders(BTC)] == [
        order.client_order_id
    ]
    cancelled = await venue.ex.cancel_order(request.client_order_id, BTC)
    assert cancelled.status is OrderStatus.CANCELLED
    assert await venue.ex.fetch_open_orders(BTC) == []
    balances = await venue.ex.fetch_balances()
    assert balances["USDT"].free == START_USDT and balances["USDT"].locked == 0


async def test_market_buy_then_sell_balances_exact_with_fees(venue: Venue) -> None:
    bought = await venue.ex.create_order(
        OrderRequest(cid("mb"), BTC, Side.BUY, OrderType.MARKET, Decimal("0.37"))
    )
    assert bought.status is OrderStatus.FILLED and bought.filled_quantity == Decimal("0.37")
    sold = await venue.ex.create_order(
        OrderRequest(cid("ms"), BTC, Side.SELL, OrderType.MARKET, Decimal("0.37"))
    )
    assert sold.status is OrderStatus.FILLED
    fills = await venue.ex.fetch_my_trades(BTC)
    assert {f.client_order_id for f in fills} == {cid("mb"), cid("ms")}
    assert all(f.fee_currency == "USDT" and not f.is_maker for f in fills)
    market = (await venue.ex.load_markets())[BTC]
    for f in fills:
        assert f.fee == fee_for(market, f.quantity * f.price, is_maker=False)
    spent = sum((f.notional + f.fee for f in fills if f.side is Side.BUY), Decimal(0))
    got = sum((f.notional - f.fee for f in fills if f.side is Side.SELL), Decimal(0))
    assert bought.fee + sold.fee == sum((f.fee for f in fills), Decimal(0))
    balances = await venue.ex.fetch_balances()
    assert balances["USDT"].free == START_USDT - spent + got
    assert "BTC" not in balances


async def test_resting_limit_fills_partially_up_to_traded_volume(venue: Venue) -> None:
    # In the next recorded hour exactly one print (69.488275 BTC) trades below 64316.56.
    price = Decimal("64316.56")
    request = OrderRequest(cid("partial"), BTC, Side.BUY, OrderType.LIMIT, Decimal(100), price)
    order = await venue.ex.create_order(request)
    assert order.status is OrderStatus.OPEN
    await venue.advance(1)
    order = await venue.ex.fetch_order(request.client_order_id, BTC)
    market = (await venue.ex.load_markets())[BTC]
    expected = round_down(Decimal("69.488275"), market.amount_step)
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.filled_quantity == expected and order.average_price == price
    fee = fee_for(market, expected * price, is_maker=True)
    (fill,) = await venue.ex.fetch_my_trades(BTC)
    assert fill.is_maker and fill.fee == fee and fill.quantity == expected
    balances = await venue.ex.fetch_balances()
    assert balances["BTC"].free == expected
    assert balances["USDT"].free + balances["USDT"].locked == START_USDT - expected * price - fee
    await venue.ex.cancel_order(request.client_order_id, BTC)
    balances = await venue.ex.fetch_balances()
    assert balances["USDT"].locked == 0
    assert balances["USDT"].free == START_USDT - expected * price - fee


async def test_precision_is_rounded_and_minimums_refused_before_sending(venue: Venue) -> None:
    ticker = await venue.ex.fetch_ticker(BTC)
    odd = OrderRequest(
        cid("odd"),
        BTC,
        Side.BUY,
        OrderType.LIMIT,
        Decimal("0.123456789"),
        ticker.bid - Decimal("1000.009"),
    )
    order = await venue.ex.create_order(odd)
    assert order.quantity == Decimal("0.12345")
    assert order.price == (ticker.bid - Decimal("1000.01"))  # buy rounds down to the tick
    posts = len(venue.order_posts)
    small = OrderRequest(
        cid("small"), BTC, Side.BUY, OrderType.LIMIT, Decimal("0.00005"), ticker.bid - Decimal(1000)
    )
    with pytest.raises(InvalidOrder, match=r"NOTIONAL: .* below the minimum 5"):
        await venue.ex.create_order(small)
    tiny_market = OrderRequest(cid("tiny"), BTC, Side.SELL, OrderType.MARKET, Decimal("0.00001"))
    with pytest.raises(InvalidOrder, match="NOTIONAL"):
        await venue.ex.create_order(tiny_market)
    dust = OrderRequest(
        cid("dust"), BTC, Side.BUY, OrderType.LIMIT, Decimal("0.000001"), ticker.bid
    )
    with pytest.raises(InvalidOrder, match="LOT_SIZE"):
        await venue.ex.create_order(dust)
    assert len(venue.order_posts) == posts  # nothing reached the exchange
    assert [o.client_order_id for o in await venue.ex.fetch_open_orders()] == [cid("odd")]


async def test_duplicate_client_order_id_is_refused(venue: Venue) -> None:
    request = await resting_buy(venue, "dup")
    await venue.ex.create_order(request)
    with pytest.raises(InvalidOrder, match="client order id is already used"):
        await venue.ex.create_order(request)
    assert len(await venue.ex.fetch_open_orders(BTC)) == 1
    if venue.emu is not None:
        assert len(venue.emulator_orders(request.client_order_id)) == 1


async def test_unknown_symbol_unknown_order_and_insufficient_funds(venue: Venue) -> None:
    with pytest.raises(UnknownSymbol, match="NOPE/USDT"):
        await venue.ex.fetch_ticker("NOPE/USDT")
    with pytest.raises(UnknownSymbol):
        await venue.ex.create_order(
            OrderRequest(cid("nope"), "NOPE/USDT", Side.BUY, OrderType.MARKET, Decimal(1))
        )
    with pytest.raises(OrderNotFound):
        await venue.ex.fetch_order(cid("never"), BTC)
    with pytest.raises(OrderNotFound):
        await venue.ex.cancel_order(cid("never"), BTC)
    with pytest.raises(InsufficientFunds):
        await venue.ex.create_order(await resting_buy(venue, "whale", "1000"))
    balances = await venue.ex.fetch_balances()
    assert balances["USDT"].free == START_USDT and balances["USDT"].locked == 0


async def collect(ex: Any, into: list[OrderUpdate]) -> None:
    async for updates in ex.watch_orders(BTC):
        into.extend(updates)


def states(updates: list[OrderUpdate], client_id: str) -> list[OrderStatus]:
    return [u.order.status for u in updates if u.order.client_order_id == client_id]


async def test_watch_orders_reports_acceptance_fills_and_cancel(venue: Venue) -> None:
    updates: list[OrderUpdate] = []
    task = asyncio.create_task(collect(venue.ex, updates))
    try:
        await venue.subscribed("orders")
        price = Decimal("64316.56")
        request = OrderRequest(cid("w"), BTC, Side.BUY, OrderType.LIMIT, Decimal(100), price)
        await venue.ex.create_order(request)
        await until(lambda: OrderStatus.OPEN in states(updates, request.client_order_id), "NEW")
        await venue.advance(1)
        await until(
            lambda: OrderStatus.PARTIALLY_FILLED in states(updates, request.client_order_id),
            "partial fill update",
        )
        fills = [
            f for u in updates for f in u.fills if f.client_order_id == request.client_order_id
        ]
        assert sum((f.quantity for f in fills), Decimal(0)) == Decimal("69.48827")
        await venue.ex.cancel_order(request.client_order_id, BTC)
        await until(
            lambda: OrderStatus.CANCELLED in states(updates, request.client_order_id), "cancel"
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_latency_delays_arrival_and_uses_the_market_then() -> None:
    async with open_venue("paper", latency_ms=3_600_000) as venue:  # one replay hour
        before = venue.ex.source.now()
        order = await venue.ex.create_order(
            OrderRequest(cid("late"), BTC, Side.BUY, OrderType.MARKET, Decimal("0.1"))
        )
        assert order.created_at == before + (venue.ex.latency)
        book_then = await venue.ex.fetch_order_book(BTC, 1)
        assert order.average_price == book_then.asks[0][0]


# ----------------------------------------------------------------------- emulator faults


def only_order(venue: Venue, client_id: str) -> Any:
    (order,) = venue.emulator_orders(client_id)  # exactly one: none lost, none duplicated
    return order


async def test_fault_latency_still_one_order(emulated: Venue) -> None:
    assert emulated.emu is not None
    emulated.emu.faults.set_latency(300)
    order = await emulated.ex.create_order(await resting_buy(emulated, "lat"))
    assert order.status is OrderStatus.OPEN
    assert only_order(emulated, order.client_order_id).status == "NEW"


async def test_fault_5xx_on_create_resolves_to_exactly_one_order(emulated: Venue) -> None:
    assert emulated.emu is not None
    request = await resting_buy(emulated, "5xx")
    emulated.emu.faults.fail_next(1, status=503, path="/api/v3/order", method="POST")
    order = await emulated.ex.create_order(request)
    assert order.status is OrderStatus.OPEN
    assert len(emulated.order_posts) == 2  # the lost one (not processed) and one resend
    assert only_order(emulated, request.client_order_id).status == "NEW"


async def test_fault_answer_dropped_after_accept_is_found_not_resent(emulated: Venue) -> None:
    assert emulated.emu is not None
    emulated.emu.faults.drop_next(1)
    order = await emulated.ex.create_order(
        OrderRequest(cid("drop"), BTC, Side.BUY, OrderType.MARKET, Decimal("0.2"))
    )
    assert order.status is OrderStatus.FILLED and order.filled_quantity == Decimal("0.2")
    assert len(emulated.order_posts) == 1
    assert only_order(emulated, order.client_order_id).status == "FILLED"
    balances = await emulated.ex.fetch_balances()
    assert balances["BTC"].free == Decimal("0.2")  # bought once, not twice


async def test_fault_stalled_answer_times_out_and_is_found(emulated: Venue) -> None:
    assert emulated.emu is not None
    emulated.emu.faults.stall_next(1, seconds=3, path="/api/v3/order", method="POST")
    request = await resting_buy(emulated, "stall")
    order = await emulated.ex.create_order(request)
    assert order.status is OrderStatus.OPEN and len(emulated.order_posts) == 1
    assert only_order(emulated, request.client_order_id).status == "NEW"


async def test_fault_429_backs_off_and_succeeds(emulated: Venue) -> None:
    assert emulated.emu is not None
    emulated.emu.faults.limit_next(1, status=429, retry_after=1, path="/api/v3/account")
    balances = await emulated.ex.fetch_balances()
    assert balances["USDT"].free == START_USDT
    assert any(s >= 1 for s in emulated.sleeps)  # waited at least Retry-After


async def test_fault_418_bans_and_sends_nothing_until_it_expires(emulated: Venue) -> None:
    assert emulated.emu is not None
    await emulated.ex.load_markets()
    emulated.emu.faults.limit_next(1, status=418, retry_after=1, path="/api/v3/account")
    with pytest.raises(ExchangeBanned) as info:
        await emulated.ex.fetch_balances()
    assert info.value.retry_after == pytest.approx(1, abs=0.5)
    seen = emulated.ex.guard.requests_seen
    with pytest.raises(ExchangeBanned, match="no request is sent"):
        await emulated.ex.create_order(await resting_buy(emulated, "banned"))
    assert emulated.ex.guard.requests_seen == seen and emulated.order_posts == []
    await asyncio.sleep(emulated.ex.guard.ban_remaining() + 0.1)
    assert (await emulated.ex.fetch_balances())["USDT"].free == START_USDT
    assert emulated.emu.orders() == []


async def test_fault_ws_disconnect_watch_orders_resumes(emulated: Venue) -> None:
    assert emulated.emu is not None
    updates: list[OrderUpdate] = []
    task = asyncio.create_task(collect(emulated.ex, updates))
    try:
        await emulated.subscribed("orders")
        first = await emulated.ex.create_order(
            OrderRequest(
                cid("ws1"), BTC, Side.BUY, OrderType.LIMIT, Decimal(100), Decimal("64316.56")
            )
        )
        await until(lambda: OrderStatus.OPEN in states(updates, first.client_order_id), "NEW")
        assert await emulated.emu.disconnect_streams() >= 1
        emulated.emu.advance(1)  # fills while the stream is down
        await until(
            lambda: OrderStatus.PARTIALLY_FILLED in states(updates, first.client_order_id),
            "the fill missed during the disconnect",
        )
        second = await emulated.ex.create_order(await resting_buy(emulated, "ws2"))
        await until(lambda: OrderStatus.OPEN in states(updates, second.client_order_id), "after")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(only_order(emulated, first.client_order_id).fills) == 1


async def test_fault_forced_partial_fill_of_market_order(emulated: Venue) -> None:
    assert emulated.emu is not None
    emulated.emu.faults.partial_fill(Decimal("0.5"))
    order = await emulated.ex.create_order(
        OrderRequest(cid("forced"), BTC, Side.BUY, OrderType.MARKET, Decimal("0.3"))
    )
    assert order.status is OrderStatus.EXPIRED and order.filled_quantity == Decimal("0.15")
    record = only_order(emulated, order.client_order_id)
    assert record.executed == Decimal("0.15")
    balances = await emulated.ex.fetch_balances()
    assert balances["BTC"].free == Decimal("0.15")
    assert balances["USDT"].free == START_USDT - order.average_price * Decimal("0.15") - order.fee


async def test_watch_trades_sees_what_the_market_prints(venue: Venue) -> None:
    seen: list[Any] = []

    async def collect_trades() -> None:
        async for trades in venue.ex.watch_trades(BTC):
            seen.extend(trades)

    task = asyncio.create_task(collect_trades())
    try:
        await venue.subscribed("trades")
        await venue.advance(1)
        await until(lambda: any(t.price == Decimal("64316.55") for t in seen), "the hour's low")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert all(t.symbol == BTC and t.quantity > 0 for t in seen)


async def test_paper_on_live_data_from_another_exchange(emulated: Venue) -> None:
    """PaperExchange fed by CcxtExchange's public REST/streams (here: the emulator)."""
    from tradelib.exchange.paper import ExchangeMarketData

    assert emulated.emu is not None
    source = ExchangeMarketData(emulated.ex)
    paper = PaperExchange(source, balances={"USDT": START_USDT}, poll_seconds=0.05)
    try:
        book = await emulated.ex.fetch_order_book(BTC, 5)
        bought = await paper.create_order(
            OrderRequest(cid("live-m"), BTC, Side.BUY, OrderType.MARKET, Decimal("0.5"))
        )
        assert bought.status is OrderStatus.FILLED and bought.average_price == book.asks[0][0]
        resting = await paper.create_order(
            OrderRequest(
                cid("live-l"), BTC, Side.BUY, OrderType.LIMIT, Decimal(100), Decimal("64316.56")
            )
        )
        await emulated.subscribed("trades")
        emulated.emu.advance(1)

        async def filled() -> Decimal:
            return (await paper.fetch_order(resting.client_order_id, BTC)).filled_quantity

        for _ in range(200):
            if await filled() > 0:
                break
            await asyncio.sleep(0.02)
        assert await filled() == Decimal("69.48827")
        assert emulated.emu.orders() == []  # paper orders never reach the exchange
    finally:
        await source.close()


async def first_item(stream: Any) -> Any:
    async for item in stream:
        return item
    raise AssertionError("the stream ended without an item")


async def test_watch_order_book_and_ohlcv(venue: Venue) -> None:
    book = await asyncio.wait_for(first_item(venue.ex.watch_order_book(BTC)), 30)
    assert book.bids and book.asks and book.bids[0][0] < book.asks[0][0]
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    candles_seen: list[Any] = []

    async def collect_candles() -> None:
        async for candles in venue.ex.watch_ohlcv(BTC, "1h"):
            candles_seen.extend(candles)

    task = asyncio.create_task(collect_candles())
    try:
        if venue.emu is not None:
            conns = venue.emu.streams._connections
            await until(
                lambda: any("kline" in n for c in conns for n in c.streams),
                "kline stream subscribed",
            )
        await venue.advance(1)
        await until(
            lambda: any(c.open_time == EMULATOR_START and c.closed for c in candles_seen),
            "the first replayed hour as a closed candle",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    hour = next(c for c in candles_seen if c.open_time == EMULATOR_START)
    assert hour.low == Decimal("64316.55")
