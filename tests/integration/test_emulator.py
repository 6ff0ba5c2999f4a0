"""Plain ccxt (REST) and ccxt.pro (streams) against the local Binance emulator."""
# ruff: noqa: F811  (pytest fixtures imported from emulator_fixtures are parameters here)

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from emulator_fixtures import (  # noqa: F401  (pytest fixtures)
    EMULATOR_START,
    binance,
    binance_pro,
    ccxt_client,
    emulator,
    running_emulator,
    until,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.domain import OrderType, Side, TimeInForce, round_down
from tradelib.exchange.matching import (
    Account,
    buy_lock,
    candle_trades,
    fee_for,
)
from tradelib.exchange.replay import ReplayMarket
from tradelib.testing.binance_emulator import BinanceEmulator, ccxt_config_for, point_ccxt_at
from tradelib.testing.binance_emulator.limits import RateLimiter
from tradelib.testing.binance_emulator.venue import Venue
from tradelib.testing.binance_emulator.wire import ApiError

D = Decimal
ARB = "ARB/USDT"
DATA = Path(__file__).resolve().parents[2] / "data"


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


async def test_load_markets_parses_precision_and_limits(binance: Any) -> None:
    arb = binance.market(ARB)
    assert arb["id"] == "ARBUSDT" and arb["spot"]
    assert dec(arb["precision"]["price"]) == D("0.0001")
    assert dec(arb["precision"]["amount"]) == D("0.1")
    assert dec(arb["limits"]["amount"]["min"]) == D("0.1")
    assert dec(arb["limits"]["cost"]["min"]) == D(5)
    btc = binance.market("BTC/USDT")
    assert dec(btc["precision"]["price"]) == D("0.01")
    assert dec(btc["precision"]["amount"]) == D("0.00001")
    assert len(binance.markets) == 21


async def test_balance_limit_order_lifecycle_by_client_order_id(
    emulator: BinanceEmulator, binance: Any
) -> None:
    balance = await binance.fetch_balance()
    assert dec(balance["USDT"]["free"]) == D(10_000)
    order = await binance.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "tl-a1"})
    assert order["clientOrderId"] == "tl-a1" and order["status"] == "open"
    found = await binance.fetch_order(None, ARB, {"origClientOrderId": "tl-a1"})
    assert found["id"] == order["id"] and found["remaining"] == 100
    assert [o["clientOrderId"] for o in await binance.fetch_open_orders(ARB)] == ["tl-a1"]
    locked = buy_lock(emulator.venue.market(ARB), D(100), D("0.6"))
    balance = await binance.fetch_balance()
    assert dec(balance["USDT"]["used"]) == locked
    assert dec(balance["USDT"]["free"]) == D(10_000) - locked
    cancelled = await binance.cancel_order(None, ARB, {"origClientOrderId": "tl-a1"})
    assert cancelled["status"] == "canceled"
    assert await binance.fetch_open_orders(ARB) == []
    balance = await binance.fetch_balance()
    assert dec(balance["USDT"]["free"]) == D(10_000) and dec(balance["USDT"]["used"]) == 0
    [closed] = await binance.fetch_orders(ARB)
    assert closed["status"] == "canceled" and closed["clientOrderId"] == "tl-a1"


