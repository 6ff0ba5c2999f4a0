"""A market replayed from recorded candles (and trades): a clock you advance, books, tickers.

The paper exchange and the Binance emulator both read market state from a `ReplayMarket`.

Model, in one place:

* **Clock.** `now` moves only through `advance_to(t)` / `step()`. A candle is *closed* once
  ``open_time + timeframe <= now``; `candles()` returns closed candles only (no peeking).
* **Trades.** Advancing from ``t0`` to ``t1`` prints every trade with ``t0 < timestamp <= t1``:
  recorded trades inside the recording's time span, else the synthetic path of
  `matching.candle_trades` through the finest candles covering the window (1m where recorded,
  else 1h).
* **Book.** A synthetic, deterministic book around the last printed price: spread =
  max(1 tick, price x range / 500) where range is the last closed candle's (high - low) / close;
  `BOOK_LEVELS` levels a side, spaced so they span half that range; each level holds the volume
  of a quarter of a minute of that candle (volume / minutes / 4), growing 20% per level away from
  the touch, floored to the lot step. Wide, fast candles give wide, deep books; quiet ones narrow.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from tradelib.domain import (
    ZERO,
    Candle,
    Market,
    MarketTrade,
    Side,
    from_ms,
    parse_candle_file,
    require_utc,
    round_down,
    round_nearest,
    round_up,
    timeframe_delta,
    timeframe_ms,
    to_ms,
)
from tradelib.errors import DataError, UnknownSymbol
from tradelib.exchange.base import BookSnapshot, Ticker
from tradelib.exchange.matching import candle_trades

BOOK_LEVELS = 200
DEFAULT_START = datetime(2024, 8, 1, tzinfo=UTC)  # inside the recorded 1m BTC/ETH window


def load_binance_markets() -> dict[str, Market]:
    """Binance spot rules for the recorded symbols, from markets_binance.json, by 'ARB/USDT'."""
    text = resources.files("tradelib.exchange").joinpath("markets_binance.json").read_text()
    doc = json.loads(text)
    quote = doc["quote"]
    markets = {}
    for rules in doc["symbols"].values():
        symbol = f"{rules['base']}/{quote}"
        markets[symbol] = Market(
            symbol=symbol,
            base=rules["base"],
            quote=quote,
            price_tick=Decimal(rules["tickSize"]),
            amount_step=Decimal(rules["stepSize"]),
            min_amount=Decimal(rules["minQty"]),
            max_amount=Decimal(rules["maxQty"]),
            min_notional=Decimal(doc["minNotional"]),
            maker_fee=Decimal(doc["makerFee"]),
            taker_fee=Decimal(doc["takerFee"]),
        )
    return markets


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


# Candles (and their synthetic trades) built per series, most recent first to go: a replay
# steps hour by hour and asks for the candle it just printed again on the next step; bounded
# so a long replay over 1m data does not keep every candle it ever built.
_CACHED_CANDLES = 4096


@dataclass(slots=True)
class _Series:
    """One symbol's candles of one timeframe as numpy arrays (ms open times, float prices)."""

    symbol: str
    timeframe: str
    times: np.ndarray
    values: np.ndarray  # columns open, high, low, close, volume
    _candles: dict[int, Candle] = field(default_factory=dict, repr=False, compare=False)
    _trades: dict[int, list[MarketTrade]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, symbol: str, timeframe: str, frame: pd.DataFrame) -> _Series:
        missing = {"date", "open", "high", "low", "close", "volume"} - set(frame.columns)
        if missing:
            raise DataError(f"{symbol} {timeframe} candles lack columns {sorted(missing)}")
        frame = frame.sort_values("date").drop_duplicates("date", keep="last")
        dates = pd.to_datetime(frame["date"], utc=True).dt.as_unit("ms")
        times = dates.astype("int64").to_numpy(dtype=np.int64)
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
        return cls(symbol, timeframe, times, values)

    @property
    def span_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    def candle(self, index: int) -> Candle:
        cached = self._candles.get(index)
        if cached is not None:
            return cached
        o, h, low, c, v = self.values[index].tolist()  # Python floats: _dec skips a conversion
        candle = Candle(
            symbol=self.symbol,
            timeframe=self.timeframe,
            open_time=from_ms(int(self.times[index])),
            open=_dec(o),
            high=_dec(h),
            low=_dec(low),
            close=_dec(c),
            volume=_dec(v),
        )
        if len(self._candles) >= _CACHED_CANDLES:
            self._candles.clear()
        self._candles[index] = candle
        return candle

    def trades(self, index: int) -> list[MarketTrade]:
        """The synthetic trades through candle `index` (matching.candle_trades); do not modify."""
        cached = self._trades.get(index)
        if cached is None:
            cached = candle_trades(self.candle(index))
            if len(self._trades) >= _CACHED_CANDLES:
                self._trades.clear()
            self._trades[index] = cached
        return cached

    def index_at(self, ms: int) -> int:
        """Index of the last candle that opened at or before `ms` (-1 if none)."""
        return int(np.searchsorted(self.times, ms, side="right")) - 1

    def covers(self, start_ms: int, end_ms: int) -> bool:
        return len(self.times) > 0 and self.times[0] <= start_ms and self.last_close_ms >= end_ms

    @property
    def last_close_ms(self) -> int:
        return int(self.times[-1]) + self.span_ms if len(self.times) else 0


