"""CandleAggregator.add_trade_columns gives exactly what add_trade on each trade gives."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal, InvalidOperation, localcontext
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.domain import Candle, MarketTrade, from_ms
from tradelib.marketdata import CandleAggregator, CandleGap

DATA = Path(__file__).resolve().parents[2] / "data" / "trades"
BASE = 1_700_000_000_000 - 1_700_000_000_000 % 14_400_000

Trade = tuple[int, Decimal, Decimal, int]


def _btc() -> list[Trade]:
    df = pd.read_parquet(DATA / "btcusdt-trades.parquet")
    ts = df["timestamp"].dt.as_unit("ms").astype("int64").tolist()
    ids = df["trade_id"].astype("int64").tolist()
    prices = [Decimal(repr(x)) for x in df["price"]]
    qtys = [Decimal(repr(x)) for x in df["quantity"]]
    # three copies a minute apart and one ten minutes on: candles close mid-batch, with gaps
    out: list[Trade] = []
    for k in (0, 1, 2, 12):
        out.extend(
            (t + k * 60_000, p, q, i + k * len(ids))
            for t, p, q, i in zip(ts, prices, qtys, ids, strict=True)
        )
    return out


BTC = _btc()


def _feed(
    trades: list[Trade], cuts: list[int], columns: bool, now: list[int | None], grace_s: int
) -> tuple[list[Candle], list[CandleGap], list[Candle], dict[str, int], Candle | None]:
    agg = CandleAggregator("X/Y", grace=timedelta(seconds=grace_s))
    seen: list[Candle] = []
    gaps: list[CandleGap] = []
    agg.subscribe(seen.append, gaps.append)
    returned: list[Candle] = []
    bounds = [0, *sorted(set(cuts)), len(trades)]
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        chunk = trades[lo:hi]
        now_ms = now[k % len(now)]
        if columns:
            ts = [t[0] for t in chunk]
            ps = [t[1] for t in chunk]
            qs = [t[2] for t in chunk]
            ids = [t[3] for t in chunk]
            returned.extend(agg.add_trade_columns(ts, ps, qs, ids, now_ms))
        else:
            for t, p, q, i in chunk:
                returned.extend(agg.add_trade(t, p, q, i, now_ms))
    partial = agg.partial("5m")
    returned.extend(agg.flush())
    assert returned == seen
    return returned, gaps, seen, asdict(agg.stats), partial


@pytest.mark.parametrize("chunk", [1, 7, 100, 2_001, len(BTC)])
def test_real_trades_in_batches_equal_one_by_one(chunk: int) -> None:
    cuts = list(range(chunk, len(BTC), chunk))
    one_by_one = _feed(BTC, [], False, [None], 2)
    batched = _feed(BTC, cuts, True, [None], 2)
    assert batched == one_by_one
    assert batched[3]["accepted"] == len(BTC) and len(batched[0]) == 9 and batched[1]


def test_a_batch_sent_twice_is_rejected_as_duplicates_like_one_by_one() -> None:
    first = BTC[:2_001]  # the first minute stays open (grace) until the third copy
    trades = first + first[500:900] + BTC[2_001:4_002] + BTC[2_001:2_101]
    cuts = [2_001, 2_401, 4_402]
    batched = _feed(trades, cuts, True, [None], 2)
    assert batched == _feed(trades, cuts, False, [None], 2)
    assert batched[3]["duplicate"] == 500 and batched[3]["accepted"] == 4_002


@pytest.mark.parametrize("numbered", [True, False])
def test_add_trades_equals_add_one_by_one(numbered: bool) -> None:
    trades = [
        MarketTrade("X/Y", str(i) if numbered else f"t{i}", p, q, from_ms(t))
        for t, p, q, i in BTC[1_500:2_600] + BTC[1_900:2_100]  # some repeated
    ]
    results = []
    for batch in (True, False):
        agg = CandleAggregator("X/Y")
        out = []
        for k in range(0, len(trades), 64):
            chunk = trades[k : k + 64]
            if batch:
                out.extend(agg.add_trades(chunk, from_ms(BTC[2_600][0])))
            else:
                for trade in chunk:
                    out.extend(agg.add(trade, from_ms(BTC[2_600][0])))
        out.extend(agg.flush())
        results.append((out, asdict(agg.stats)))
    assert results[0] == results[1] and results[0][0]


@pytest.mark.parametrize("trapped", [True, False])
def test_nan_and_infinity_in_a_batch_with_or_without_the_nan_trap(trapped: bool) -> None:
    trades = list(BTC[:300])
    for k, (price, qty) in enumerate(
        [(Decimal("NaN"), None), (None, Decimal("NaN")), (Decimal("Infinity"), None),
         (None, Decimal("Infinity")), (Decimal("sNaN"), None), (Decimal("-0"), None)]
    ):  # fmt: skip
        t, p, q, i = trades[40 * k + 7]
        trades[40 * k + 7] = (t, p if price is None else price, q if qty is None else qty, i)
    with localcontext() as ctx:
        ctx.traps[InvalidOperation] = trapped
        batched = _feed(trades, [100, 250], True, [None], 2)
        assert batched == _feed(trades, [100, 250], False, [None], 2)
    assert batched[3]["invalid"] == 6 and batched[3]["accepted"] == 294


BAD_PRICES = [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")]
BAD_QTYS = [Decimal(0), Decimal("-0.5"), Decimal("sNaN"), Decimal("-Infinity")]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 30_000),
            st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2),
            st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10), places=3),
            st.integers(0, 60),  # < 3: a small id that may repeat; else rising ids
            st.integers(0, 39),  # 0: time goes back; 1: bad price; 2: bad quantity
        ),
        min_size=1,
        max_size=150,
    ),
    cut_points=st.lists(st.integers(0, 150), max_size=6),
    now_offsets=st.lists(st.one_of(st.none(), st.integers(-20_000, 60_000)), min_size=1),
    grace_s=st.integers(0, 5),
)
def test_any_batches_equal_one_by_one(
    steps: list[tuple[int, Decimal, Decimal, int, int]],
    cut_points: list[int],
    now_offsets: list[int | None],
    grace_s: int,
) -> None:
    """Mostly rising times (runs in one minute, minutes closing mid-batch), some going back
    (late or out of order), invalid prices and quantities, repeated ids, `now` given or not."""
    trades: list[Trade] = []
    t = BASE
    for step, price, qty, id_step, odd in steps:
        t += -step // 5 if odd == 0 else step
        price = BAD_PRICES[step % 4] if odd == 1 else price
        qty = BAD_QTYS[step % 4] if odd == 2 else qty
        trades.append((t, price, qty, id_step if id_step < 3 else len(trades) * 61 + id_step))
    now = [None if o is None else t - 30_000 + o for o in now_offsets]
    cuts = [c for c in cut_points if c < len(trades)]
    assert _feed(trades, cuts, True, now, grace_s) == _feed(trades, cuts, False, now, grace_s)