async def test_market_order_walks_the_book_and_balances_are_exact(
    emulator: BinanceEmulator, binance: Any
) -> None:
    emulator.set_book(ARB, bids=[("0.6500", "1000")], asks=[("0.6600", "30"), ("0.6610", "500")])
    order = await binance.create_order(ARB, "market", "buy", 100, None, {"clientOrderId": "m1"})
    assert order["status"] == "closed" and order["filled"] == 100
    fills = [(D("0.6600"), D(30)), (D("0.6610"), D(70))]
    market = emulator.venue.market(ARB)
    cost = sum(p * q for p, q in fills)
    fees = sum(fee_for(market, p * q, is_maker=False) for p, q in fills)
    balance = await binance.fetch_balance()
    assert dec(balance["USDT"]["total"]) == D(10_000) - cost - fees
    assert dec(balance["ARB"]["total"]) == D(100)
    assert emulator.balances()["USDT"].free == D(10_000) - cost - fees
    trades = await binance.fetch_my_trades(ARB)
    assert [(dec(t["price"]), dec(t["amount"])) for t in trades] == fills
    assert all(t["takerOrMaker"] == "taker" and t["fee"]["currency"] == "USDT" for t in trades)
    book = await binance.fetch_order_book(ARB)
    assert book["asks"][0] == [0.661, 430.0]

    sell = await binance.create_order(ARB, "market", "sell", 100, None, {"clientOrderId": "m2"})
    assert sell["status"] == "closed"
    proceeds = D("0.65") * 100 - fee_for(market, D("0.65") * 100, is_maker=False)
    assert emulator.balances()["USDT"].free == D(10_000) - cost - fees + proceeds
    assert emulator.balances()["ARB"].total == 0


async def test_resting_limit_fills_partially_from_replayed_trades(
    emulator: BinanceEmulator, binance: Any
) -> None:
    emulator.set_balance("USDT", 1_000_000)
    market = emulator.venue.market(ARB)
    hour = emulator.replay.candles(ARB, "1h", since=emulator.replay.now, limit=1)
    assert hour == []  # the coming hour is not visible yet
    limit = D("0.6560")
    order = await binance.create_order(ARB, "limit", "buy", 500_000, float(limit))
    assert order["status"] == "open" and order["filled"] == 0
    emulator.advance()
    candle = emulator.replay.candle(ARB)
    assert candle is not None
    through = [t for t in candle_trades(candle) if t.price < limit]
    assert through, "the recorded hour should trade below the limit"
    expected = round_down(sum((t.quantity for t in through), D(0)), market.amount_step)
    assert D(0) < expected < D(500_000)
    fetched = await binance.fetch_order(order["id"], ARB)
    assert fetched["status"] == "open" and dec(fetched["filled"]) == expected
    [fill] = await binance.fetch_my_trades(ARB)
    assert fill["takerOrMaker"] == "maker" and dec(fill["price"]) == limit
    fee = fee_for(market, expected * limit, is_maker=True)
    balance = await binance.fetch_balance()
    assert dec(balance["USDT"]["total"]) == D(1_000_000) - expected * limit - fee
    assert dec(balance["USDT"]["used"]) == buy_lock(market, D(500_000) - expected, limit)
    assert dec(balance["ARB"]["free"]) == expected


