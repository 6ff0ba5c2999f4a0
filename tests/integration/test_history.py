"""CandleHistory against a real DuckDB store, serving real recorded Binance 1m candles."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tradelib.domain import Candle
from tradelib.errors import AuthenticationError, ExchangeUnavailable, RateLimited
from tradelib.marketdata.history import CandleHistory, candles_to_frame, load_bundled_candles
from tradelib.store import Store, open_store

DATA = Path(__file__).resolve().parents[2] / "data"
MINUTE = timedelta(minutes=1)
RAW = pd.read_feather(DATA / "candles" / "1m" / "BTC_USDT-1m.feather").head(3000)


def _candle(open_time: datetime, values: tuple[object, ...], closed: bool = True) -> Candle:
    o, h, low, c, v = (Decimal(repr(float(str(x)))) for x in values)
    return Candle("BTC/USDT", "1m", open_time, o, h, low, c, v, closed)


_COLUMNS = [RAW[f].tolist() for f in ("open", "high", "low", "close", "volume")]
CANDLES = [
    _candle(date.to_pydatetime(), values)
    for date, values in zip(RAW["date"].tolist(), zip(*_COLUMNS, strict=True), strict=True)
]
T0 = CANDLES[0].open_time


@dataclass
class FakeRest:
    """fetch_ohlcv over the recorded candles, like Binance: from `since`, at most `limit`."""

    now: datetime
    id: str = "binance"
    calls: list[tuple[datetime | None, int | None]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str = "1h", since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Candle]:  # fmt: skip
        self.calls.append((since, limit))
        if self.failures:
            raise self.failures.pop(0)
        rows = [c for c in CANDLES if (since is None or c.open_time >= since)]
        rows = [
            c if c.open_time + MINUTE <= self.now else replace(c, closed=False)
            for c in rows
            if c.open_time <= self.now
        ]
        return rows[: limit or 500]


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Store]:
    store = open_store("duckdb:///" + str(tmp_path / "t.duckdb"))
    store.migrate()
    yield store
    store.close()


def _history(
    rest: FakeRest, store: Store, sleeps: list[float], backoff_initial: float = 1.0,
    max_attempts: int = 5,
) -> CandleHistory:  # fmt: skip
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return CandleHistory(
        rest, store, page_limit=500, clock=lambda: rest.now, sleep=sleep,
        backoff_initial=backoff_initial, max_attempts=max_attempts,
    )  # fmt: skip


def _expected(first: int, last: int) -> pd.DataFrame:
    frame = RAW.iloc[first : last + 1].set_index("date")[["open", "high", "low", "close", "volume"]]
    frame.index = pd.DatetimeIndex(frame.index).as_unit("us")
    frame.index.name = "open_time"
    return frame


def _same(got: pd.DataFrame, first: int, last: int) -> None:
    want = _expected(first, last)
    got = got.copy()
    got.index = pd.DatetimeIndex(got.index).as_unit("us")
    assert list(got.index) == list(want.index)
    assert (got.to_numpy() == want.to_numpy()).all()  # float64 out of NUMERIC: exact here


async def test_fetches_missing_ranges_in_pages_and_serves_the_cache(duck: Store) -> None:
    rest = FakeRest(now=CANDLES[2000].open_time + timedelta(seconds=30))  # minute 2000 open
    sleeps: list[float] = []
    history = _history(rest, duck, sleeps)
    got = await history.load("BTC/USDT", "1m", CANDLES[100].open_time, CANDLES[1299].open_time)
    _same(got, 100, 1299)
    assert [since for since, _ in rest.calls] == [CANDLES[i].open_time for i in (100, 600, 1100)]
    assert all(limit == 500 for _, limit in rest.calls)
    rest.calls.clear()
    again = await history.load("BTC/USDT", "1m", CANDLES[100].open_time, CANDLES[1299].open_time)
    _same(again, 100, 1299)
    assert rest.calls == []  # served from the store
    # widen both ways: only the head and the tail are fetched; the open minute is never cached
    wide = await history.load("BTC/USDT", "1m", CANDLES[50].open_time)
    _same(wide, 50, 1999)
    assert [since for since, _ in rest.calls] == [CANDLES[50].open_time] + [
        CANDLES[i].open_time for i in (1300, 1800)
    ]
    assert duck.candle_range("binance", "BTC/USDT", "1m") == (
        CANDLES[50].open_time, CANDLES[1999].open_time,
    )  # fmt: skip
    assert sleeps == []


async def test_fill_holes_fetches_only_the_hole(duck: Store) -> None:
    rest = FakeRest(now=CANDLES[2999].open_time)
    duck.write_candles("binance", candles_to_frame(CANDLES[0:100] + CANDLES[150:300]))
    history = _history(rest, duck, [])
    start, end = CANDLES[0].open_time, CANDLES[299].open_time
    assert history.missing_ranges("BTC/USDT", "1m", start, end) == []
    assert history.missing_ranges("BTC/USDT", "1m", start, end, fill_holes=True) == [
        (CANDLES[100].open_time, CANDLES[149].open_time)
    ]
    got = await history.load("BTC/USDT", "1m", start, end, fill_holes=True)
    _same(got, 0, 299)
    assert rest.calls == [(CANDLES[100].open_time, 500)]


async def test_retries_only_exchange_unavailable_with_backoff(duck: Store) -> None:
    rest = FakeRest(now=CANDLES[2999].open_time)
    rest.failures = [ExchangeUnavailable("503"), RateLimited("429", retry_after=7.0)]
    sleeps: list[float] = []
    history = _history(rest, duck, sleeps, backoff_initial=1.0)
    got = await history.load("BTC/USDT", "1m", CANDLES[0].open_time, CANDLES[9].open_time)
    _same(got, 0, 9)
    assert sleeps == [1.0, 7.0] and len(rest.calls) == 3
    rest.failures = [AuthenticationError("bad key")]
    with pytest.raises(AuthenticationError):
        await history.load("BTC/USDT", "1m", CANDLES[0].open_time, CANDLES[20].open_time)
    assert sleeps == [1.0, 7.0]  # a person has to act: no retry
    rest.failures = [ExchangeUnavailable("down")] * 3
    limited = _history(rest, duck, sleeps, max_attempts=3)
    with pytest.raises(ExchangeUnavailable):
        await limited.load("BTC/USDT", "1m", CANDLES[0].open_time, CANDLES[20].open_time)
    assert duck.candle_range("binance", "BTC/USDT", "1m") == (
        CANDLES[0].open_time, CANDLES[9].open_time,
    )  # fmt: skip


def test_load_bundled_candles_into_the_store(duck: Store) -> None:
    written = load_bundled_candles(duck, symbols=["BTC/USDT"], timeframes=["1m"])
    assert written == {("BTC/USDT", "1m"): 43_209}
    full = pd.read_feather(DATA / "candles" / "1m" / "BTC_USDT-1m.feather")
    assert duck.candle_range("binance", "BTC/USDT", "1m") == (
        full["date"].iloc[0].to_pydatetime(), full["date"].iloc[-1].to_pydatetime(),
    )  # fmt: skip
    got = duck.read_candles("binance", "BTC/USDT", "1m")
    assert len(got) == len(full)
    assert (got.to_numpy() == full[["open", "high", "low", "close", "volume"]].to_numpy()).all()
    hourly = load_bundled_candles(duck, symbols=["ARB/USDT"], timeframes=["1h"])
    arb = pd.read_feather(DATA / "candles" / "1h" / "ARB_USDT-1h.feather")
    assert hourly == {("ARB/USDT", "1h"): len(arb)}
