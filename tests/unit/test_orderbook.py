"""OrderBook against recorded Binance and Bybit depth data, ccxt's book, and properties."""

from __future__ import annotations

import itertools
import json
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ccxt.async_support.base.ws.order_book import OrderBook as CcxtOrderBook
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tradelib.domain import Side
from tradelib.errors import DataError
from tradelib.marketdata import (
    BookOutOfSync,
    DepthDiff,
    OrderBook,
    SyncMode,
    parse_binance_depth,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "orderbook"


def _binance_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    snap = pd.read_csv(DATA / "btcusdt-depth-snap.csv", dtype=str)
    diff = pd.read_csv(DATA / "btcusdt-depth-update.csv", dtype=str)
    return snap, diff


def _levels(frame: pd.DataFrame, side: str) -> list[tuple[Decimal, Decimal]]:
    rows = frame[frame.side == side]
    return [(Decimal(p), Decimal(q)) for p, q in zip(rows.price, rows.qty, strict=True)]


def _binance_event(diff: pd.DataFrame) -> dict[str, Any]:
    """The recorded rows regrouped into the raw futures `depthUpdate` event they came from."""
    ((first, final, pu, ts),) = (
        diff[["first_update_id", "last_update_id", "pu", "timestamp"]]
        .drop_duplicates()
        .itertuples(index=False)
    )

    def pick(side: str) -> list[list[str]]:
        rows = diff[diff.side == side]
        return [[p, q] for p, q in zip(rows.price, rows.qty, strict=True)]

    return {"e": "depthUpdate", "E": int(ts), "U": int(first), "u": int(final), "pu": int(pu),
            "b": pick("b"), "a": pick("a")}  # fmt: skip


@pytest.mark.parametrize("mode", [SyncMode.SPOT, SyncMode.FUTURES])
def test_recorded_binance_diff_does_not_continue_the_snapshot(mode: SyncMode) -> None:
    snap, diff = _binance_frames()
    book = OrderBook("BTC/USDT", mode)
    book.load_snapshot(_levels(snap, "b"), _levels(snap, "a"), int(snap.last_update_id[0]))
    before = book.bids()
    event = parse_binance_depth(_binance_event(diff))
    with capture_logs() as logs, pytest.raises(BookOutOfSync, match="missed"):
        book.apply_diff(event)
    assert not book.in_sync and "does not cover" in (book.resync_reason or "")
    assert logs[0]["event"] == "order_book_out_of_sync"
    assert book.bids() == before  # nothing of the gapped event was folded in
    with pytest.raises(BookOutOfSync, match="re-sync"):
        book.apply_diff(event)


def test_resync_then_futures_continuity_uses_pu() -> None:
    """Re-sync: a snapshot whose lastUpdateId lies inside the event's U..u lets it apply.

    The recorded snapshot levels are re-labelled with such an id (no matching snapshot was
    recorded); the next event must then carry pu == this event's u.
    """
    snap, diff = _binance_frames()
    event = parse_binance_depth(_binance_event(diff))
    book = OrderBook("BTC/USDT", SyncMode.FUTURES)
    book.load_snapshot(_levels(snap, "b"), [], event.first_update_id + 10)
    assert book.apply_diff(event) is True
    assert book.last_update_id == event.final_update_id
    bid, ask = book.best_bid, book.best_ask
    assert bid is not None and bid[0] == Decimal("20472.10")
    assert ask is not None and ask[0] == Decimal("20472.20")
    assert not book.is_crossed and book.spread == Decimal("0.10")
    deleted = [p for p, q in event.asks if q == 0]
    assert deleted and all(p not in dict(book.asks()) for p in deleted)
    follow = DepthDiff(event.final_update_id + 5, event.final_update_id + 9, [], [],
                       prev_final_update_id=event.final_update_id)  # fmt: skip
    assert book.apply_diff(follow)
    with pytest.raises(BookOutOfSync, match="pu="):
        book.apply_diff(DepthDiff(follow.final_update_id + 2, follow.final_update_id + 3, [], [],
                                  prev_final_update_id=follow.final_update_id + 1))  # fmt: skip


def test_spot_rules_drop_old_events_and_detect_skipped_ids() -> None:
    book = OrderBook("BTC/USDT")
    book.load_snapshot([(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 100)
    assert book.apply_diff(DepthDiff(90, 100, [(Decimal(99), Decimal(5))], [])) is False
    assert book.apply_diff(DepthDiff(95, 103, [(Decimal(99), Decimal(5))], [])) is True
    assert book.apply_diff(DepthDiff(104, 104, [(Decimal(100), Decimal(0))], [])) is True
    assert book.best_bid == (Decimal(99), Decimal(5))
    with pytest.raises(BookOutOfSync, match="U=106"):
        book.apply_diff(DepthDiff(106, 107, [], []))
    book.load_snapshot([(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 200)
    with pytest.raises(BookOutOfSync, match="does not cover 201"):
        book.apply_diff(DepthDiff(202, 205, [], []))


def test_crossed_book_is_flagged_for_resync() -> None:
    book = OrderBook("BTC/USDT")
    book.load_snapshot([(Decimal(100), Decimal(1))], [(Decimal(101), Decimal(1))], 1)
    with pytest.raises(BookOutOfSync, match="crossed"):
        book.apply_diff(DepthDiff(2, 2, [(Decimal("101.5"), Decimal(1))], []))
    assert book.is_crossed and not book.in_sync
    with pytest.raises(BookOutOfSync, match="invalid"):
        book.load_snapshot([(Decimal("NaN"), Decimal(1))], [], 1)
    with pytest.raises(BookOutOfSync, match="crossed"):
        book.load_snapshot([(Decimal(102), Decimal(1))], [(Decimal(101), Decimal(1))], 1)


def _bybit_messages() -> list[dict[str, Any]]:
    with zipfile.ZipFile(DATA / "xrpusdt-ob500.data.zip") as archive:
        name = archive.namelist()[0]
        return [json.loads(line) for line in archive.read(name).decode().splitlines() if line]


def _bybit_levels(raw: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in raw]


def _bybit_diff(msg: dict[str, Any]) -> DepthDiff:
    """Bybit delta -> DepthDiff: Bybit's `u` increases by one per message, so U = u = data.u."""
    data = msg["data"]
    return DepthDiff(data["u"], data["u"], _bybit_levels(data["b"]), _bybit_levels(data["a"]))


def test_bybit_continuous_stream_applies_cleanly_and_matches_ccxt() -> None:
    messages = _bybit_messages()
    assert messages[0]["type"] == "snapshot" and len(messages) == 50
    snap = messages[0]["data"]
    book = OrderBook("XRP/USDT")
    book.load_snapshot(_bybit_levels(snap["b"]), _bybit_levels(snap["a"]), snap["u"])
    ccxt_book = CcxtOrderBook({"bids": [[float(p), float(q)] for p, q in snap["b"]],
                               "asks": [[float(p), float(q)] for p, q in snap["a"]]})  # fmt: skip
    for msg in messages[1:]:
        assert msg["type"] == "delta"
        assert book.apply_diff(_bybit_diff(msg)) is True
        for p, q in msg["data"]["b"]:
            ccxt_book["bids"].store(float(p), float(q))
        for p, q in msg["data"]["a"]:
            ccxt_book["asks"].store(float(p), float(q))
        bid, ask = book.best_bid, book.best_ask
        assert bid is not None and ask is not None and bid[0] < ask[0]
    assert book.applied == 49 and book.in_sync
    assert [[float(p), float(q)] for p, q in book.bids()] == [list(x) for x in ccxt_book["bids"]]
    assert [[float(p), float(q)] for p, q in book.asks()] == [list(x) for x in ccxt_book["asks"]]
    spread_bps = book.spread_bps
    assert spread_bps is not None and 0 < spread_bps < 10
    # one skipped delta is detected
    replay = OrderBook("XRP/USDT")
    replay.load_snapshot(_bybit_levels(snap["b"]), _bybit_levels(snap["a"]), snap["u"])
    replay.apply_diff(_bybit_diff(messages[1]))
    with pytest.raises(BookOutOfSync):
        replay.apply_diff(_bybit_diff(messages[3]))


def test_price_for_quantity_and_depth_on_the_real_bybit_book() -> None:
    snap = _bybit_messages()[0]["data"]
    book = OrderBook("XRP/USDT")
    book.load_snapshot(_bybit_levels(snap["b"]), _bybit_levels(snap["a"]), snap["u"])
    best_ask = book.best_ask
    assert best_ask is not None
    small = book.price_for_quantity(Side.BUY, best_ask[1])
    assert small == (best_ask[0], best_ask[0], best_ask[1])
    asks = book.asks(3)
    qty = asks[0][1] + asks[1][1] + asks[2][1] / 2
    est = book.price_for_quantity(Side.BUY, qty)
    cost = asks[0][0] * asks[0][1] + asks[1][0] * asks[1][1] + asks[2][0] * asks[2][1] / 2
    assert est.worst_price == asks[2][0] and est.filled == qty and est.average_price == cost / qty
    total_bids = sum((q for _, q in book.bids()), Decimal(0))
    sell_all = book.price_for_quantity(Side.SELL, total_bids * 2)
    assert sell_all.filled == total_bids and sell_all.worst_price == book.bids()[-1][0]
    depth = book.depth_within_bps(10)
    mid = book.mid
    assert mid is not None
    assert depth.bid_quantity == sum(q for p, q in book.bids() if p >= mid * Decimal("0.999"))
    assert depth.ask_quantity == sum(q for p, q in book.asks() if p <= mid * Decimal("1.001"))
    assert book.depth_within_bps(0).bid_quantity == 0
    with pytest.raises(DataError):
        book.price_for_quantity(Side.BUY, Decimal(0))
    empty = OrderBook("X/Y")
    empty.load_snapshot([], [], 1)
    assert empty.price_for_quantity(Side.BUY, Decimal(1)) == (None, None, 0)
    assert empty.mid is None and empty.spread_bps is None


# ---------------------------------------------------------------- properties

price_ticks = st.integers(1, 400)
qty_st = st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=3)
side_updates = st.lists(st.tuples(price_ticks, qty_st), max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(side_updates, side_updates, st.integers(1, 3)), max_size=40))
def test_valid_diffs_keep_the_book_uncrossed_and_equal_to_a_model(
    events: list[tuple[list[tuple[int, Decimal]], list[tuple[int, Decimal]], int]],
) -> None:
    """Bids live below 1000, asks above it; consecutive ids; the book equals a dict model."""
    book = OrderBook("X/Y")
    book.load_snapshot([], [], 10)
    model: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
    last = 10
    for bids, asks, span in events:
        b = [(Decimal(1000 - t) / 10, q) for t, q in bids]
        a = [(Decimal(1000 + t) / 10, q) for t, q in asks]
        assert book.apply_diff(DepthDiff(last + 1, last + span, b, a))
        last += span
        for levels, side in ((b, "b"), (a, "a")):
            for p, q in levels:
                if q:
                    model[side][p] = q
                else:
                    model[side].pop(p, None)
        assert not book.is_crossed and book.in_sync
    assert book.bids() == sorted(model["b"].items(), reverse=True)
    assert book.asks() == sorted(model["a"].items())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(price_ticks, qty_st.filter(bool)), min_size=1, max_size=30),
    st.lists(
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal(2000), places=3),
        min_size=2,
        max_size=10,
    ),
    st.sampled_from([Side.BUY, Side.SELL]),
)
def test_price_for_quantity_is_monotone_in_quantity(
    levels: list[tuple[int, Decimal]], quantities: list[Decimal], side: Side
) -> None:
    book = OrderBook("X/Y")
    bids = [(Decimal(1000 - t) / 10, q) for t, q in levels]
    asks = [(Decimal(1000 + t) / 10, q) for t, q in levels]
    book.load_snapshot(bids, asks, 1)
    estimates = [book.price_for_quantity(side, q) for q in sorted(quantities)]
    sign = 1 if side is Side.BUY else -1
    for small, large in itertools.pairwise(estimates):
        assert small.filled <= large.filled
        assert small.average_price is not None and large.average_price is not None
        assert small.worst_price is not None and large.worst_price is not None
        assert sign * small.worst_price <= sign * large.worst_price
        # averages move by at most the division rounding of the 28-digit context
        assert sign * (large.average_price - small.average_price) >= -Decimal("1e-20")
        best = book.best_ask if side is Side.BUY else book.best_bid
        assert best is not None and sign * small.average_price >= sign * best[0] - Decimal("1e-20")


