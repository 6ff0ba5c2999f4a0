"""Benchmark: CandleAggregator vs pandas resample, OrderBook vs ccxt.pro's OrderBook.

Plain script (not part of the test run): `python benchmarks/bench_marketdata.py`.
Both sides of every ratio run in the same process on the same real recorded data:

- trades, through all five timeframes (1m, 5m, 15m, 1h, 4h): Binance XRP/ETH aggregate trades
  (data/trades/XRP_ETH-trades.feather; sparse, ~5 per minute, so candle emission dominates) and
  the 2,001 Binance BTCUSDT trades (46 s) replayed 20 times one minute apart (dense). pandas
  resamples the trades to 1m and the 1m candles to the higher timeframes (float64, and again with
  exact Decimal object columns). Ours streams: per trade (add_trade) and per batch of trades
  (add_trade_columns: 100 trades a call, as websocket messages carry them, and all in one call);
  pandas is a batch job.
- book: the Bybit XRPUSDT snapshot + 49 deltas (data/orderbook/xrpusdt-ob500.data.zip) plus one
  diff that restores the snapshot's levels, replayed REPEAT times with consecutive update
  ids, into our OrderBook (Decimal, sequence-checked) and ccxt's OrderBook (float, no sequence
  checks). Timed once with values parsed in advance and
  once including the parse from the wire strings (Decimal(str) vs float(str)).
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from ccxt.async_support.base.ws.order_book import OrderBook as CcxtOrderBook

from tradelib.domain import pandas_freq
from tradelib.marketdata import AGGREGATED_TIMEFRAMES, CandleAggregator, DepthDiff, OrderBook

DATA = Path(__file__).resolve().parents[1] / "data"
RUNS = 7
REPEAT = 200


def best(fn: Callable[[], Any], runs: int = RUNS) -> float:
    """Fastest wall time of `fn` over `runs` runs, in seconds (least disturbed by other load)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _xrp() -> tuple[list[int], list[int], list[str], list[str]]:
    df = pd.read_feather(DATA / "trades" / "XRP_ETH-trades.feather")
    return (
        df["timestamp"].astype("int64").tolist(),
        df["id"].astype("int64").tolist(),
        [repr(x) for x in df["price"]],
        [repr(x) for x in df["amount"]],
    )


def _btc(copies: int) -> tuple[list[int], list[int], list[str], list[str]]:
    """The 2,001 real BTCUSDT trades (46 s), replayed `copies` times one minute apart."""
    df = pd.read_parquet(DATA / "trades" / "btcusdt-trades.parquet")
    ts0 = df["timestamp"].dt.as_unit("ms").astype("int64").tolist()
    id0 = df["trade_id"].astype("int64").tolist()
    ts = [t + k * 60_000 for k in range(copies) for t in ts0]
    ids = [i + k * len(id0) for k in range(copies) for i in id0]
    return (
        ts,
        ids,
        [repr(x) for x in df["price"]] * copies,
        [repr(x) for x in df["quantity"]] * copies,
    )