@dataclass(slots=True)
class _TradeTape:
    """Recorded trades of one symbol (ms times, float price/qty, taker side)."""

    symbol: str
    times: np.ndarray
    prices: np.ndarray
    quantities: np.ndarray
    ids: np.ndarray
    buyer_maker: np.ndarray

    def window(self, start_ms: int, end_ms: int) -> list[MarketTrade]:
        lo = int(np.searchsorted(self.times, start_ms, side="right"))
        hi = int(np.searchsorted(self.times, end_ms, side="right"))
        return [
            MarketTrade(
                symbol=self.symbol,
                trade_id=str(self.ids[i]),
                price=_dec(self.prices[i]),
                quantity=_dec(self.quantities[i]),
                timestamp=from_ms(int(self.times[i])),
                taker_side=Side.SELL if self.buyer_maker[i] else Side.BUY,
            )
            for i in range(lo, hi)
        ]

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return len(self.times) > 0 and self.times[0] <= end_ms and self.times[-1] > start_ms


def _symbol_from_file(path: Path) -> str:
    return parse_candle_file(path.stem)[0]


@functools.lru_cache(maxsize=128)
def _file_series(path: str, mtime_ns: int, timeframe: str) -> _Series:
    """Parsed candles of one feather file; the arrays are never modified after loading."""
    return _Series.from_frame(_symbol_from_file(Path(path)), timeframe, pd.read_feather(path))


@functools.lru_cache(maxsize=16)
def _file_tape(path: str, mtime_ns: int, symbol: str) -> _TradeTape:
    """Parsed trades of one parquet file."""
    return _tape_from_frame(symbol, pd.read_parquet(path))


def _tape_from_frame(symbol: str, frame: pd.DataFrame) -> _TradeTape:
    frame = frame.sort_values("timestamp")
    times = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("ms").astype("int64")
    maker = frame["buyer_maker"].astype(str).str.lower().isin(["true", "1"])
    return _TradeTape(
        symbol=symbol,
        times=times.to_numpy(dtype=np.int64),
        prices=frame["price"].to_numpy(dtype=np.float64),
        quantities=frame["quantity"].to_numpy(dtype=np.float64),
        ids=frame["trade_id"].to_numpy(),
        buyer_maker=maker.to_numpy(dtype=bool),
    )


