"""The demo's fast paths give exactly what the reference paths give (issue 14: demo time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradelib.domain import Candle
from tradelib.engine.candlebook import CandleBook
from tradelib.exchange.matching import candle_trades
from tradelib.exchange.replay import _Series
from tradelib.strategy.base import SIGNAL_FIELDS, _signal_row, empty_signal_frame, normalize_candles
from tradelib.strategy.token_unlock import TokenUnlockStrategy

DATA = Path(__file__).resolve().parents[2] / "data"
MS_HOUR = 3_600_000


@pytest.fixture(scope="module")
def arb() -> pd.DataFrame:
    return pd.read_feather(DATA / "candles/1h/ARB_USDT-1h.feather").head(2_000)


def test_normalize_of_a_normal_frame_is_an_equal_copy(arb: pd.DataFrame) -> None:
    reference = normalize_candles("ARB", arb)  # the full path: a "date" column
    again = normalize_candles("ARB", reference)  # the fast path
    pd.testing.assert_frame_equal(again, reference, check_freq=False)
    assert again is not reference
    again.iloc[0, 0] = -1.0
    assert reference.iloc[0, 0] != -1.0  # a copy, as the full path returns


def test_signal_row_is_the_label_lookup(arb: pd.DataFrame) -> None:
    frame = normalize_candles("ARB/USDT", arb)
    strategy = TokenUnlockStrategy()
    table = strategy.signals({"ARB/USDT": frame}, strategy.calendar, strategy.params)
    flagged = table.index[table.to_numpy().any(axis=1)]
    for at in [*flagged[:5], table.index[0], table.index[-1]]:
        row = _signal_row(table, at, "ARB/USDT")
        expected = table.loc[at, "ARB/USDT"]
        assert row is not None
        assert {f: bool(row[f]) for f in SIGNAL_FIELDS} == {
            f: bool(expected[f]) for f in SIGNAL_FIELDS
        }
    assert _signal_row(table, table.index[0], "ETH/USDT") is None
    two = empty_signal_frame(pd.DatetimeIndex(table.index), ["A", "B"])
    assert two.columns.equals(empty_signal_frame(two.index, ["A", "B"]).columns)
    two.columns.names = ["x", "y"]  # a caller renaming its frame's levels changes no other
    assert list(empty_signal_frame(two.index, ["A", "B"]).columns.names) == ["symbol", "field"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, 60 * MS_HOUR), length=st.integers(0, 30 * MS_HOUR))
def test_replay_path_equals_every_candles_trades_filtered(start: int, length: int) -> None:
    series = _series()
    end = start + length
    base = int(series.times[0])
    start_ms, end_ms = base + start, base + end
    reference = [
        t
        for i in range(max(series.index_at(start_ms), 0), series.index_at(end_ms) + 1)
        for t in candle_trades(series.candle(i))
        if start_ms < int((t.timestamp - datetime(1970, 1, 1, tzinfo=UTC)) // _MS) <= end_ms
    ]
    from tradelib.exchange.replay import ReplayMarket

    market = ReplayMarket.__new__(ReplayMarket)
    market._coarse, market._fine, market._tapes = {"ARB/USDT": series}, {}, {}
    assert market._path_between("ARB/USDT", start_ms, end_ms) == reference


_MS = timedelta(milliseconds=1)
_SERIES: list[_Series] = []


def _series() -> _Series:
    if not _SERIES:
        frame = pd.read_feather(DATA / "candles/1h/ARB_USDT-1h.feather").head(200)
        _SERIES.append(_Series.from_frame("ARB/USDT", "1h", frame))
    return _SERIES[0]


def _candles(times: list[int], price: float) -> list[Candle]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    p = Decimal(repr(price))
    return [
        Candle(
            "ARB/USDT",
            "1h",
            start + timedelta(hours=h),
            p,
            p + 1,
            p - Decimal("0.5"),
            p,
            Decimal(10 + h),
        )
        for h in times
    ]


@pytest.mark.parametrize(
    "batches",
    [
        [[0, 1, 2], [3, 4], [5]],  # new candles after the old: the fast path
        [[0, 1, 2], [2, 3]],  # an overlap: the last write wins
        [[3, 4], [0, 1]],  # older candles: sorted in
        [[0, 2, 1], [5, 4]],  # unsorted pages
    ],
)
def test_candle_book_append_matches_dedupe_and_sort(batches: list[list[int]]) -> None:
    book = CandleBook(["ARB/USDT"], "1h", window=4)
    reference: pd.DataFrame | None = None
    for n, hours in enumerate(batches):
        candles = _candles(hours, 2.0 + n)
        book._append("ARB/USDT", candles)
        new = pd.DataFrame(
            {
                "open": [float(c.open) for c in candles],
                "high": [float(c.high) for c in candles],
                "low": [float(c.low) for c in candles],
                "close": [float(c.close) for c in candles],
                "volume": [float(c.volume) for c in candles],
            },
            index=pd.DatetimeIndex([c.open_time for c in candles], name="date").as_unit("ns"),
        )
        merged = new if reference is None else pd.concat([reference, new])
        reference = merged[~merged.index.duplicated(keep="last")].sort_index().tail(4)
        pd.testing.assert_frame_equal(book.frame("ARB/USDT"), reference)
    assert np.isfinite(book.frame("ARB/USDT").to_numpy()).all()
