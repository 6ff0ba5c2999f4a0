"""Public market-data endpoints: ping, time, exchangeInfo, depth, trades, klines, tickers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from tradelib.domain import from_ms, timeframe_delta, to_ms
from tradelib.errors import DataError
from tradelib.testing.binance_emulator.context import (
    Context,
    Params,
    int_param,
    limit_param,
    wall_ms,
)
from tradelib.testing.binance_emulator.markets import exchange_info
from tradelib.testing.binance_emulator.wire import bad_request, fmt, mandatory, symbol_id


async def ping(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ping."""
    return {}


async def server_time(ctx: Context, params: Params) -> Any:
    """GET /api/v3/time."""
    return {"serverTime": wall_ms()}


async def exchange_information(ctx: Context, params: Params) -> Any:
    """GET /api/v3/exchangeInfo (all symbols, or ?symbol=)."""
    markets = ctx.venue.markets
    if params.get("symbol"):
        symbol = ctx.symbol(params)
        markets = {symbol: markets[symbol]}
    return exchange_info(markets, wall_ms(), ctx.weight_limit)


async def depth(ctx: Context, params: Params) -> Any:
    """GET /api/v3/depth."""
    symbol = ctx.symbol(params)
    update_id, bids, asks = ctx.venue.book(symbol, limit_param(params, 100, 5000))
    return {
        "lastUpdateId": update_id,
        "bids": [[fmt(p), fmt(q)] for p, q in bids],
        "asks": [[fmt(p), fmt(q)] for p, q in asks],
    }


async def trades(ctx: Context, params: Params) -> Any:
    """GET /api/v3/trades."""
    symbol = ctx.symbol(params)
    return [
        {
            "id": t.trade_id,
            "price": fmt(t.price),
            "qty": fmt(t.quantity),
            "quoteQty": fmt(t.price * t.quantity),
            "time": t.time_ms,
            "isBuyerMaker": t.buyer_is_maker,
            "isBestMatch": True,
        }
        for t in ctx.venue.recent_trades(symbol, limit_param(params, 500, 1000))
    ]


async def agg_trades(ctx: Context, params: Params) -> Any:
    """GET /api/v3/aggTrades (ccxt's default for fetch_trades); one trade per aggregate."""
    symbol = ctx.symbol(params)
    from_id, start, end = (int_param(params, n) for n in ("fromId", "startTime", "endTime"))
    tape = [
        t
        for t in ctx.venue.recent_trades(symbol, 1000)
        if (from_id is None or t.trade_id >= from_id)
        and (start is None or t.time_ms >= start)
        and (end is None or t.time_ms <= end)
    ]
    limit = limit_param(params, 500, 1000)
    chosen = tape[:limit] if from_id is not None or start is not None else tape[-limit:]
    return [
        {
            "a": t.trade_id,
            "p": fmt(t.price),
            "q": fmt(t.quantity),
            "f": t.trade_id,
            "l": t.trade_id,
            "T": t.time_ms,
            "m": t.buyer_is_maker,
            "M": True,
        }
        for t in chosen
    ]


async def klines(ctx: Context, params: Params) -> Any:
    """GET /api/v3/klines from the recorded candles, closed ones only, up to the replay clock."""
    symbol = ctx.symbol(params)
    interval = params.get("interval")
    if not interval:
        raise mandatory("interval")
    try:
        span = timeframe_delta(interval)
    except DataError:
        raise bad_request(-1120, "Invalid interval.") from None
    start, end = int_param(params, "startTime"), int_param(params, "endTime")
    try:
        candles = ctx.venue.replay.candles(
            symbol,
            interval,
            since=from_ms(start) if start is not None else None,
            limit=limit_param(params, 500, 1000),
            until=from_ms(end) + span if end is not None else None,
        )
    except DataError:
        return []  # no recorded data for this symbol/interval: Binance answers an empty list
    span_ms = int(span / timedelta(milliseconds=1))
    rows = []
    for c in candles:
        open_ms = to_ms(c.open_time)
        quote = c.volume * (c.open + c.close) / 2
        rows.append(
            [
                open_ms,
                fmt(c.open),
                fmt(c.high),
                fmt(c.low),
                fmt(c.close),
                fmt(c.volume),
                open_ms + span_ms - 1,
                fmt(quote),
                4,
                fmt(c.volume / 2),
                fmt(quote / 2),
                "0",
            ]
        )
    return rows