class ReplayMarket:
    """Recorded candles and trades replayed on a clock the caller advances."""

    def __init__(
        self,
        candles: Mapping[str, pd.DataFrame],
        markets: Mapping[str, Market],
        start: datetime = DEFAULT_START,
        timeframe: str = "1h",
        fine_candles: Mapping[str, pd.DataFrame] | None = None,
        fine_timeframe: str = "1m",
        trades: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        self._setup(
            {s: _Series.from_frame(s, timeframe, f) for s, f in candles.items()},
            {s: _Series.from_frame(s, fine_timeframe, f) for s, f in (fine_candles or {}).items()},
            {s: _tape_from_frame(s, f) for s, f in (trades or {}).items()},
            markets,
            start,
            timeframe,
        )

    def _setup(
        self,
        coarse: dict[str, _Series],
        fine: dict[str, _Series],
        tapes: dict[str, _TradeTape],
        markets: Mapping[str, Market],
        start: datetime,
        timeframe: str,
    ) -> None:
        self._markets = dict(markets)
        self._timeframe = timeframe
        self._coarse, self._fine, self._tapes = coarse, fine, tapes
        for symbol in self._coarse:
            if symbol not in self._markets:
                raise DataError(f"no market rules for recorded symbol {symbol}")
        self._now = require_utc(start, "replay start")
        self._printed: dict[str, list[MarketTrade]] = {s: [] for s in self._coarse}
        self._last_price: dict[str, Decimal] = {}
        for symbol in self._coarse:
            self._seed_last_price(symbol)

    @classmethod
    def from_data_dir(
        cls,
        data_dir: Path,
        start: datetime | None = None,
        symbols: Iterable[str] | None = None,
        markets: Mapping[str, Market] | None = None,
    ) -> ReplayMarket:
        """Load data/candles/1h (+1m) and data/trades/*-trades.parquet for the given symbols.

        Files are parsed once per process (keyed by path and modification time), so starting
        many replays (one emulator per test) costs little after the first.
        """
        markets = dict(markets or load_binance_markets())
        wanted = set(symbols) if symbols is not None else None
        hourly: dict[str, _Series] = {}
        for path in sorted((data_dir / "candles" / "1h").glob("*_USDT-1h.feather")):
            symbol = _symbol_from_file(path)
            if symbol in markets and (wanted is None or symbol in wanted):
                hourly[symbol] = _file_series(str(path), path.stat().st_mtime_ns, "1h")
        if not hourly:
            raise DataError(f"no 1h candles for {sorted(wanted or [])} under {data_dir}/candles/1h")
        minute = {}
        for path in sorted((data_dir / "candles" / "1m").glob("*_USDT-1m.feather")):
            symbol = _symbol_from_file(path)
            if symbol in hourly:
                minute[symbol] = _file_series(str(path), path.stat().st_mtime_ns, "1m")
        tapes = {}
        for path in sorted((data_dir / "trades").glob("*usdt-trades.parquet")):
            symbol = f"{path.name.split('usdt')[0].upper()}/USDT"
            if symbol in hourly:
                tapes[symbol] = _file_tape(str(path), path.stat().st_mtime_ns, symbol)
        replay = cls.__new__(cls)
        replay._setup(hourly, minute, tapes, markets, start or DEFAULT_START, "1h")
        return replay

    @property
    def now(self) -> datetime:
        """The replay clock."""
        return self._now

    @property
    def timeframe(self) -> str:
        """The timeframe `step()` advances by."""
        return self._timeframe

    @property
    def symbols(self) -> list[str]:
        """Symbols with recorded data."""
        return sorted(self._coarse)

    def market(self, symbol: str) -> Market:
        """Trading rules of `symbol`."""
        try:
            return self._markets[symbol]
        except KeyError:
            raise UnknownSymbol(f"{symbol} is not in the replayed data") from None

    def _series(self, symbol: str) -> _Series:
        try:
            return self._coarse[symbol]
        except KeyError:
            raise UnknownSymbol(f"{symbol} is not in the replayed data") from None

    def _trades_between(self, symbol: str, start_ms: int, end_ms: int) -> list[MarketTrade]:
        tape = self._tapes.get(symbol)
        if tape is None or not tape.overlaps(start_ms, end_ms):
            return self._path_between(symbol, start_ms, end_ms)
        # The recording is the truth where it exists; candles fill the rest of the window.
        first, last = int(tape.times[0]), int(tape.times[-1])
        before = self._path_between(symbol, start_ms, min(end_ms, first - 1))
        after = self._path_between(symbol, max(start_ms, last), end_ms)
        return before + tape.window(start_ms, end_ms) + after

    def _path_between(self, symbol: str, start_ms: int, end_ms: int) -> list[MarketTrade]:
        if end_ms <= start_ms:
            return []
        fine = self._fine.get(symbol)
        series = fine if fine is not None and fine.covers(start_ms, end_ms) else None
        series = series or self._series(symbol)
        first = max(series.index_at(start_ms), 0)
        last = series.index_at(end_ms)
        printed: list[MarketTrade] = []
        span_ms = series.span_ms
        for index in range(first, last + 1):
            open_ms = int(series.times[index])
            if start_ms < open_ms and open_ms + span_ms <= end_ms:
                # Every print of a candle lies in [open, open + span): all of them are inside.
                printed.extend(series.trades(index))
                continue
            for trade in series.trades(index):
                if start_ms < to_ms(trade.timestamp) <= end_ms:
                    printed.append(trade)
        return printed

    def _seed_last_price(self, symbol: str) -> None:
        series = self._series(symbol)
        index = series.index_at(to_ms(self._now))
        if index < 0:
            return
        candle = series.candle(index)
        earlier = [t for t in candle_trades(candle) if t.timestamp <= self._now]
        if earlier:
            self._last_price[symbol] = earlier[-1].price
        elif index > 0:
            self._last_price[symbol] = series.candle(index - 1).close
        else:
            self._last_price[symbol] = candle.open

    def advance_to(self, when: datetime) -> list[MarketTrade]:
        """Move the clock to `when`; return every trade printed meanwhile, oldest first."""
        when = require_utc(when, "replay time")
        if when < self._now:
            raise DataError(f"replay cannot go back from {self._now} to {when}")
        start_ms, end_ms = to_ms(self._now), to_ms(when)
        printed: list[MarketTrade] = []
        for symbol in self._coarse:
            trades = self._trades_between(symbol, start_ms, end_ms) if end_ms > start_ms else []
            self._printed[symbol] = trades
            if trades:
                self._last_price[symbol] = trades[-1].price
            printed.extend(trades)
        self._now = when
        printed.sort(key=lambda t: (t.timestamp, t.symbol))
        return printed

    def step(self, count: int = 1) -> list[MarketTrade]:
        """Advance by `count` timeframes (to the next boundaries); return the printed trades."""
        span = timeframe_delta(self._timeframe)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        boundary = epoch + ((self._now - epoch) // span) * span
        return self.advance_to(boundary + span * count)

    def printed(self, symbol: str) -> list[MarketTrade]:
        """Trades of `symbol` printed by the last advance."""
        self._series(symbol)
        return list(self._printed.get(symbol, []))

    def candle(self, symbol: str) -> Candle | None:
        """The last closed candle of `symbol` (None before its first recorded candle closes)."""
        series = self._series(symbol)
        index = series.index_at(to_ms(self._now) - series.span_ms)
        return series.candle(index) if index >= 0 else None

    def last_price(self, symbol: str) -> Decimal | None:
        """Price of the last trade printed at or before now (None before the symbol's data)."""
        self._series(symbol)
        return self._last_price.get(symbol)

    def candles(
        self,
        symbol: str,
        timeframe: str = "1h",
        since: datetime | None = None,
        limit: int = 500,
        until: datetime | None = None,
    ) -> list[Candle]:
        """Closed candles of `timeframe` (resampled from 1m or 1h), oldest first, up to now."""
        span = timeframe_delta(timeframe)
        fine = self._fine.get(symbol)
        coarse = self._series(symbol)
        source = coarse
        if span < timeframe_delta(coarse.timeframe):
            if fine is None or span < timeframe_delta(fine.timeframe):
                raise DataError(f"no recorded {timeframe} data for {symbol}")
            source = fine
        end = min(self._now, until) if until is not None else self._now
        end_ms = to_ms(end) - int(span.total_seconds() * 1000)  # last allowed open time
        start_ms = to_ms(since) if since is not None else None
        return _resample(source, timeframe, start_ms, end_ms, limit)

    def book(self, symbol: str, depth: int = BOOK_LEVELS) -> BookSnapshot:
        """The synthetic book around the last price (see the module docstring)."""
        market = self.market(symbol)
        price = self.last_price(symbol)
        candle = self.candle(symbol)
        if price is None:
            return BookSnapshot(symbol, [], [], self._now)
        series = self._series(symbol)
        ref = candle or series.candle(max(series.index_at(to_ms(self._now)), 0))
        rel_range = max((ref.high - ref.low) / ref.close, Decimal("0.0005"))
        tick = market.price_tick
        spread = max(tick, round_nearest(price * rel_range / 500, tick))
        best_bid = round_down(price - spread / 2, tick)
        best_ask = max(best_bid + spread, round_up(price, tick))
        if best_ask == best_bid:
            best_ask += tick
        gap = max(tick, round_nearest(price * rel_range / 2 / BOOK_LEVELS, tick))
        minutes = Decimal(timeframe_ms(ref.timeframe) // timeframe_ms("1m"))
        base = ref.volume / minutes / 4
        bids, asks = [], []
        for level in range(min(depth, BOOK_LEVELS)):
            size = round_down(base * (1 + Decimal(level) / 5), market.amount_step)
            size = max(size, market.amount_step)
            bid = best_bid - gap * level
            if bid > 0:
                bids.append((bid, size))
            asks.append((best_ask + gap * level, size))
        return BookSnapshot(symbol, bids, asks, self._now)

    def ticker(self, symbol: str) -> Ticker:
        """Best bid/ask of the synthetic book and the last price."""
        book = self.book(symbol, depth=1)
        return Ticker(
            symbol=symbol,
            bid=book.bids[0][0] if book.bids else None,
            ask=book.asks[0][0] if book.asks else None,
            last=self.last_price(symbol),
            timestamp=self._now,
        )

    def day_stats(self, symbol: str) -> dict[str, Decimal]:
        """24-hour open/high/low/volume/quote volume from the closed candles of the last day."""
        day = self.candles(symbol, self._timeframe, since=self._now - timedelta(days=1))
        if not day:
            return {}
        volume = sum((c.volume for c in day), ZERO)
        return {
            "open": day[0].open,
            "high": max(c.high for c in day),
            "low": min(c.low for c in day),
            "volume": volume,
            "quote_volume": sum((c.volume * c.close for c in day), ZERO),
        }


def _resample(
    source: _Series, timeframe: str, start_ms: int | None, end_ms: int, limit: int
) -> list[Candle]:
    span_ms = timeframe_ms(timeframe)
    if span_ms % source.span_ms:
        raise DataError(f"{timeframe} is not a multiple of the recorded {source.timeframe}")
    first = end_ms - limit * span_ms if start_ms is None else start_ms
    lo = int(np.searchsorted(source.times, first, side="left"))
    hi = int(np.searchsorted(source.times, end_ms + span_ms - 1, side="right"))
    times, values = source.times[lo:hi], source.values[lo:hi]
    if len(times) == 0:
        return []
    if span_ms == source.span_ms:  # same timeframe: no grouping, just the closed rows
        keep = [
            lo + i
            for i, t in enumerate(times)
            if t <= end_ms and (start_ms is None or t >= start_ms)
        ]
        closed = [source.candle(i) for i in keep]
        return closed[-limit:] if start_ms is None else closed[:limit]
    buckets = times - times % span_ms
    out: list[Candle] = []
    edges = np.flatnonzero(np.diff(buckets)) + 1
    for chunk in np.split(np.arange(len(times)), edges):
        bucket = int(buckets[chunk[0]])
        if bucket > end_ms or (start_ms is not None and bucket < start_ms):
            continue
        rows = values[chunk]
        out.append(
            Candle(
                symbol=source.symbol,
                timeframe=timeframe,
                open_time=from_ms(bucket),
                open=_dec(rows[0, 0]),
                high=_dec(rows[:, 1].max()),
                low=_dec(rows[:, 2].min()),
                close=_dec(rows[-1, 3]),
                volume=_dec(round(float(rows[:, 4].sum()), 8)),
            )
        )
    if start_ms is None:
        return out[-limit:]
    return out[:limit]