def _spelled(value: Decimal, zeros: int, as_text: bool) -> str | Decimal:
    """`value` as wire text with `zeros` trailing zeros (0.5 -> "0.500"), or as a Decimal."""
    text = f"{value:f}"
    if zeros:
        text += ("" if "." in text else ".") + "0" * zeros
    return text if as_text else Decimal(text)


wire_level = st.tuples(price_ticks, qty_st, st.integers(0, 2), st.integers(0, 2), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(wire_level, max_size=8), st.lists(wire_level, max_size=8)),
                max_size=40))  # fmt: skip
def test_text_and_decimal_diffs_give_exactly_the_reference_book(
    events: list[tuple[list[tuple[int, Decimal, int, int, bool]], ...]],
) -> None:
    """Levels as wire text (any spelling: "0.5", "0.50", "0" or "0.000" to delete) or Decimal:
    the book equals a plain dict of Decimal(text) keys, digit for digit."""
    book = OrderBook("X/Y")
    book.load_snapshot([], [], 10)
    model: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
    for u, (bids, asks) in enumerate(events, start=11):
        sides = []
        for levels, side, sign in ((bids, "b", -1), (asks, "a", 1)):
            wire = [
                (_spelled(Decimal(1000 + sign * t) / 10, pz, text), _spelled(q, qz, text))
                for t, q, pz, qz, text in levels
            ]
            sides.append(wire)
            for p, q in wire:  # the reference: parse each level on its own, plain dict
                if Decimal(q):
                    model[side][Decimal(p)] = Decimal(q)
                else:
                    model[side].pop(Decimal(p), None)
        assert book.apply_diff(DepthDiff(u, u, *sides))
    expected_bids = sorted(model["b"].items(), reverse=True)
    expected_asks = sorted(model["a"].items())
    assert book.bids() == expected_bids and book.asks() == expected_asks
    # exact to the digit, not only equal in value
    assert [tuple(map(str, x)) for x in book.bids()] == [tuple(map(str, x)) for x in expected_bids]
    assert [tuple(map(str, x)) for x in book.asks()] == [tuple(map(str, x)) for x in expected_asks]


@pytest.mark.parametrize(
    "level",
    [["NaN", "1"], ["abc", "1"], ["0", "1"], ["-1", "1"], ["Infinity", "1"], ["1", "NaN"],
     ["1", "-1"], ["1", "sNaN"], ["1", "Infinity"], ["1", "x"], ["1", 0.1], [1.5, "1"],
     [None, "1"], [["1"], "1"]],
)  # fmt: skip
def test_unreadable_or_invalid_wire_levels_put_the_book_out_of_sync(level: list[Any]) -> None:
    book = OrderBook("X/Y")
    book.load_snapshot([(Decimal(1), Decimal(1))], [(Decimal(2), Decimal(1))], 1)
    with pytest.raises(BookOutOfSync, match="invalid bid level"):
        book.apply_diff(DepthDiff(2, 2, [level], []))
    assert not book.in_sync