def _ticker_symbols(ctx: Context, params: Params) -> list[str]:
    if params.get("symbol"):
        return [ctx.symbol(params)]
    if params.get("symbols"):
        ids = params["symbols"].strip("[]").replace('"', "").split(",")
        return [ctx.symbol({"symbol": i}) for i in ids if i]
    return sorted(s for s in ctx.venue.markets if s in ctx.venue.replay.symbols)


def _one_or_list(params: Params, rows: list[dict[str, Any]]) -> Any:
    return rows[0] if params.get("symbol") else rows


async def ticker_24hr(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ticker/24hr from the last day of closed candles."""
    rows = []
    for symbol in _ticker_symbols(ctx, params):
        venue = ctx.venue
        stats = venue.replay.day_stats(symbol) if symbol in venue.replay.symbols else {}
        _, bids, asks = venue.book(symbol, 1)
        last = venue.last_price(symbol) or Decimal(0)
        opened = stats.get("open", last)
        volume = stats.get("volume", Decimal(0))
        quote = stats.get("quote_volume", Decimal(0))
        tape = venue.recent_trades(symbol, 1000)
        rows.append(
            {
                "symbol": symbol_id(symbol),
                "priceChange": fmt(last - opened),
                "priceChangePercent": f"{((last - opened) / opened * 100) if opened else 0:.3f}",
                "weightedAvgPrice": fmt(quote / volume if volume else last),
                "prevClosePrice": fmt(opened),
                "lastPrice": fmt(last),
                "lastQty": fmt(tape[-1].quantity if tape else Decimal(0)),
                "bidPrice": fmt(bids[0][0] if bids else None),
                "bidQty": fmt(bids[0][1] if bids else None),
                "askPrice": fmt(asks[0][0] if asks else None),
                "askQty": fmt(asks[0][1] if asks else None),
                "openPrice": fmt(opened),
                "highPrice": fmt(stats.get("high", last)),
                "lowPrice": fmt(stats.get("low", last)),
                "volume": fmt(volume),
                "quoteVolume": fmt(quote),
                "openTime": venue.now_ms - 86_400_000,
                "closeTime": venue.now_ms,
                "firstId": tape[0].trade_id if tape else -1,
                "lastId": tape[-1].trade_id if tape else -1,
                "count": len(tape),
            }
        )
    return _one_or_list(params, rows)


async def ticker_price(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ticker/price."""
    rows = [
        {"symbol": symbol_id(s), "price": fmt(ctx.venue.last_price(s))}
        for s in _ticker_symbols(ctx, params)
    ]
    return _one_or_list(params, rows)


async def book_ticker(ctx: Context, params: Params) -> Any:
    """GET /api/v3/ticker/bookTicker."""
    rows = []
    for symbol in _ticker_symbols(ctx, params):
        _, bids, asks = ctx.venue.book(symbol, 1)
        rows.append(
            {
                "symbol": symbol_id(symbol),
                "bidPrice": fmt(bids[0][0] if bids else None),
                "bidQty": fmt(bids[0][1] if bids else None),
                "askPrice": fmt(asks[0][0] if asks else None),
                "askQty": fmt(asks[0][1] if asks else None),
            }
        )
    return _one_or_list(params, rows)


async def avg_price(ctx: Context, params: Params) -> Any:
    """GET /api/v3/avgPrice (the last price stands in for the 5-minute average)."""
    symbol = ctx.symbol(params)
    return {"mins": 5, "price": fmt(ctx.venue.last_price(symbol)), "closeTime": ctx.venue.now_ms}
