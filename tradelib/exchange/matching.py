"""Pure matching rules shared by the paper exchange and the Binance emulator.

No I/O and no clock: every function takes the market, the book or the trade it needs.

Choices made here, once, for every simulated venue:

* Fees are always charged in the **quote** currency (Binance charges a buyer in the base asset
  unless BNB pays the fee; one currency keeps P&L and balance checks simple). A buy therefore
  costs ``notional + fee`` quote and credits the full quantity of base; a sell debits the
  quantity of base and credits ``notional - fee`` quote. Fees are rounded *up* to 1e-8, the
  commission precision Binance reports, so simulated fees are never smaller than real ones.
* A resting limit order fills only when a market trade prints **strictly through** its price
  (below a buy limit, above a sell limit). A trade *at* the price says nothing about our place in
  the queue, and assuming we were first is exactly the optimism users distrust in paper modes.
  The fill is capped by the traded volume still unclaimed by orders ahead of ours.
* A buy limit locks ``quantity * price`` plus the worst-case (taker) fee in quote, a sell locks
  the quantity in base; the unused part of a lock returns to free when the order ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tradelib.domain import (
    ZERO,
    Balance,
    Candle,
    Market,
    MarketTrade,
    OrderType,
    Side,
    is_multiple,
    timeframe_delta,
    to_ms,
)
from tradelib.errors import DataError, InsufficientFunds, InvalidOrder

FEE_QUANTUM = Decimal("0.00000001")
Level = tuple[Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class FilterFailure:
    """Which exchange filter an order breaks, with a message naming the numbers."""

    filter: str
    message: str


def filter_failure(
    market: Market,
    side: Side,
    type: OrderType,
    quantity: Decimal,
    price: Decimal | None,
    reference_price: Decimal | None,
) -> FilterFailure | None:
    """The first Binance filter the order breaks (PRICE_FILTER, LOT_SIZE, NOTIONAL), or None."""
    where = f"{side} {type} {quantity} {market.symbol}"
    if type is OrderType.LIMIT:
        if price is None or price <= 0:
            return FilterFailure("PRICE_FILTER", f"{where}: a limit order needs a price > 0")
        if not is_multiple(price, market.price_tick):
            return FilterFailure(
                "PRICE_FILTER",
                f"{where}: price {price} is not a multiple of tick {market.price_tick}",
            )
    if quantity <= 0:
        return FilterFailure("LOT_SIZE", f"{where}: quantity must be > 0")
    if quantity < market.min_amount:
        return FilterFailure(
            "LOT_SIZE", f"{where}: quantity {quantity} is below the minimum {market.min_amount}"
        )
    if market.max_amount is not None and quantity > market.max_amount:
        return FilterFailure(
            "LOT_SIZE", f"{where}: quantity {quantity} is above the maximum {market.max_amount}"
        )
    if not is_multiple(quantity, market.amount_step):
        return FilterFailure(
            "LOT_SIZE",
            f"{where}: quantity {quantity} is not a multiple of step {market.amount_step}",
        )
    valued_at = price if type is OrderType.LIMIT else reference_price
    if market.min_notional > 0:
        if valued_at is None:
            return FilterFailure(
                "NOTIONAL", f"{where}: no reference price to check the minimum notional"
            )
        notional = quantity * valued_at
        if notional < market.min_notional:
            return FilterFailure(
                "NOTIONAL",
                f"{where}: notional {notional} (at {valued_at}) is below the minimum "
                f"{market.min_notional} {market.quote}",
            )
    return None


def check_order(
    market: Market,
    side: Side,
    type: OrderType,
    quantity: Decimal,
    price: Decimal | None,
    reference_price: Decimal | None,
) -> None:
    """Raise InvalidOrder naming the filter and the numbers when the order breaks a rule."""
    if not market.active:
        raise InvalidOrder(f"{market.symbol} is not trading")
    failure = filter_failure(market, side, type, quantity, price, reference_price)
    if failure is not None:
        raise InvalidOrder(f"{failure.filter}: {failure.message}")


def fee_for(market: Market, notional: Decimal, is_maker: bool) -> Decimal:
    """Fee in quote currency for a fill of `notional`, rounded up to 1e-8."""
    rate = market.maker_fee if is_maker else market.taker_fee
    return (notional * rate).quantize(FEE_QUANTUM, rounding=ROUND_CEILING)


def walk_book(levels: Iterable[Level], quantity: Decimal) -> list[Level]:
    """Fills of a market order against `levels` (best first); fewer when the book is thin."""
    fills: list[Level] = []
    remaining = quantity
    for price, size in levels:
        if remaining <= 0:
            break
        if size <= 0:
            continue
        take = min(size, remaining)
        fills.append((price, take))
        remaining -= take
    return fills


def crosses(side: Side, limit_price: Decimal, level_price: Decimal) -> bool:
    """True when a `side` order at `limit_price` may trade against a level at `level_price`."""
    return level_price <= limit_price if side is Side.BUY else level_price >= limit_price


def limit_crosses_book(
    side: Side, limit_price: Decimal, quantity: Decimal, opposite_levels: Iterable[Level]
) -> list[Level]:
    """Taker fills of a marketable limit: the opposite levels at or better than the limit."""
    marketable = []
    for price, size in opposite_levels:
        if not crosses(side, limit_price, price):
            break
        marketable.append((price, size))
    return walk_book(marketable, quantity)


def match_resting(
    order_side: Side,
    limit_price: Decimal,
    remaining: Decimal,
    trade: MarketTrade,
    already_taken: Decimal = ZERO,
) -> Decimal:
    """Quantity a resting limit fills from `trade`: strictly through, up to unclaimed volume."""
    if remaining <= 0:
        return ZERO
    through = trade.price < limit_price if order_side is Side.BUY else trade.price > limit_price
    if not through:
        return ZERO
    available = trade.quantity - already_taken
    return max(ZERO, min(remaining, available))


def candle_trades(candle: Candle) -> list[MarketTrade]:
    """Synthetic trades through one candle: O→L→H→C when it closed up, else O→H→L→C.

    The volume is split evenly over the four prints (the last one takes the rounding rest so the
    sum is exactly the candle's volume); the prints are spread evenly inside the interval, and the
    taker side follows the direction of each move. A zero-volume candle prints nothing.
    """
    if candle.volume <= 0:
        return []
    if candle.close >= candle.open:
        path = [candle.open, candle.low, candle.high, candle.close]
    else:
        path = [candle.open, candle.high, candle.low, candle.close]
    share = (candle.volume / len(path)).quantize(Decimal("1e-8"), rounding=ROUND_FLOOR)
    quantities = [share] * (len(path) - 1) + [candle.volume - share * (len(path) - 1)]
    span = timeframe_delta(candle.timeframe)
    trades = []
    previous = candle.open
    for index, (price, quantity) in enumerate(zip(path, quantities, strict=True)):
        if quantity <= 0:
            continue
        at = candle.open_time + span * index / len(path)
        if price > previous:
            taker: Side | None = Side.BUY
        elif price < previous:
            taker = Side.SELL
        else:
            taker = None
        trades.append(
            MarketTrade(
                symbol=candle.symbol,
                trade_id=f"{to_ms(at)}-{index}",
                price=price,
                quantity=quantity,
                timestamp=at,
                taker_side=taker,
            )
        )
        previous = price
    return trades


def slippage_price(
    reference: Decimal,
    side: Side,
    quantity: Decimal,
    candle_volume: Decimal,
    half_spread_bps: Decimal = Decimal(2),
    impact: Decimal = Decimal("0.1"),
) -> Decimal:
    """Average fill price of a market order when only candles exist.

    Half the spread plus a square-root impact: ``impact * sqrt(quantity / candle_volume)`` as a
    fraction of the price, with participation capped at the whole candle's volume.
    """
    if reference <= 0:
        raise DataError(f"reference price must be > 0, got {reference}")
    whole = Decimal(1)
    participation = min(whole, quantity / candle_volume) if candle_volume > 0 else whole
    cost = half_spread_bps / Decimal(10_000) + impact * participation.sqrt()
    return reference * (1 + cost) if side is Side.BUY else reference * (1 - cost)


def buy_lock(market: Market, quantity: Decimal, price: Decimal) -> Decimal:
    """Quote a buy limit must lock: its notional plus the worst-case (taker) fee."""
    notional = quantity * price
    return notional + fee_for(market, notional, is_maker=False)


@dataclass(slots=True)
class _Lock:
    asset: str
    amount: Decimal


class Account:
    """Free and locked balances with per-order locks; never lets a balance go negative."""

    def __init__(self, balances: Mapping[str, Decimal] | None = None) -> None:
        self._free: dict[str, Decimal] = {}
        self._locks: dict[str, _Lock] = {}
        for asset, amount in (balances or {}).items():
            self.set_free(asset, amount)

    def free(self, asset: str) -> Decimal:
        """Amount of `asset` available for new orders."""
        return self._free.get(asset, ZERO)

    def locked(self, asset: str) -> Decimal:
        """Amount of `asset` held by open orders."""
        return sum((lk.amount for lk in self._locks.values() if lk.asset == asset), ZERO)

    def total(self, asset: str) -> Decimal:
        """Free plus locked."""
        return self.free(asset) + self.locked(asset)

    def assets(self) -> list[str]:
        """Every asset with a free or locked entry, sorted."""
        return sorted(set(self._free) | {lk.asset for lk in self._locks.values()})

    def balances(self, exchange: str = "binance") -> dict[str, Balance]:
        """All balances as domain values."""
        return {a: Balance(exchange, a, self.free(a), self.locked(a)) for a in self.assets()}

    def lock_of(self, key: str) -> Decimal:
        """What order `key` still holds locked (zero when it holds nothing)."""
        lock = self._locks.get(key)
        return lock.amount if lock else ZERO

    def set_free(self, asset: str, amount: Decimal) -> None:
        """Set the free amount of `asset` (deposits, test setup)."""
        if not amount.is_finite() or amount < 0:
            raise DataError(f"balance of {asset} must be a number >= 0, got {amount}")
        self._free[asset] = amount

    def require(self, asset: str, amount: Decimal) -> None:
        """Raise InsufficientFunds naming asset, needed and free when `amount` is not free."""
        free = self.free(asset)
        if amount > free:
            raise InsufficientFunds(f"insufficient {asset}: needed {amount}, free {free}")

    def lock(self, key: str, asset: str, amount: Decimal) -> None:
        """Move `amount` of `asset` from free to a lock held by order `key`."""
        if key in self._locks:
            raise DataError(f"order {key} already holds a lock")
        if amount < 0:
            raise DataError(f"cannot lock a negative amount ({amount} {asset})")
        self.require(asset, amount)
        self._free[asset] = self.free(asset) - amount
        self._locks[key] = _Lock(asset, amount)

    def release(self, key: str) -> Decimal:
        """Return what order `key` still holds to free; returns the amount released."""
        lock = self._locks.pop(key, None)
        if lock is None:
            return ZERO
        self._free[lock.asset] = self.free(lock.asset) + lock.amount
        return lock.amount

    def _spend(self, key: str | None, asset: str, amount: Decimal) -> None:
        lock = self._locks.get(key) if key is not None else None
        if lock is not None:
            if lock.asset != asset:
                raise DataError(f"order {key} locked {lock.asset}, not {asset}")
            # Fees are rounded up per fill, so many partial fills may need a few 1e-8 more than
            # the lock (sized on the whole order) holds: take that shortfall from free.
            shortfall = amount - lock.amount
            if shortfall > 0:
                self.require(asset, shortfall)
                self._free[asset] = self.free(asset) - shortfall
                lock.amount = ZERO
            else:
                lock.amount -= amount
            return
        self.require(asset, amount)
        self._free[asset] = self.free(asset) - amount

    def settle_fill(
        self,
        key: str | None,
        side: Side,
        base: str,
        quote: str,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
    ) -> None:
        """Book one fill: spend from the order's lock (or from free when `key` holds none)."""
        notional = quantity * price
        if side is Side.BUY:
            self._spend(key, quote, notional + fee)
            self._free[base] = self.free(base) + quantity
        else:
            self._spend(key, base, quantity)
            proceeds = notional - fee
            if proceeds < 0:
                raise DataError(f"fee {fee} exceeds the proceeds {notional} of a sell")
            self._free[quote] = self.free(quote) + proceeds

    def snapshot(self) -> dict[str, tuple[Decimal, Decimal]]:
        """(free, locked) per asset, for assertions and property tests."""
        return {a: (self.free(a), self.locked(a)) for a in self.assets()}


def total_quantity(levels: Sequence[Level]) -> Decimal:
    """Sum of the sizes of `levels`."""
    return sum((size for _, size in levels), ZERO)


def average_price(levels: Sequence[Level]) -> Decimal | None:
    """Volume-weighted price of `levels`, None when empty."""
    qty = total_quantity(levels)
    if qty == 0:
        return None
    return sum((p * q for p, q in levels), ZERO) / qty
