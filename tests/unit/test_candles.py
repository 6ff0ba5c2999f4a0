"""CandleAggregator against pandas resample on real recorded Binance trades, plus properties."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tradelib.domain import Candle, MarketTrade, pandas_freq
from tradelib.errors import DataError
from tradelib.marketdata import (
    AGGREGATED_TIMEFRAMES,
    CandleAggregator,
    CandleGap,
    aggregate_trades,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "trades"
OHLCV = ["open", "high", "low", "close", "volume"]


def _load_xrp() -> pd.DataFrame:
    df = pd.read_feather(DATA / "XRP_ETH-trades.feather")
    return pd.DataFrame(
        {
            "ts": df["timestamp"].astype("int64"),
            "id": df["id"].astype("int64"),
            "price": [Decimal(repr(x)) for x in df["price"]],
            "qty": [Decimal(repr(x)) for x in df["amount"]],
            "price_f": df["price"],
            "qty_f": df["amount"],
        }
    )


def _load_btc() -> pd.DataFrame:
    df = pd.read_parquet(DATA / "btcusdt-trades.parquet")
    return pd.DataFrame(
        {
            "ts": (df["timestamp"].astype("int64") // 1_000_000).astype("int64")
            if str(df["timestamp"].dtype).startswith("datetime64[ns")
            else df["timestamp"].dt.as_unit("ms").astype("int64"),
            "id": df["trade_id"].astype("int64"),
            "price": [Decimal(repr(x)) for x in df["price"]],
            "qty": [Decimal(repr(x)) for x in df["quantity"]],
            "price_f": df["price"],
            "qty_f": df["quantity"],
        }
    )


XRP = _load_xrp()
BTC = _load_btc()


def _run(
    trades: pd.DataFrame, symbol: str, order: list[int] | None = None, grace_s: float = 2
) -> tuple[CandleAggregator, dict[str, list[Candle]]]:
    agg = CandleAggregator(symbol, grace=timedelta(seconds=grace_s))
    rows = list(zip(trades.ts.tolist(), trades.price, trades.qty, trades.id.tolist(), strict=True))
    if order is not None:
        rows = [rows[i] for i in order]
    out: list[Candle] = []
    for ts, price, qty, tid in rows:
        out += agg.add_trade(ts, price, qty, tid)
    out += agg.flush()
    by_tf: dict[str, list[Candle]] = {tf: [] for tf in AGGREGATED_TIMEFRAMES}
    for candle in out:
        by_tf[candle.timeframe].append(candle)
    return agg, by_tf


def _frame(candles: list[Candle], as_float: bool = False) -> pd.DataFrame:
    conv = float if as_float else (lambda d: d)
    rows = [(c.open_time, *(conv(getattr(c, f)) for f in OHLCV)) for c in candles]
    frame = pd.DataFrame(rows, columns=["open_time", *OHLCV]).set_index("open_time")
    frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
    return frame


def _resample(prices: pd.Series, qtys: pd.Series, freq: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "open": prices.resample(freq).first(),
            "high": prices.resample(freq).max(),
            "low": prices.resample(freq).min(),
            "close": prices.resample(freq).last(),
            "volume": qtys.resample(freq).sum(),
        }
    ).dropna(subset=["open"])  # pandas emits NaN rows for empty minutes; we emit no candle
    frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
    frame.index.name = "open_time"
    return frame


def _series(trades: pd.DataFrame, col: str) -> pd.Series:
    index = pd.to_datetime(trades.ts, unit="ms", utc=True)
    dtype = object if not col.endswith("_f") else "float64"
    return pd.Series(trades[col].to_numpy(), index=index, dtype=dtype)


@pytest.mark.parametrize(("name", "trades"), [("XRP/ETH", XRP), ("BTC/USDT", BTC)])
@pytest.mark.parametrize("timeframe", AGGREGATED_TIMEFRAMES)
def test_equals_pandas_resample_of_trades_exactly_in_decimal(
    name: str, trades: pd.DataFrame, timeframe: str
) -> None:
    _, by_tf = _run(trades, name)
    expected = _resample(_series(trades, "price"), _series(trades, "qty"), pandas_freq(timeframe))
    mine = _frame(by_tf[timeframe])
    assert len(mine) == len(expected) > 0
    assert mine.index.equals(expected.index)
    for col in OHLCV:  # Decimal == Decimal, every value, no tolerance
        assert mine[col].tolist() == expected[col].tolist(), col


@pytest.mark.parametrize("timeframe", AGGREGATED_TIMEFRAMES)
def test_prices_equal_float_pandas_resample_and_volume_within_float_rounding(
    timeframe: str,
) -> None:
    _, by_tf = _run(XRP, "XRP/ETH")
    expected = _resample(_series(XRP, "price_f"), _series(XRP, "qty_f"), pandas_freq(timeframe))
    mine = _frame(by_tf[timeframe], as_float=True)
    assert mine.index.equals(expected.index)
    for col in ["open", "high", "low", "close"]:  # selections of trade prices: exact in float
        assert (mine[col].to_numpy() == expected[col].to_numpy()).all(), col
    # pandas sums float64 (inexact in general); ours is the exact Decimal sum rounded once.
    assert mine["volume"].to_numpy() == pytest.approx(expected["volume"].to_numpy(), rel=1e-12)


def test_higher_timeframes_equal_pandas_resample_of_our_1m_candles() -> None:
    _, by_tf = _run(XRP, "XRP/ETH")
    one = _frame(by_tf["1m"])
    for timeframe in ("5m", "15m", "1h", "4h"):
        freq = pandas_freq(timeframe)
        expected = pd.DataFrame(
            {
                "open": one["open"].resample(freq).first(),
                "high": one["high"].resample(freq).max(),
                "low": one["low"].resample(freq).min(),
                "close": one["close"].resample(freq).last(),
                "volume": one["volume"].resample(freq).sum(),
            }
        ).dropna(subset=["open"])
        mine = _frame(by_tf[timeframe])
        assert mine.index.equals(expected.index), timeframe
        for col in OHLCV:
            assert mine[col].tolist() == expected[col].tolist(), (timeframe, col)


@pytest.mark.parametrize(("timeframe", "file"), [("1m", "XRP_ETH-1m"), ("5m", "XRP_ETH-5m")])
def test_matches_the_recorded_binance_candles(timeframe: str, file: str) -> None:
    """The bundled candles cover the same window; every one of them matches ours exactly.

    (That all 2,469 1m and 706 5m candles match to the last digit, volume included, suggests the
    recorder derived them from these same aggregate trades; we assert the full match so any drift
    in our aggregation fails here.)
    """
    recorded = pd.read_feather(DATA / f"{file}.feather").set_index("date")
    _, by_tf = _run(XRP, "XRP/ETH")
    mine = _frame(by_tf[timeframe], as_float=True)
    assert len(recorded) == len(mine)
    assert mine.index.equals(pd.DatetimeIndex(recorded.index).as_unit("ns"))
    equal_rows = (mine[OHLCV].to_numpy() == recorded[OHLCV].to_numpy()).all(axis=1)
    assert int(equal_rows.sum()) == len(recorded)


def test_each_candle_emitted_once_and_gaps_are_explicit() -> None:
    agg = CandleAggregator("XRP/ETH")
    gaps: list[CandleGap] = []
    seen: list[Candle] = []
    agg.subscribe(on_candle=seen.append, on_gap=gaps.append, timeframes=["1m"])
    returned: list[Candle] = []
    for ts, price, qty, tid in zip(XRP.ts, XRP.price, XRP.qty, XRP.id, strict=True):
        returned += agg.add_trade(int(ts), price, qty, int(tid))
    returned += agg.flush()
    one = [c for c in returned if c.timeframe == "1m"]
    assert seen == one  # subscribers get exactly what the calls return
    times = [c.open_time for c in one]
    assert len(set(times)) == len(times) and times == sorted(times)
    assert all(c.volume > 0 for c in one)  # no invented candle for a quiet minute
    missing = sum(g.missing for g in gaps)
    span = (times[-1] - times[0]) // timedelta(minutes=1) + 1
    assert missing == span - len(one) > 0
    for gap in gaps:  # every gap sits exactly between two emitted candles
        assert gap.start - timedelta(minutes=1) in set(times) and gap.end in set(times)
    assert agg.flush() == []
    assert agg.advance(datetime(2030, 1, 1, tzinfo=UTC)) == []


def test_duplicates_are_rejected_with_a_reason_and_change_nothing() -> None:
    _, clean = _run(BTC, "BTC/USDT")
    agg = CandleAggregator("BTC/USDT")
    out: list[Candle] = []
    with capture_logs() as logs:
        for ts, price, qty, tid in zip(BTC.ts, BTC.price, BTC.qty, BTC.id, strict=True):
            out += agg.add_trade(int(ts), price, qty, int(tid))
            out += agg.add_trade(int(ts), price, qty, int(tid))  # replayed frame
    out += agg.flush()
    assert agg.stats.duplicate == len(BTC) and agg.stats.accepted == len(BTC)
    assert [c for c in out if c.timeframe == "1m"] == clean["1m"]
    assert sum(1 for e in logs if e.get("reason") == "duplicate") == len(BTC)


def test_late_trade_beyond_grace_is_rejected_and_closed_candle_is_final() -> None:
    agg = CandleAggregator("BTC/USDT", grace=timedelta(seconds=2))
    t0 = 1_610_064_000_000  # 2021-01-08 00:00:00 UTC
    assert agg.add_trade(t0 + 10_000, Decimal("100"), Decimal("1"), 1) == []
    # a trade 1.5 s late into the next minute's grace still amends minute 0
    assert agg.add_trade(t0 + 61_000, Decimal("101"), Decimal("1"), 3) == []
    assert agg.add_trade(t0 + 59_000, Decimal("99"), Decimal("2"), 2) == []
    closed = agg.add_trade(t0 + 62_000, Decimal("102"), Decimal("1"), 4)
    assert [c.timeframe for c in closed] == ["1m"]
    assert (closed[0].open, closed[0].low, closed[0].close) == (100, 99, 99)
    assert closed[0].volume == 3
    with capture_logs() as logs:
        assert agg.add_trade(t0 + 59_500, Decimal("1"), Decimal("1"), 5) == []
    assert agg.stats.late == 1
    assert logs[0]["reason"] == "late" and "closed" in logs[0]["detail"]


def test_future_nan_and_non_positive_trades_are_rejected() -> None:
    agg = CandleAggregator("BTC/USDT")
    now = 1_610_064_000_000
    with capture_logs() as logs:
        agg.add_trade(now + 60_000, Decimal("1"), Decimal("1"), 1, now_ms=now)
        agg.add_trade(now, Decimal("NaN"), Decimal("1"), 2, now_ms=now)
        agg.add_trade(now, Decimal("0"), Decimal("1"), 3, now_ms=now)
        agg.add_trade(now, Decimal("5"), Decimal("-1"), 4, now_ms=now)
        agg.add_trade(now, Decimal("Infinity"), Decimal("1"), 5, now_ms=now)
    assert agg.stats.future == 1 and agg.stats.invalid == 4 and agg.stats.accepted == 0
    assert [e["reason"] for e in logs] == ["future", "invalid", "invalid", "invalid", "invalid"]
    assert agg.watermark is None  # the future trade did not move time forward


def test_advance_closes_quiet_minutes_and_partial_shows_the_open_candle() -> None:
    agg = CandleAggregator("BTC/USDT", grace=timedelta(seconds=2))
    t0 = datetime(2021, 1, 8, tzinfo=UTC)
    ms = int(t0.timestamp() * 1000)
    agg.add_trade(ms + 1_000, Decimal("10"), Decimal("1"), 1)
    agg.add_trade(ms + 2_000, Decimal("12"), Decimal("1"), 2)
    part = agg.partial("5m")
    assert part is not None and not part.closed and part.high == 12 and part.volume == 2
    assert agg.advance(t0 + timedelta(seconds=61)) == []  # still inside the grace window
    closed = agg.advance(t0 + timedelta(seconds=62))
    assert [(c.timeframe, c.close) for c in closed] == [("1m", Decimal("12"))]
    closed = agg.advance(t0 + timedelta(hours=4, seconds=2))
    assert [c.timeframe for c in closed] == ["5m", "15m", "1h", "4h"]
    assert agg.partial("1m") is None


def _candle(symbol: str, timeframe: str, open_time: datetime, ohlcv: str) -> Candle:
    o, h, low, c, v = (Decimal(x) for x in ohlcv.split())
    return Candle(symbol, timeframe, open_time, o, h, low, c, v)


def test_add_candle_backfills_a_minute_and_feeds_higher_timeframes() -> None:
    agg = CandleAggregator("BTC/USDT", timeframes=("1m", "5m"))
    t0 = datetime(2021, 1, 8, tzinfo=UTC)
    ms = int(t0.timestamp() * 1000)
    agg.add_trade(ms + 1_000, Decimal("10"), Decimal("1"), 1)
    rest = _candle("BTC/USDT", "1m", t0 + timedelta(minutes=1), "13 15 9 14 7")
    out = agg.add_candle(rest)
    assert [(c.timeframe, c.open_time.minute) for c in out] == [("1m", 0), ("1m", 1)]
    out = agg.add_candle(_candle("BTC/USDT", "1m", t0 + timedelta(minutes=4), "14 14 14 14 1"))
    five = [c for c in out if c.timeframe == "5m"]
    assert five == [_candle("BTC/USDT", "5m", t0, "10 15 9 14 9")]
    assert agg.add_candle(rest) == [] and agg.stats.late == 1  # no duplicate candle
    with pytest.raises(DataError):
        agg.add_candle(_candle("ETH/USDT", "1m", t0, "1 1 1 1 1"))


def test_aggregate_trades_accepts_market_trades_in_any_order() -> None:
    trades = [
        MarketTrade("BTC/USDT", str(tid), p, q, datetime.fromtimestamp(ts / 1000, tz=UTC))
        for ts, p, q, tid in zip(BTC.ts, BTC.price, BTC.qty, BTC.id, strict=True)
    ]
    random.Random(7).shuffle(trades)
    _, by_tf = _run(BTC, "BTC/USDT")
    assert aggregate_trades("BTC/USDT", trades) == by_tf


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), grace=st.integers(1, 30))
def test_any_arrival_order_within_grace_gives_the_same_candles(seed: int, grace: int) -> None:
    """Each trade delayed by < grace seconds: every trade arrives before its minute closes."""
    rng = random.Random(seed)
    delays = [rng.uniform(0, grace * 1000 - 1) for _ in range(len(XRP))]
    order = sorted(range(len(XRP)), key=lambda i: XRP.ts.iloc[i] + delays[i])
    _, expected = _run(XRP, "XRP/ETH", grace_s=grace)
    agg, got = _run(XRP, "XRP/ETH", order=order, grace_s=grace)
    assert agg.stats.late == 0 and agg.stats.accepted == len(XRP)
    assert got == expected


price_st = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**6), places=4)
qty_st = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1000), places=8)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6 * 3_600_000), price_st, qty_st), min_size=1, max_size=300)
)
def test_generated_trades_match_pandas_and_candles_are_consistent(
    rows: list[tuple[int, Decimal, Decimal]],
) -> None:
    base = 1_700_000_000_000 - 1_700_000_000_000 % 14_400_000
    rows.sort(key=lambda r: r[0])
    trades = pd.DataFrame(
        {
            "ts": [base + r[0] for r in rows],
            "id": list(range(len(rows))),
            "price": [r[1] for r in rows],
            "qty": [r[2] for r in rows],
        }
    )
    _, by_tf = _run(trades, "X/Y")
    for timeframe, candles in by_tf.items():
        for c in candles:
            assert c.high >= max(c.open, c.close) and c.low <= min(c.open, c.close)
            assert c.volume > 0
        expected = _resample(
            _series(trades, "price"), _series(trades, "qty"), pandas_freq(timeframe)
        )
        mine = _frame(candles)
        assert mine.index.equals(expected.index)
        for col in OHLCV:
            assert mine[col].tolist() == expected[col].tolist()
