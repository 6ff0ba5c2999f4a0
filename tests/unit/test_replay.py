"""ReplayMarket over the recorded candles and trades in data/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tradelib.errors import DataError, UnknownSymbol
from tradelib.exchange.replay import ReplayMarket, load_binance_markets

DATA = Path(__file__).resolve().parents[2] / "data"
START = datetime(2024, 8, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "ARB/USDT": pd.read_feather(DATA / "candles/1h/ARB_USDT-1h.feather"),
        "BTC/USDT": pd.read_feather(DATA / "candles/1h/BTC_USDT-1h.feather"),
    }


def test_every_recorded_price_is_on_the_market_tick() -> None:
    markets = load_binance_markets()
    assert len(markets) == 21
    for symbol, market in markets.items():
        base = symbol.split("/")[0]
        frame = pd.read_feather(DATA / f"candles/1h/{base}_USDT-1h.feather").tail(500)
        for value in frame[["open", "high", "low", "close"]].to_numpy().ravel():
            assert Decimal(repr(float(value))) % market.price_tick == 0, (symbol, value)


def test_clock_shows_only_closed_candles_and_prints_their_path(
    frames: dict[str, pd.DataFrame],
) -> None:
    replay = ReplayMarket(frames, load_binance_markets(), start=START)
    arb = frames["ARB/USDT"].set_index("date")
    before = replay.candle("ARB/USDT")
    assert before is not None and before.open_time == START - timedelta(hours=1)
    printed = replay.step()
    assert replay.now == START + timedelta(hours=1)
    candle = replay.candle("ARB/USDT")
    assert candle is not None and candle.open_time == START
    close = float(arb["close"].loc[pd.Timestamp(START)])
    assert candle.close == Decimal(repr(close))
    arb_prints = [t for t in printed if t.symbol == "ARB/USDT"]
    assert {t.price for t in arb_prints} >= {candle.low, candle.high, candle.close}
    assert all(START < t.timestamp <= replay.now for t in printed)
    assert printed == sorted(printed, key=lambda t: (t.timestamp, t.symbol))
    assert replay.last_price("ARB/USDT") == arb_prints[-1].price
    assert replay.candles("ARB/USDT", "1h", limit=2)[-1] == candle


def test_book_is_on_tick_on_step_and_around_the_last_price(
    frames: dict[str, pd.DataFrame],
) -> None:
    replay = ReplayMarket(frames, load_binance_markets(), start=START)
    for symbol in ("ARB/USDT", "BTC/USDT"):
        market = replay.market(symbol)
        book = replay.book(symbol)
        last = replay.last_price(symbol)
        assert last is not None
        assert book.bids[0][0] < book.asks[0][0]
        assert book.bids[0][0] <= last <= book.asks[0][0]
        assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
        assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
        for price, size in book.bids + book.asks:
            assert price % market.price_tick == 0
            assert size % market.amount_step == 0 and size > 0
        ticker = replay.ticker(symbol)
        assert (ticker.bid, ticker.ask) == (book.bids[0][0], book.asks[0][0])


def test_one_minute_candles_give_a_finer_trade_path() -> None:
    replay = ReplayMarket.from_data_dir(DATA, start=START, symbols=["BTC/USDT"])
    printed = replay.step()
    assert len(printed) == 60 * 4
    minutes = replay.candles("BTC/USDT", "1m", limit=60)
    assert len(minutes) == 60 and minutes[-1].open_time == START + timedelta(minutes=59)
    hour = replay.candles("BTC/USDT", "1h", limit=1)[0]
    assert max(c.high for c in minutes) == hour.high
    assert min(c.low for c in minutes) == hour.low
    four = replay.candles("BTC/USDT", "4h", limit=1)[0]
    assert four.open_time == START - timedelta(hours=4)


def test_recorded_trades_replace_the_synthetic_path() -> None:
    start = datetime(2021, 1, 8, tzinfo=UTC)
    replay = ReplayMarket.from_data_dir(DATA, start=start, symbols=["BTC/USDT"])
    printed = replay.advance_to(start + timedelta(seconds=10))
    tape = pd.read_parquet(DATA / "trades/btcusdt-trades.parquet")
    expected = tape[tape["timestamp"] <= pd.Timestamp(start + timedelta(seconds=10))]
    assert len(printed) == len(expected) > 0
    assert printed[0].trade_id == str(expected["trade_id"].iloc[0])
    assert printed[0].price == Decimal(repr(float(expected["price"].iloc[0])))


def test_bad_input_is_refused(frames: dict[str, pd.DataFrame]) -> None:
    replay = ReplayMarket(frames, load_binance_markets(), start=START)
    with pytest.raises(UnknownSymbol):
        replay.book("NOPE/USDT")
    replay.step()
    with pytest.raises(DataError, match="cannot go back"):
        replay.advance_to(START)
    with pytest.raises(DataError):
        replay.candles("ARB/USDT", "1m")
    with pytest.raises(DataError):
        ReplayMarket(frames, {}, start=START)


def test_symbol_before_its_listing_has_no_price(frames: dict[str, pd.DataFrame]) -> None:
    replay = ReplayMarket(frames, load_binance_markets(), start=datetime(2021, 1, 1, tzinfo=UTC))
    assert replay.last_price("ARB/USDT") is None
    assert replay.candle("ARB/USDT") is None
    assert replay.book("ARB/USDT").bids == []