async def test_filter_failures_map_to_invalid_order(binance: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        await binance.private_post_order(
            {
                "symbol": "ARBUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "100",
                "price": "0.60005",
            }
        )
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        await binance.private_post_order(
            {
                "symbol": "ARBUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "100.05",
                "price": "0.6",
            }
        )
    # ccxt maps -1013 by code to BadRequest unless the body names LOT_SIZE or PRICE_FILTER.
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
        await binance.create_order(ARB, "limit", "buy", 1, 0.6)


async def test_insufficient_balance_and_unknown_orders(binance: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        await binance.create_order(ARB, "limit", "buy", 100_000, 0.6)
    with pytest.raises(ccxt.OrderNotFound):
        await binance.fetch_order(None, ARB, {"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound):
        await binance.cancel_order(None, ARB, {"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.BadSymbol):
        await binance.public_get_depth({"symbol": "NOPEUSDT"})


async def test_duplicate_open_client_order_id_is_refused(binance: Any) -> None:
    await binance.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order"):
        await binance.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "dup"})


async def test_bad_signature_key_and_timestamp(emulator: BinanceEmulator) -> None:
    async with ccxt_client(emulator, secret="0" * 64) as wrong_secret:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await wrong_secret.fetch_balance()
    async with ccxt_client(emulator, apiKey="not-our-key") as wrong_key:
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await wrong_key.fetch_balance()
    async with ccxt_client(emulator) as late:
        late.options["timeDifference"] = 120_000  # our clock two minutes behind the server's
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await late.fetch_balance()
        late.options["timeDifference"] = 0
        assert (await late.fetch_balance())["USDT"]["free"] == 10_000


async def test_weight_limit_gives_429_then_418_ban() -> None:
    async with running_emulator(weight_limit=25) as emu, ccxt_client(emu) as client:
        frozen = 1_785_000_030.0  # mid-minute, so the 429 and the next request share a window
        emu.limits = RateLimiter(weight_limit=25, clock=lambda: frozen)
        await client.public_get_exchangeinfo()  # weight 20
        await client.public_get_ping()
        assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "21"
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            await client.public_get_depth({"symbol": "ARBUSDT"})  # +5 = 26 > 25
        with pytest.raises(ccxt.DDoSProtection, match="418"):
            await client.public_get_ping()
        assert int(client.last_response_headers["Retry-After"]) == 120
        emu.reset_rate_limits()
        await client.public_get_ping()


async def test_order_count_headers(binance: Any) -> None:
    await binance.create_order(ARB, "limit", "buy", 100, 0.6)
    await binance.create_order(ARB, "limit", "buy", 100, 0.6)
    assert binance.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "2"
    assert binance.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "2"


async def test_injected_5xx_429_418(emulator: BinanceEmulator, binance: Any) -> None:
    emulator.faults.fail_next(2, status=502, path="/api/v3/account")
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await binance.fetch_balance()
    await binance.fetch_balance()
    emulator.faults.fail_next(1, status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await binance.fetch_ticker(ARB)
    emulator.faults.limit_next(1, status=429, retry_after=7)
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await binance.fetch_ticker(ARB)
    assert binance.last_response_headers["Retry-After"] == "7"
    emulator.faults.limit_next(1, status=418, retry_after=60)
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        await binance.fetch_ticker(ARB)
    with pytest.raises(ccxt.DDoSProtection, match="418"):  # the ban holds
        await binance.fetch_ticker(ARB)


async def test_dropped_answer_after_accept_leaves_the_order(
    emulator: BinanceEmulator, binance: Any
) -> None:
    emulator.faults.drop_next(1)
    with pytest.raises(ccxt.NetworkError):
        await binance.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "lost-1"})
    assert [o.client_order_id for o in emulator.orders()] == ["lost-1"]
    found = await binance.fetch_order(None, ARB, {"origClientOrderId": "lost-1"})
    assert found["status"] == "open" and found["amount"] == 100


async def test_stalled_answer_times_out_but_the_order_exists(emulator: BinanceEmulator) -> None:
    emulator.set_balance("ARB", 10)
    async with ccxt_client(emulator, timeout=500) as client:
        await client.load_markets()
        emulator.faults.stall_next(1, seconds=3, path="/api/v3/order", method="POST")
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order(ARB, "limit", "sell", 10, 0.7, {"clientOrderId": "slow"})
        [order] = emulator.orders()
        assert order.client_order_id == "slow" and order.status == "NEW"
        found = await client.fetch_order(None, ARB, {"origClientOrderId": "slow"})
        assert found["status"] == "open"


async def test_forced_partial_fill_expires_the_rest(
    emulator: BinanceEmulator, binance: Any
) -> None:
    emulator.set_book(ARB, bids=[("0.6500", "1000")], asks=[("0.6600", "1000")])
    emulator.faults.partial_fill(D("0.25"), orders=1)
    order = await binance.create_order(ARB, "market", "buy", 100, None)
    assert order["status"] == "expired" and order["filled"] == 25
    market = emulator.venue.market(ARB)
    spent = D("0.66") * 25 + fee_for(market, D("0.66") * 25, is_maker=False)
    assert emulator.balances()["USDT"] == emulator.balances()["USDT"].__class__(
        "binance", "USDT", D(10_000) - spent, D(0)
    )
    again = await binance.create_order(ARB, "market", "buy", 100, None)
    assert again["status"] == "closed" and again["filled"] == 100


async def test_ioc_and_fok(emulator: BinanceEmulator, binance: Any) -> None:
    emulator.set_book(ARB, bids=[("0.6500", "1000")], asks=[("0.6600", "40")])
    fok = await binance.create_order(ARB, "limit", "buy", 100, 0.66, {"timeInForce": "FOK"})
    assert fok["status"] == "expired" and fok["filled"] == 0
    ioc = await binance.create_order(ARB, "limit", "buy", 100, 0.66, {"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 40
    assert emulator.balances()["USDT"].locked == 0


async def test_admin_endpoint_drives_faults_from_another_process(
    emulator: BinanceEmulator, binance: Any
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{emulator.base_url}/_emulator/faults", json={"kind": "fail", "status": 500}
        ) as answer:
            assert answer.status == 200
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await binance.fetch_time()
        async with http.post(f"{emulator.base_url}/_emulator/advance", json={"steps": 2}) as answer:
            state = await answer.json()
        assert state["now"] == "2024-08-01T02:00:00+00:00"
        async with http.post(
            f"{emulator.base_url}/_emulator/faults", json={"kind": "bogus"}
        ) as answer:
            assert answer.status == 400 and "unknown fault kind" in (await answer.json())["error"]


@pytest.mark.parametrize(
    ("action", "body", "reason"),
    [
        ("book", {"symbol": ARB, "bids": [["NaN", "5"]]}, "ARB/USDT bid level 1 price must be fin"),
        ("book", {"symbol": ARB, "asks": [[float("nan"), 1]]}, "ask level 1 price must be finite"),
        ("book", {"symbol": ARB, "bids": [["0.7", "-1"]]}, "quantity >= 0, got ['0.7', '-1']"),
        ("book", {"symbol": ARB, "bids": [["abc", "1"]]}, "bid level 1 price is not a number"),
        ("book", {"symbol": ARB, "bids": [["0.7"]]}, "must be [price, quantity]"),
        ("book", {"bids": []}, "missing field or unknown name: 'symbol'"),
        ("balance", {"asset": "USDT", "amount": "NaN"}, "balance of USDT must be finite"),
        ("balance", {"asset": "USDT", "amount": "-5"}, "balance of USDT must be a number >= 0"),
        ("advance", {"steps": "x"}, "invalid literal"),
    ],
)
async def test_admin_endpoint_refuses_bad_input_with_400_and_changes_nothing(
    emulator: BinanceEmulator, binance: Any, action: str, body: dict[str, Any], reason: str
) -> None:
    book, balances, now = (
        await binance.fetch_order_book(ARB),
        emulator.balances(),
        emulator.replay.now,
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emulator.base_url}/_emulator/{action}", json=body) as answer:
            assert answer.status == 400
            assert reason in (await answer.json())["error"]
        async with http.post(
            f"{emulator.base_url}/_emulator/book",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as answer:
            assert answer.status == 400
            assert "the body is not valid JSON" in (await answer.json())["error"]
        async with http.post(f"{emulator.base_url}/_emulator/book", json=[1, 2]) as answer:
            assert (
                answer.status == 400 and "must be a JSON object" in (await answer.json())["error"]
            )
    after = await binance.fetch_order_book(ARB)
    assert (after["bids"], after["asks"]) == (book["bids"], book["asks"])
    assert emulator.balances() == balances and emulator.replay.now == now


async def test_klines_stop_at_the_replay_clock(emulator: BinanceEmulator, binance: Any) -> None:
    candles = await binance.fetch_ohlcv(ARB, "1h", limit=3)
    assert candles[-1][0] == binance.parse8601("2024-07-31T23:00:00Z")
    emulator.advance(2)
    candles = await binance.fetch_ohlcv(ARB, "1h", limit=3)
    assert candles[-1][0] == binance.parse8601("2024-08-01T01:00:00Z")
    minutes = await binance.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    assert minutes[-1][0] == binance.parse8601("2024-08-01T01:59:00Z")


# ---------------------------------------------------------------------------- streams
async def test_watch_trades_receives_replayed_prints(
    emulator: BinanceEmulator, binance_pro: Any
) -> None:
    task = asyncio.create_task(binance_pro.watch_trades(ARB))
    await until(lambda: _subscribed(emulator, "arbusdt@trade"), "trade subscription")
    emulator.advance()
    printed = emulator.replay.printed(ARB)
    assert len(printed) == 4  # the 1h candle path: low/high, high/low, close, next open
    assert await asyncio.wait_for(task, 10)
    # watch_trades resolves on the first batch; the rest land in ccxt.pro's trade cache.
    await until(lambda: len(binance_pro.trades.get(ARB, [])) >= len(printed), "all prints")
    received = list(binance_pro.trades[ARB])
    assert [dec(t["price"]) for t in received] == [t.price for t in printed]
    assert [dec(t["amount"]) for t in received] == [t.quantity for t in printed]
    assert [t["timestamp"] for t in received] == [
        binance_pro.parse8601(t.timestamp.isoformat()) for t in printed
    ]


async def test_latency_beyond_the_client_timeout_times_out(emulator: BinanceEmulator) -> None:
    async with ccxt_client(emulator, timeout=200) as client:
        await client.fetch_time()
        emulator.faults.set_latency(1_000)
        with pytest.raises(ccxt.RequestTimeout):
            await client.fetch_time()
        emulator.faults.set_latency(0)
        assert await client.fetch_time() > 0


async def test_watch_order_book_follows_depth_diffs(
    emulator: BinanceEmulator, binance_pro: Any
) -> None:
    book = await asyncio.wait_for(binance_pro.watch_order_book(ARB), 10)
    _, _, asks = emulator.venue.book(ARB, 1)
    assert dec(book["asks"][0][0]) == asks[0][0]
    best_ask, size = asks[0]
    await binance_pro.create_order(ARB, "market", "buy", float(size), None)
    await until(lambda: dec(binance_pro.orderbooks[ARB]["asks"][0][0]) != best_ask, "the ask to go")
    _, _, asks = emulator.venue.book(ARB, 1)
    assert dec(binance_pro.orderbooks[ARB]["asks"][0][0]) == asks[0][0]
    emulator.advance()
    _, bids, asks = emulator.venue.book(ARB, 1)
    await until(
        lambda: dec(binance_pro.orderbooks[ARB]["bids"][0][0]) == bids[0][0], "the new book"
    )
    assert dec(binance_pro.orderbooks[ARB]["asks"][0][0]) == asks[0][0]


async def test_watch_orders_gets_execution_reports(
    emulator: BinanceEmulator, binance_pro: Any
) -> None:
    watcher = asyncio.create_task(binance_pro.watch_orders(ARB))
    await until(lambda: _user_subscribers(emulator) == 1, "user data subscription")
    await binance_pro.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "ws-1"})
    [update] = await asyncio.wait_for(watcher, 10)
    assert update["clientOrderId"] == "ws-1" and update["status"] == "open"
    emulator.set_book(ARB, bids=[("0.6500", "1000")], asks=[("0.6600", "1000")])
    emulator.set_balance("ARB", 50)
    watcher = asyncio.create_task(binance_pro.watch_orders(ARB))
    await binance_pro.create_order(ARB, "market", "sell", 50, None, {"clientOrderId": "ws-2"})
    seen: list[dict[str, Any]] = []
    while not any(o["clientOrderId"] == "ws-2" and o["status"] == "closed" for o in seen):
        seen = await asyncio.wait_for(watcher, 10)
        watcher = asyncio.create_task(binance_pro.watch_orders(ARB))
    watcher.cancel()
    [done] = [o for o in seen if o["clientOrderId"] == "ws-2" and o["status"] == "closed"]
    assert done["filled"] == 50 and dec(done["average"]) == D("0.65")


async def test_stream_disconnect_raises_then_reconnects(
    emulator: BinanceEmulator, binance_pro: Any
) -> None:
    first = asyncio.create_task(binance_pro.watch_trades(ARB))
    await until(lambda: _subscribed(emulator, "arbusdt@trade"), "trade subscription")
    closed = await emulator.disconnect_streams()
    assert closed == 1
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(first, 10)
    second = asyncio.create_task(binance_pro.watch_trades(ARB))
    await until(lambda: _subscribed(emulator, "arbusdt@trade"), "resubscription")
    emulator.advance()
    trades = await asyncio.wait_for(second, 10)
    assert trades and trades[-1]["symbol"] == ARB


def _subscribed(emulator: BinanceEmulator, stream: str) -> bool:
    return any(stream in c.streams for c in emulator.streams._connections)


def _user_subscribers(emulator: BinanceEmulator) -> int:
    return sum(len(c.user_subscriptions) for c in emulator.streams._connections)


async def test_watch_balance_and_ohlcv(emulator: BinanceEmulator, binance_pro: Any) -> None:
    balances = asyncio.create_task(binance_pro.watch_balance())
    await until(lambda: _user_subscribers(emulator) == 1, "user data subscription")
    await binance_pro.create_order(ARB, "limit", "buy", 100, 0.6)
    update = await asyncio.wait_for(balances, 10)
    locked = emulator.balances()["USDT"].locked
    assert locked > 0 and dec(update["USDT"]["used"]) == locked
    candles = asyncio.create_task(binance_pro.watch_ohlcv(ARB, "1h"))
    await until(lambda: _subscribed(emulator, "arbusdt@kline_1h"), "kline subscription")
    emulator.advance()
    [[open_ms, _, high, low, close, _]] = (await asyncio.wait_for(candles, 10))[-1:]
    candle = emulator.replay.candle(ARB)
    assert candle is not None and open_ms == binance_pro.parse8601("2024-08-01T00:00:00Z")
    assert (dec(high), dec(low), dec(close)) == (candle.high, candle.low, candle.close)


async def test_legacy_listen_key_stream(emulator: BinanceEmulator, binance: Any) -> None:
    answer = await binance.public_post_userdatastream()
    key = answer["listenKey"]
    ws_url = emulator.base_url.replace("http", "ws") + f"/ws/{key}"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        await until(lambda: emulator.streams.connection_count == 1, "listenKey connection")
        await binance.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "lk-1"})
        report = await asyncio.wait_for(ws.receive_json(), 10)
        assert report["e"] == "executionReport" and report["c"] == "lk-1" and report["x"] == "NEW"
        position = await asyncio.wait_for(ws.receive_json(), 10)
        assert position["e"] == "outboundAccountPosition"
    async with ccxt_client(emulator, apiKey="someone-else") as stranger:
        with pytest.raises(ccxt.AuthenticationError):
            await stranger.public_post_userdatastream()


@pytest.mark.slow
async def test_main_runs_a_server_another_process_can_drive() -> None:
    code = (
        "from decimal import Decimal; from pathlib import Path; "
        "from tradelib.testing.binance_emulator import main; "
        f"main(0, None, None, {{'USDT': Decimal(500)}}, Path({str(DATA)!r}), None)"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        while len(printed) < 3:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "the emulator exited before printing its URL and keys"
            for label in ("Binance emulator listening on ", "API key:", "API secret:"):
                if line.startswith(label):
                    printed[label] = line[len(label) :].split()[0]
        url = printed["Binance emulator listening on "]
        api_key, secret = printed["API key:"], printed["API secret:"]
        assert len(api_key) == 64 and len(secret) == 64
        client = ccxt_async.binance(
            {**ccxt_config_for(url, api_key, secret), "enableRateLimit": False}
        )
        try:
            assert (await client.fetch_balance())["USDT"]["free"] == 500
            async with aiohttp.ClientSession() as http:
                await http.post(f"{url}/_emulator/faults", json={"kind": "fail", "status": 503})
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    await client.fetch_balance()
                await http.post(f"{url}/_emulator/balance", json={"asset": "ETH", "amount": "2"})
                async with http.get(f"{url}/_emulator/balances") as answer:
                    assert (await answer.json())["ETH"] == {"free": "2", "locked": "0"}
        finally:
            await client.close()
    finally:
        process.terminate()
        await process.wait()


async def test_other_rest_endpoints_ccxt_uses(emulator: BinanceEmulator, binance: Any) -> None:
    emulator.set_book(ARB, bids=[("0.6500", "1000")], asks=[("0.6600", "1000")])
    ack = await binance.create_order(
        ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "ack-1", "newOrderRespType": "ACK"}
    )
    assert ack["id"] and ack["clientOrderId"] == "ack-1"
    await binance.create_order(ARB, "limit", "buy", 100, 0.61, {"clientOrderId": "ack-2"})
    cancelled = await binance.cancel_all_orders(ARB)
    # Like Binance, a cancel answer's clientOrderId is the cancel's own id; ours is orig...
    assert sorted(o["info"]["origClientOrderId"] for o in cancelled) == ["ack-1", "ack-2"]
    assert all(o["status"] == "canceled" for o in cancelled)
    with pytest.raises(ccxt.OrderNotFound):
        await binance.cancel_all_orders(ARB)
    for _ in range(3):
        await binance.create_order(ARB, "market", "buy", 10, None)
    mine = await binance.fetch_my_trades(ARB)
    assert len(mine) == 3
    later = await binance.fetch_my_trades(ARB, params={"fromId": mine[1]["id"]})
    assert [t["id"] for t in later] == [t["id"] for t in mine[1:]]
    assert len(await binance.fetch_my_trades(ARB, since=mine[0]["timestamp"])) == 3
    public = await binance.fetch_trades(ARB)
    assert [dec(t["price"]) for t in public[-3:]] == [D("0.66")] * 3
    bids_asks = await binance.fetch_bids_asks([ARB])
    assert (bids_asks[ARB]["bid"], bids_asks[ARB]["ask"]) == (0.65, 0.66)
    prices = await binance.fetch_last_prices([ARB])
    assert prices[ARB]["price"] == 0.66
    assert (await binance.fetch_time()) > 0


def test_order_count_limit_and_ban_doubling() -> None:
    now = [1_785_000_003.0]
    limiter = RateLimiter(orders_per_10s=3, clock=lambda: now[0])
    for count in range(1, 4):
        assert limiter.admit(1, is_order=True)["X-MBX-ORDER-COUNT-10S"] == str(count)
    with pytest.raises(ApiError) as refused:
        limiter.admit(1, is_order=True)
    assert refused.value.status == 429 and refused.value.code == -1015
    now[0] += 10  # the next 10-second window
    assert limiter.admit(1, is_order=True)["X-MBX-ORDER-COUNT-10S"] == "1"
    weights = RateLimiter(weight_limit=10, clock=lambda: now[0])
    for ban in (120, 240):
        with pytest.raises(ApiError) as limited:
            weights.admit(11, is_order=False)
        assert limited.value.status == 429
        with pytest.raises(ApiError) as banned:
            weights.admit(1, is_order=False)
        assert banned.value.status == 418 and banned.value.headers["Retry-After"] == str(ban)
        now[0] += ban + 60


async def test_point_ccxt_at_rewrites_an_existing_client(emulator: BinanceEmulator) -> None:
    client = ccxt_pro.binance(
        {"apiKey": emulator.api_key, "secret": emulator.api_secret, "enableRateLimit": False}
    )
    try:
        point_ccxt_at(client, emulator.base_url)
        assert client.urls["api"]["ws"]["spot"] == emulator.base_url.replace("http", "ws") + (
            "/stream/ws"
        )
        assert client.urls["api"]["ws"]["ws-api"]["spot"].endswith("/ws-api/v3")
        assert all(
            url.startswith(emulator.base_url)
            for url in client.urls["api"].values()
            if isinstance(url, str)
        )
        await client.load_markets()
        assert (await client.fetch_balance())["USDT"]["free"] == 10_000
        watcher = asyncio.create_task(client.watch_bids_asks([ARB]))
        await until(lambda: _subscribed(emulator, "arbusdt@bookTicker"), "bookTicker stream")
        emulator.set_book(ARB, bids=[("0.6510", "10")], asks=[("0.6600", "7")])
        quote = await asyncio.wait_for(watcher, 10)
        assert (quote[ARB]["bid"], quote[ARB]["ask"], quote[ARB]["askVolume"]) == (0.651, 0.66, 7)
    finally:
        await client.close()


async def test_missing_mandatory_parameter(binance: Any) -> None:
    with pytest.raises(ccxt.BadRequest, match=r"-1102.*timeInForce"):
        await binance.private_post_order(
            {"symbol": "ARBUSDT", "side": "BUY", "type": "LIMIT", "quantity": "100", "price": "0.6"}
        )
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        await binance.create_order(ARB, "limit", "buy", 100, 0.6, {"clientOrderId": "bad id!"})


@settings(max_examples=25, deadline=None)
@given(
    actions=st.lists(
        st.tuples(
            st.sampled_from(["limit_buy", "limit_sell", "market_buy", "market_sell", "cancel"]),
            st.integers(min_value=1, max_value=400_000),
            st.integers(min_value=-60, max_value=60),
        ),
        min_size=1,
        max_size=12,
    ),
    steps=st.integers(min_value=0, max_value=3),
)
def test_property_venue_never_overfills_or_goes_negative(
    actions: list[tuple[str, int, int]], steps: int
) -> None:
    replay = ReplayMarket.from_data_dir(DATA, start=EMULATOR_START, symbols=[ARB])
    markets = {ARB: replay.market(ARB)}
    start = {"USDT": D(50_000), "ARB": D(50_000)}
    account = Account(start)
    venue = Venue(replay, account, markets)
    market = markets[ARB]
    for number, (kind, tenths, ticks) in enumerate(actions):
        qty = D(tenths) / 10
        last = venue.last_price(ARB) or D(1)
        price = last + market.price_tick * ticks
        try:
            if kind == "cancel":
                open_orders = [o for o in venue.orders(ARB) if o.is_open]
                if open_orders:
                    venue.cancel(ARB, open_orders[0].order_id, None)
                continue
            side = Side.BUY if kind.endswith("buy") else Side.SELL
            is_limit = kind.startswith("limit")
            venue.place(
                ARB,
                side,
                OrderType.LIMIT if is_limit else OrderType.MARKET,
                TimeInForce.GTC,
                qty,
                price if is_limit else None,
                f"p-{number}",
            )
        except ApiError as refused:
            assert refused.code in (-1013, -2010)
        if steps and number == len(actions) // 2:
            venue.advance(steps=steps)
    bought = sold = spent = received = D(0)
    for order in venue.orders(ARB):
        assert order.executed <= order.quantity
        assert order.executed == sum((f.quantity for f in order.fills), D(0))
        if not order.is_open:
            assert account.lock_of(order.lock_key) == 0
    for fill in venue.fills(ARB):
        notional = fill.price * fill.quantity
        if fill.side is Side.BUY:
            bought, spent = bought + fill.quantity, spent + notional + fill.commission
        else:
            sold, received = sold + fill.quantity, received + notional - fill.commission
    for asset in ("USDT", "ARB"):
        assert account.free(asset) >= 0 and account.locked(asset) >= 0
    assert account.total("USDT") == start["USDT"] - spent + received
    assert account.total("ARB") == start["ARB"] + bought - sold
