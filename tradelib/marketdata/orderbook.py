"""Local order book kept in sync with Binance's snapshot + diff protocol (spot and futures).

Protocol (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams, "How to
manage a local order book correctly", and the USD-M futures equivalent):

- spot: drop events with u <= lastUpdateId; the first applied event must satisfy
  U <= lastUpdateId + 1 <= u; every later event must have U == previous u + 1.
- futures: drop events with u < lastUpdateId; the first applied event must satisfy
  U <= lastUpdateId <= u; every later event must have pu == previous u.

A violation means an update was lost: the book raises `BookOutOfSync` (with the reason) and stays
flagged (`in_sync` False, `resync_reason` set) until `load_snapshot` is called again; it never
guesses. A book that ends up crossed (best bid >= best ask) after an event is treated the same way.
Quantities are absolute: a level with quantity 0 is deleted. Prices and quantities are Decimal;
levels are kept in a dict plus a sorted price list, so updates are O(log n) to find and best
bid/ask are O(1).

A diff's levels may be the wire's numeric text, exactly as received: the book parses them while
applying them, to the same exact Decimals. That is the fast path (benchmarks/bench_marketdata.py):
hashing a freshly parsed Decimal costs several times its parse (CPython computes it with a
modular power) and every dict lookup of a new price object paid it, so prices are interned by
their text, parsed, checked and hashed once. Quantities are parsed every time (they rarely repeat).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, TypeAlias

from tradelib.domain import Side, from_ms, to_decimal
from tradelib.errors import DataError
from tradelib.exchange.base import BookSnapshot
from tradelib.logs import get_logger

_log = get_logger(__name__)
_ZERO = Decimal(0)
_BPS = Decimal(10_000)
_TWO = Decimal(2)
_NAN = Decimal("NaN")
_PRICES_MAX = 1 << 15  # ~6 MB of interned prices at most, shared by every book

Level = tuple[Decimal, Decimal]
# [price, quantity] as the venue sends it (numeric text), or a Level
WireLevel: TypeAlias = Sequence[str | Decimal]


class _PriceCache(dict[str, Decimal]):
    """Valid prices by their wire text: parsed, checked and hashed on first sight only."""

    def __missing__(self, text: str) -> Decimal:
        price = Decimal(text)  # text only (the caller checks): Decimal(float) would be inexact
        if not (price.is_finite() and price > _ZERO):
            raise ValueError(f"price {text!r} is not finite and > 0")
        if len(self) >= _PRICES_MAX:
            self.clear()  # a memo of a pure function: emptying it costs speed, never correctness
        self[text] = price
        return price


_PRICES = _PriceCache()


class BookOutOfSync(DataError):
    """Raised when a depth diff skips update ids or leaves the book crossed: re-sync needed."""


class SyncMode(StrEnum):
    """Which Binance continuity rule applies: spot (U == prev u + 1) or futures (pu == prev u)."""

    SPOT = "spot"
    FUTURES = "futures"


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """One depth update event: absolute quantities per price; U..u update ids, pu for futures.

    Levels are Decimal pairs or the wire's [price, quantity] text as received (the fast path).
    """

    first_update_id: int
    final_update_id: int
    bids: Sequence[Level] | Sequence[WireLevel]
    asks: Sequence[Level] | Sequence[WireLevel]
    prev_final_update_id: int | None = None
    timestamp: datetime | None = None


class FillEstimate(NamedTuple):
    """What taking `quantity` from the book would cost: average and worst price, amount filled."""

    average_price: Decimal | None
    worst_price: Decimal | None
    filled: Decimal


class DepthWithin(NamedTuple):
    """Resting quantity and notional within a band around the mid price."""

    bid_quantity: Decimal
    ask_quantity: Decimal
    bid_notional: Decimal
    ask_notional: Decimal


def _levels(raw: Iterable[Sequence[Any]], what: str) -> list[Level]:
    # Interned prices: applying them later skips hashing a new Decimal per level.
    return [
        (_PRICES.get(p) or to_decimal(p, f"{what} price"), to_decimal(q, f"{what} quantity"))
        for p, q, *_ in raw
    ]


def parse_binance_depth(event: Mapping[str, Any]) -> DepthDiff:
    """A raw Binance `depthUpdate` event (spot or futures, strings) as a DepthDiff."""
    try:
        return DepthDiff(
            first_update_id=int(event["U"]),
            final_update_id=int(event["u"]),
            bids=_levels(event["b"], "bid"),
            asks=_levels(event["a"], "ask"),
            prev_final_update_id=int(event["pu"]) if event.get("pu") is not None else None,
            timestamp=from_ms(int(event["E"])) if event.get("E") is not None else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed Binance depth event: {exc!r}") from exc


class OrderBook:
    """One symbol's book: snapshot, sequence-checked diffs, and the queries trading needs."""

    def __init__(self, symbol: str, mode: SyncMode | str = SyncMode.SPOT) -> None:
        self.symbol = symbol
        self.mode = SyncMode(mode)
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []  # ascending; best bid is the last
        self._ask_prices: list[Decimal] = []  # ascending; best ask is the first
        self.last_update_id: int | None = None
        self.timestamp: datetime | None = None
        self.resync_reason: str | None = "no snapshot loaded yet"
        self._awaiting_first = True
        self.applied = 0
        self.dropped = 0

    # ------------------------------------------------------------------ sync

    @classmethod
    def from_snapshot(
        cls, snapshot: BookSnapshot, mode: SyncMode | str = SyncMode.SPOT
    ) -> OrderBook:
        """A book loaded from a `BookSnapshot` (its update_id is the snapshot's lastUpdateId)."""
        book = cls(snapshot.symbol, mode)
        book.load_snapshot(snapshot.bids, snapshot.asks, snapshot.update_id, snapshot.timestamp)
        return book

    @property
    def in_sync(self) -> bool:
        """True when diffs may be applied; False until a snapshot is loaded or after a gap."""
        return self.resync_reason is None

    def load_snapshot(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        last_update_id: int | None,
        timestamp: datetime | None = None,
    ) -> None:
        """Replace the whole book with a snapshot; diffs continue from `last_update_id`."""
        self._bids = {}
        self._asks = {}
        for price, qty in bids:
            self._check_level(price, qty, "snapshot bid")
            if qty > 0:
                self._bids[price] = qty
        for price, qty in asks:
            self._check_level(price, qty, "snapshot ask")
            if qty > 0:
                self._asks[price] = qty
        self._bid_prices = sorted(self._bids)
        self._ask_prices = sorted(self._asks)
        self.last_update_id = last_update_id
        self.timestamp = timestamp
        self._awaiting_first = True
        self.resync_reason = None
        if self.is_crossed:
            self._out_of_sync(f"snapshot is crossed: bid {self.best_bid} >= ask {self.best_ask}")

    def apply_diff(self, diff: DepthDiff) -> bool:
        """Apply one event; False if it predates the snapshot (dropped), BookOutOfSync on a gap."""
        if self.resync_reason is not None:
            raise BookOutOfSync(f"{self.symbol} book needs a re-sync: {self.resync_reason}")
        last = self.last_update_id
        first, final = diff.first_update_id, diff.final_update_id  # Binance's U and u
        if last is not None:
            futures = self.mode is SyncMode.FUTURES
            if self._awaiting_first:
                if final < last or (not futures and final == last):
                    self.dropped += 1
                    return False
                start = last if futures else last + 1
                if not first <= start <= final:
                    self._out_of_sync(
                        f"first event U={first}..u={final} does not cover {start} "
                        f"(snapshot lastUpdateId={last}): updates were missed"
                    )
            elif futures:
                if diff.prev_final_update_id is None:
                    self._out_of_sync(f"futures event U={first}..u={final} carries no pu")
                elif diff.prev_final_update_id != last:
                    self._out_of_sync(
                        f"event pu={diff.prev_final_update_id} != previous u={last}: missed updates"
                    )
            elif first != last + 1:
                if final <= last:
                    self.dropped += 1
                    _log.warning(
                        "depth_event_replayed", symbol=self.symbol, U=first, u=final, last=last
                    )
                    return False
                self._out_of_sync(
                    f"event U={first} != previous u+1={last + 1}: updates were missed"
                )
        self._apply_side(diff.bids, self._bids, self._bid_prices, "bid")
        self._apply_side(diff.asks, self._asks, self._ask_prices, "ask")
        self.last_update_id = final
        self._awaiting_first = False
        if diff.timestamp is not None:
            self.timestamp = diff.timestamp
        self.applied += 1
        if self._bid_prices and self._ask_prices and self._bid_prices[-1] >= self._ask_prices[0]:
            self._out_of_sync(
                f"book crossed after U={first}..u={final}: "
                f"bid {self.best_bid} >= ask {self.best_ask}"
            )
        return True

    def _out_of_sync(self, reason: str) -> None:
        self.resync_reason = reason
        _log.warning("order_book_out_of_sync", symbol=self.symbol, reason=reason)
        raise BookOutOfSync(f"{self.symbol} book out of sync: {reason}")

    def _check_level(self, price: Decimal, qty: Decimal, what: str) -> None:
        if not (price.is_finite() and price > 0 and qty.is_finite() and qty >= 0):
            self.resync_reason = f"invalid {what} level {price} x {qty}"
            raise BookOutOfSync(f"{self.symbol}: invalid {what} level {price} x {qty}")

    def _apply_side(
        self,
        levels: Sequence[Level] | Sequence[WireLevel],
        book: dict[Decimal, Decimal],
        prices: list[Decimal],
        what: str,
    ) -> None:
        interned = _PRICES
        for p, q in levels:
            try:
                if p.__class__ is str:
                    price = interned[p]  # parsed and checked when first seen
                elif isinstance(p, Decimal) and p.is_finite() and p > _ZERO:
                    price = p
                else:
                    raise ValueError
                # Text is parsed exactly; anything but text or Decimal (a float) is refused.
                qty = Decimal(q) if q.__class__ is str else q if isinstance(q, Decimal) else _NAN
                if qty:  # NaN and infinities are truthy and fail the check
                    if not (qty.is_finite() and qty > _ZERO):
                        raise ValueError
                    if price not in book:
                        insort(prices, price)
                    book[price] = qty
                elif price in book:
                    del book[price]
                    del prices[bisect_left(prices, price)]
            except (ArithmeticError, TypeError, ValueError):
                self._out_of_sync(f"invalid {what} level {p} x {q} in diff")

    # ------------------------------------------------------------------ queries

    @property
    def best_bid(self) -> Level | None:
        """Highest bid (price, quantity), or None when there are no bids."""
        if not self._bid_prices:
            return None
        price = self._bid_prices[-1]
        return price, self._bids[price]

    @property
    def best_ask(self) -> Level | None:
        """Lowest ask (price, quantity), or None when there are no asks."""
        if not self._ask_prices:
            return None
        price = self._ask_prices[0]
        return price, self._asks[price]

    @property
    def is_crossed(self) -> bool:
        """True when best bid >= best ask (a corrupt or locked book)."""
        return bool(self._bid_prices and self._ask_prices) and (
            self._bid_prices[-1] >= self._ask_prices[0]
        )

    @property
    def mid(self) -> Decimal | None:
        """(best bid + best ask) / 2, or None when a side is empty."""
        if not (self._bid_prices and self._ask_prices):
            return None
        return (self._bid_prices[-1] + self._ask_prices[0]) / _TWO

    @property
    def spread(self) -> Decimal | None:
        """Best ask minus best bid, or None when a side is empty."""
        if not (self._bid_prices and self._ask_prices):
            return None
        return self._ask_prices[0] - self._bid_prices[-1]

    @property
    def spread_bps(self) -> Decimal | None:
        """Spread in basis points of the mid price."""
        mid, spread = self.mid, self.spread
        if mid is None or spread is None:
            return None
        return spread / mid * _BPS

    def bids(self, depth: int | None = None) -> list[Level]:
        """Bid levels, best (highest) first, at most `depth` of them."""
        prices = self._bid_prices if depth is None else self._bid_prices[-depth:] if depth else []
        return [(p, self._bids[p]) for p in reversed(prices)]

    def asks(self, depth: int | None = None) -> list[Level]:
        """Ask levels, best (lowest) first, at most `depth` of them."""
        prices = self._ask_prices if depth is None else self._ask_prices[:depth]
        return [(p, self._asks[p]) for p in prices]

    def depth_within_bps(self, bps: Decimal | int) -> DepthWithin:
        """Quantity and notional resting within `bps` basis points of the mid, per side."""
        mid = self.mid
        if mid is None:
            return DepthWithin(_ZERO, _ZERO, _ZERO, _ZERO)
        band = Decimal(bps) / _BPS
        low, high = mid * (1 - band), mid * (1 + band)
        bid_q = bid_n = ask_q = ask_n = _ZERO
        for price in self._bid_prices[bisect_left(self._bid_prices, low) :]:
            bid_q += self._bids[price]
            bid_n += self._bids[price] * price
        for price in self._ask_prices[: bisect_right(self._ask_prices, high)]:
            ask_q += self._asks[price]
            ask_n += self._asks[price] * price
        return DepthWithin(bid_q, ask_q, bid_n, ask_n)

    def price_for_quantity(self, side: Side, quantity: Decimal) -> FillEstimate:
        """Walk the book as a taker on `side` (BUY eats asks): average/worst price, filled qty."""
        if quantity <= 0:
            raise DataError(f"quantity must be > 0, got {quantity}")
        if side is Side.BUY:
            prices: Iterable[Decimal] = self._ask_prices
            book = self._asks
        else:
            prices, book = reversed(self._bid_prices), self._bids
        remaining, cost, worst = quantity, _ZERO, None
        for price in prices:
            take = min(remaining, book[price])
            cost += take * price
            remaining -= take
            worst = price
            if not remaining:
                break
        filled = quantity - remaining
        if not filled:
            return FillEstimate(None, None, _ZERO)
        return FillEstimate(cost / filled, worst, filled)

    def to_snapshot(self, depth: int | None = None) -> BookSnapshot:
        """The book as a `BookSnapshot` (best levels first), e.g. for the dashboard."""
        if self.timestamp is None:
            raise DataError(f"{self.symbol} book has no timestamp yet")
        return BookSnapshot(
            symbol=self.symbol,
            bids=self.bids(depth),
            asks=self.asks(depth),
            timestamp=self.timestamp,
            update_id=self.last_update_id,
        )