def bench_candles(name: str, data: tuple[list[int], list[int], list[str], list[str]]) -> None:
    ts, ids, price_text, qty_text = data
    prices = [Decimal(x) for x in price_text]
    qtys = [Decimal(x) for x in qty_text]
    n = len(ts)

    def ours_preparsed() -> None:
        agg = CandleAggregator("X/Y")
        add = agg.add_trade
        for row in zip(ts, prices, qtys, ids, strict=True):
            add(*row)
        agg.flush()

    def ours_with_parse() -> None:
        agg = CandleAggregator("X/Y")
        add = agg.add_trade
        for t, p, q, i in zip(ts, price_text, qty_text, ids, strict=True):
            add(t, Decimal(p), Decimal(q), i)
        agg.flush()

    def ours_columns(size: int) -> Callable[[], None]:
        """add_trade_columns, `size` trades per call (a websocket message holds a batch)."""
        batches = [
            (ts[k : k + size], prices[k : k + size], qtys[k : k + size], ids[k : k + size])
            for k in range(0, n, size)
        ]

        def run() -> None:
            agg = CandleAggregator("X/Y")
            add = agg.add_trade_columns
            for batch in batches:
                add(*batch)
            agg.flush()

        return run

    index = pd.to_datetime(pd.Series(ts), unit="ms", utc=True)

    def pandas_resample(price: pd.Series, qty: pd.Series) -> None:
        one = pd.DataFrame(
            {
                "open": price.resample("1min").first(),
                "high": price.resample("1min").max(),
                "low": price.resample("1min").min(),
                "close": price.resample("1min").last(),
                "volume": qty.resample("1min").sum(),
            }
        ).dropna(subset=["open"])
        for tf in AGGREGATED_TIMEFRAMES[1:]:
            one.resample(pandas_freq(tf)).agg(
                {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
            ).dropna(subset=["open"])

    floats_p = [float(x) for x in price_text]
    floats_q = [float(x) for x in qty_text]
    pf = pd.Series(floats_p, index=index)
    qf = pd.Series(floats_q, index=index)
    pdec = pd.Series(prices, index=index, dtype=object)
    qdec = pd.Series(qtys, index=index, dtype=object)

    def pandas_float_with_frame() -> None:  # building the indexed series, as a batch job would
        i = pd.to_datetime(pd.Series(ts), unit="ms", utc=True)
        pandas_resample(pd.Series(floats_p, index=i), pd.Series(floats_q, index=i))

    results = {
        "ours, Decimal pre-parsed (streaming, 5 TFs)": best(ours_preparsed),
        "ours, incl. Decimal(str) parse": best(ours_with_parse),
        "ours, add_trade_columns, 100 trades a call": best(ours_columns(100)),
        "ours, add_trade_columns, all in one call": best(ours_columns(n)),
        "pandas float64 resample (batch)": best(lambda: pandas_resample(pf, qf)),
        "pandas float64 incl. index build": best(pandas_float_with_frame),
        "pandas Decimal-object resample (exact)": best(lambda: pandas_resample(pdec, qdec), 3),
    }
    base = results["ours, Decimal pre-parsed (streaming, 5 TFs)"]
    minutes = len({t // 60_000 for t in ts})
    print(f"\nCandle aggregation, {name}: {n:,} trades in {minutes:,} minutes, all five "
          f"timeframes (best of {RUNS} runs)")  # fmt: skip
    for label, seconds in results.items():
        print(f"  {label:45s} {seconds * 1e3:8.2f} ms {n / seconds:11,.0f} trades/s"
              f"   ours-vs-this throughput ratio {seconds / base:5.2f}")  # fmt: skip
    exact = results["pandas Decimal-object resample (exact)"]
    print("  vs exact-Decimal pandas (throughput ratio): " + ", ".join(
        f"{label.removeprefix('ours, ')} {exact / seconds:.2f}x"
        for label, seconds in results.items() if label.startswith("ours, ") and "incl." not in label
    ))  # fmt: skip


def _bybit() -> list[dict[str, Any]]:
    with zipfile.ZipFile(DATA / "orderbook" / "xrpusdt-ob500.data.zip") as archive:
        text = archive.read(archive.namelist()[0]).decode()
    return [json.loads(line) for line in text.splitlines() if line]


def best_pair(ours: Callable[[], Any], theirs: Callable[[], Any]) -> tuple[float, float]:
    """Fastest wall times of two functions run alternately, so both see the same machine load."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(RUNS):
        for fn, spent in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def bench_book() -> None:
    # Imported here so this section's edits stay apart from the candle section's.
    from tradelib.marketdata import orderbook

    messages = _bybit()
    snap = messages[0]["data"]
    deltas = [m["data"] for m in messages[1:]]
    # After the 49 deltas one more diff, derived from them, restores the snapshot's levels, so
    # the cycle can be replayed REPEAT times with consecutive ids on both books.
    state = {"b": dict(snap["b"]), "a": dict(snap["a"])}
    for d in deltas:
        for side in ("b", "a"):
            for p, q in d[side]:
                if Decimal(q):
                    state[side][p] = q
                else:
                    state[side].pop(p, None)
    restore: dict[str, list[list[str]]] = {}
    for side in ("b", "a"):
        before = {Decimal(p): q for p, q in snap[side]}
        after = {Decimal(p): q for p, q in state[side].items()}
        restore[side] = [[str(p), q] for p, q in before.items() if after.get(p) != q]
        restore[side] += [[str(p), "0"] for p in after if p not in before]
    cycle = [(d["b"], d["a"]) for d in deltas] + [(restore["b"], restore["a"])]
    raw = cycle * REPEAT
    levels = sum(len(b) + len(a) for b, a in raw)
    dec = [([(Decimal(p), Decimal(q)) for p, q in b], [(Decimal(p), Decimal(q)) for p, q in a])
           for b, a in raw]  # fmt: skip
    flt = [([[float(p), float(q)] for p, q in b], [[float(p), float(q)] for p, q in a])
           for b, a in raw]  # fmt: skip
    snap_dec = ([(Decimal(p), Decimal(q)) for p, q in snap["b"]],
                [(Decimal(p), Decimal(q)) for p, q in snap["a"]])  # fmt: skip
    snap_flt = {"bids": [[float(p), float(q)] for p, q in snap["b"]],
                "asks": [[float(p), float(q)] for p, q in snap["a"]]}  # fmt: skip
    first = snap["u"]

    def ours(diffs: list[tuple[Any, Any]], forget_prices: bool = False) -> OrderBook:
        """Our book through `diffs` (Decimal pairs, or the wire text the book parses itself)."""
        book = OrderBook("XRP/USDT")
        book.load_snapshot(*snap_dec, first)
        u = first
        for b, a in diffs:
            u += 1
            if forget_prices:  # worst case for the interned prices: every price text is new
                orderbook._PRICES.clear()
            book.apply_diff(DepthDiff(u, u, b, a))
        return book

    def ours_preparsed() -> OrderBook:
        return ours(dec)

    def ours_with_parse() -> OrderBook:
        return ours(raw)  # the wire text goes in as received

    def ours_no_price_reuse() -> OrderBook:
        return ours(raw, forget_prices=True)

    def ccxt_preparsed() -> None:
        book = CcxtOrderBook(snap_flt)
        bids, asks = book["bids"], book["asks"]
        for b, a in flt:
            for level in b:
                bids.storeArray(list(level))
            for level in a:
                asks.storeArray(list(level))

    def ccxt_with_parse() -> CcxtOrderBook:
        book = CcxtOrderBook(snap_flt)
        bids, asks = book["bids"], book["asks"]
        for b, a in raw:
            for p, q in b:
                bids.storeArray([float(p), float(q)])
            for p, q in a:
                asks.storeArray([float(p), float(q)])
        return book

    # Both books end where the snapshot started (the cycle restores it), level for level.
    mine_end, theirs = ours_with_parse(), ccxt_with_parse()
    assert (mine_end.bids(), mine_end.asks()) == snap_dec
    for mine, ccxt_side in (
        (mine_end.bids(), theirs["bids"]),
        (mine_end.asks(), theirs["asks"]),
    ):
        assert [[float(p), float(q)] for p, q in mine] == [list(x) for x in ccxt_side]

    pairs = [
        ("pre-parsed", *best_pair(ours_preparsed, ccxt_preparsed)),
        ("incl. parse from strings", *best_pair(ours_with_parse, ccxt_with_parse)),
        ("incl. parse, no price reuse", *best_pair(ours_no_price_reuse, ccxt_with_parse)),
    ]
    n = len(raw)
    print(f"\nOrder book diffs: Bybit XRPUSDT (49 real deltas + 1 restoring diff) x {REPEAT} = "
          f"{n:,} diffs, {levels:,} level updates (best of {RUNS} alternating runs)")  # fmt: skip
    print(
        f"  ({levels - REPEAT * sum(len(b) + len(a) for b, a in cycle[:-1]):,} of the level "
        "updates are in the restoring diffs)"
    )
    for name, ours, theirs in pairs:
        print(f"  {name:28s} ours {n / ours:10,.0f} diffs/s   ccxt {n / theirs:10,.0f} diffs/s"
              f"   ours/ccxt throughput ratio {theirs / ours:5.2f}")  # fmt: skip


if __name__ == "__main__":
    bench_candles("real XRP/ETH aggregate trades (sparse)", _xrp())
    bench_candles("real BTCUSDT trades x20, one minute apart (dense)", _btc(20))
    bench_book()
