"""The emulated exchange's state: orders, own trades, books, public tape and the account.

Synchronous and single-threaded (it runs on the server's event loop); every change is also
announced to `listeners` as a plain event object that the stream layer turns into JSON.
Market data comes from a `ReplayMarket`; matching and balances from `tradelib.exchange.matching`.
Own resting orders are not shown in the public book (the replayed market does not see them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tradelib.domain import (
    ZERO,
    Candle,
    Market,
    OrderType,
    Side,
    TimeInForce,
    from_ms,
    round_down,
    timeframe_ms,
    to_ms,
)
from tradelib.errors import InsufficientFunds
from tradelib.exchange.matching import (
    Account,
    Level,
    buy_lock,
    candle_trades,
    fee_for,
    filter_failure,
    limit_crosses_book,
    match_resting,
    walk_book,
)
from tradelib.exchange.replay import ReplayMarket
from tradelib.testing.binance_emulator.wire import (
    DUPLICATE_ORDER,
    INSUFFICIENT_BALANCE,
    ApiError,
    VenueFill,
    VenueOrder,
    bad_request,
)

TAPE_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """A trade on the public tape (replayed or ours)."""

    trade_id: int
    symbol: str
    price: Decimal
    quantity: Decimal
    time_ms: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order changed (execution type NEW, TRADE, CANCELED, EXPIRED)."""

    order: dict[str, object]
    assets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """Balances of `assets` changed."""

    balances: dict[str, tuple[Decimal, Decimal]]
    time_ms: int


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """A book diff with Binance's first/last update ids."""

    symbol: str
    first_id: int
    last_id: int
    bids: list[Level]
    asks: list[Level]
    time_ms: int


@dataclass(frozen=True, slots=True)
class KlineEvent:
    """A candle closed."""

    candle: Candle
    time_ms: int


class _Book:
    def __init__(self, update_id: int) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.update_id = update_id

    def levels(self, side: Side, limit: int | None = None) -> list[Level]:
        """Bids best (highest) first or asks best (lowest) first."""
        book = self.bids if side is Side.BUY else self.asks
        ordered = sorted(book.items(), reverse=side is Side.BUY)
        return ordered[:limit] if limit is not None else ordered


class Venue:
    """Orders, fills, books and balances of the emulated Binance spot venue."""

    def __init__(self, replay: ReplayMarket, account: Account, markets: dict[str, Market]) -> None:
        self.replay = replay
        self.account = account
        self.markets = markets
        self.listeners: list[Callable[[object], None]] = []
        self._orders: dict[int, VenueOrder] = {}
        self._next_order_id = 1
        self._next_trade_id: dict[str, int] = {}
        self._fills: list[VenueFill] = []
        self._tape: dict[str, deque[PublicTrade]] = {}
        self._books: dict[str, _Book] = {}
        for number, symbol in enumerate(sorted(markets)):
            self._next_trade_id[symbol] = 1_000_000 * (number + 1)
            self._tape[symbol] = deque(maxlen=TAPE_LENGTH)
            self._books[symbol] = _Book(update_id=10_000_000 * (number + 1))
        self._seed_market_data()

    # ----------------------------------------------------------------- market data
    @property
    def now_ms(self) -> int:
        """Venue time: the replay clock in ms."""
        return to_ms(self.replay.now)

    def _emit(self, event: object) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _seed_market_data(self) -> None:
        replayed = set(self.replay.symbols)
        for symbol in self.markets:
            if symbol not in replayed:
                continue
            candle = self.replay.candle(symbol)
            if candle is not None:
                for trade in candle_trades(candle):
                    self._print(
                        symbol,
                        trade.price,
                        trade.quantity,
                        to_ms(trade.timestamp),
                        trade.taker_side is Side.SELL,
                        announce=False,
                    )
            self._replace_book(symbol, self._replay_levels(symbol), announce=False)

    def _replay_levels(self, symbol: str) -> tuple[list[Level], list[Level]]:
        if symbol not in self.replay.symbols:
            return [], []
        snapshot = self.replay.book(symbol)
        return snapshot.bids, snapshot.asks

    def _replace_book(
        self, symbol: str, levels: tuple[Iterable[Level], Iterable[Level]], announce: bool = True
    ) -> None:
        book = self._books[symbol]
        new_bids = {p: q for p, q in levels[0] if q > 0}
        new_asks = {p: q for p, q in levels[1] if q > 0}
        bid_diff = _diff(book.bids, new_bids)
        ask_diff = _diff(book.asks, new_asks)
        book.bids, book.asks = new_bids, new_asks
        self._announce_depth(symbol, bid_diff, ask_diff, announce)

    def _announce_depth(
        self, symbol: str, bids: list[Level], asks: list[Level], announce: bool
    ) -> None:
        if not bids and not asks:
            return
        book = self._books[symbol]
        first = book.update_id + 1
        book.update_id = first + len(bids) + len(asks) - 1
        if announce:
            self._emit(DepthEvent(symbol, first, book.update_id, bids, asks, self.now_ms))

    def _print(
        self,
        symbol: str,
        price: Decimal,
        quantity: Decimal,
        time_ms: int,
        buyer_is_maker: bool,
        announce: bool = True,
    ) -> PublicTrade:
        trade = PublicTrade(
            self._next_trade_id[symbol], symbol, price, quantity, time_ms, buyer_is_maker
        )
        self._next_trade_id[symbol] += 1
        self._tape[symbol].append(trade)
        if announce:
            self._emit(trade)
        return trade

    def market(self, symbol: str) -> Market:
        """Rules of `symbol`, or -1121."""
        market = self.markets.get(symbol)
        if market is None:
            raise bad_request(-1121, "Invalid symbol.")
        return market

    def book(self, symbol: str, limit: int | None = None) -> tuple[int, list[Level], list[Level]]:
        """(lastUpdateId, bids, asks) of the current book."""
        self.market(symbol)
        book = self._books[symbol]
        return book.update_id, book.levels(Side.BUY, limit), book.levels(Side.SELL, limit)

    def recent_trades(self, symbol: str, limit: int = 500) -> list[PublicTrade]:
        """The last `limit` public trades, oldest first."""
        self.market(symbol)
        return list(self._tape[symbol])[-limit:]

    def last_price(self, symbol: str) -> Decimal | None:
        """Price of the last public trade."""
        tape = self._tape[symbol]
        return tape[-1].price if tape else self.replay.last_price(symbol)

    def set_book(self, symbol: str, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the book of `symbol` until the next advance."""
        self.market(symbol)
        self._replace_book(symbol, (list(bids), list(asks)))

    # ----------------------------------------------------------------- orders
    def orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Every order, oldest first."""
        return [o for o in self._orders.values() if symbol is None or o.symbol == symbol]

    def fills(self, symbol: str | None = None) -> list[VenueFill]:
        """Every own execution, oldest first."""
        return [f for f in self._fills if symbol is None or f.symbol == symbol]

    def find(self, symbol: str, order_id: int | None, client_order_id: str | None) -> VenueOrder:
        """The order by exchange id or (latest with) client order id, or -2013."""
        self.market(symbol)
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is not None and order.symbol == symbol:
                return order
        elif client_order_id is not None:
            for order in reversed(self._orders.values()):
                if order.symbol == symbol and order.client_order_id == client_order_id:
                    return order
        raise bad_request(-2013, "Order does not exist.")

    def place(
        self,
        symbol: str,
        side: Side,
        type: OrderType,
        time_in_force: TimeInForce,
        quantity: Decimal | None,
        price: Decimal | None,
        client_order_id: str,
        quote_order_qty: Decimal | None = None,
        max_fill_fraction: Decimal | None = None,
    ) -> VenueOrder:
        """Check, fund, create and immediately match one order (raises ApiError)."""
        market = self.market(symbol)
        if any(o.is_open and o.client_order_id == client_order_id for o in self._orders.values()):
            raise bad_request(-2010, DUPLICATE_ORDER)
        opposite = self._books[symbol].levels(side.opposite)
        if type is OrderType.MARKET and quantity is None and quote_order_qty is not None:
            quantity = _quantity_for_quote(market, opposite, quote_order_qty)
            reference = quote_order_qty / quantity if quantity > 0 else None
        else:
            reference = self.last_price(symbol)
        if quantity is None:
            raise bad_request(-1102, "Mandatory parameter 'quantity' was not sent.")
        failure = filter_failure(market, side, type, quantity, price, reference)
        if failure is not None:
            raise bad_request(-1013, f"Filter failure: {failure.filter}")
        if type is OrderType.LIMIT and price is not None:
            taker = limit_crosses_book(side, price, quantity, opposite)
        else:
            taker = walk_book(opposite, quantity)
        max_fill = None
        if max_fill_fraction is not None:
            max_fill = round_down(quantity * max_fill_fraction, market.amount_step)
            taker = walk_book(taker, max_fill)
        if time_in_force is TimeInForce.FOK and sum(q for _, q in taker) < quantity:
            taker = []
            fok_fails = True
        else:
            fok_fails = False
        lock_asset, lock_amount = self._lock_needed(market, side, type, quantity, price, taker)
        order = VenueOrder(
            order_id=self._next_order_id,
            symbol=symbol,
            client_order_id=client_order_id,
            side=side,
            type=type,
            time_in_force=time_in_force,
            price=price,
            quantity=quantity,
            created_ms=self.now_ms,
            quote_order_qty=quote_order_qty,
            max_fill=max_fill,
        )
        try:
            self.account.lock(order.lock_key, lock_asset, lock_amount)
        except InsufficientFunds:
            raise bad_request(-2010, INSUFFICIENT_BALANCE) from None
        self._next_order_id += 1
        self._orders[order.order_id] = order
        self._report(order, "NEW")
        for level_price, level_qty in taker:
            # The public trade printed just below carries the same id as our fill.
            if not self._execute(order, level_price, level_qty, False, self._next_trade_id[symbol]):
                break
            self._consume(symbol, side.opposite, level_price, level_qty)
            self._print(symbol, level_price, level_qty, self.now_ms, side is Side.SELL)
        if order.is_open and (
            type is OrderType.MARKET or time_in_force is not TimeInForce.GTC or fok_fails
        ):
            self._finish(order, "EXPIRED")
        elif order.is_open and side is Side.BUY and price is not None:
            # Re-size the lock to what the rest of the order can still need at its limit.
            self.account.release(order.lock_key)
            needed = buy_lock(market, order.remaining, price)
            self.account.lock(
                order.lock_key, market.quote, min(needed, self.account.free(market.quote))
            )
        return order

    def _lock_needed(
        self,
        market: Market,
        side: Side,
        type: OrderType,
        quantity: Decimal,
        price: Decimal | None,
        taker: list[Level],
    ) -> tuple[str, Decimal]:
        if side is Side.SELL:
            return market.base, quantity
        if type is OrderType.LIMIT and price is not None:
            return market.quote, buy_lock(market, quantity, price)
        cost = sum((p * q for p, q in taker), ZERO)
        fees = sum((fee_for(market, p * q, is_maker=False) for p, q in taker), ZERO)
        return market.quote, cost + fees

    def cancel(self, symbol: str, order_id: int | None, client_order_id: str | None) -> VenueOrder:
        """Cancel an open order, or -2011."""
        try:
            order = self.find(symbol, order_id, client_order_id)
        except ApiError:
            raise bad_request(-2011, "Unknown order sent.") from None
        if not order.is_open:
            raise bad_request(-2011, "Unknown order sent.")
        self._finish(order, "CANCELED")
        return order

    def cancel_all(self, symbol: str) -> list[VenueOrder]:
        """Cancel every open order of `symbol` (-2011 when there is none)."""
        open_orders = [o for o in self.orders(symbol) if o.is_open]
        if not open_orders:
            raise bad_request(-2011, "Unknown order sent.")
        for order in open_orders:
            self._finish(order, "CANCELED")
        return open_orders

    def _report(self, order: VenueOrder, execution: str, fill: VenueFill | None = None) -> None:
        order.updated_ms = self.now_ms
        market = self.markets[order.symbol]
        report = order.execution_report(execution, self.now_ms, fill)
        self._emit(OrderEvent(report, (market.base, market.quote)))
        self._emit(self._account_event((market.base, market.quote)))

    def _account_event(self, assets: tuple[str, ...]) -> AccountEvent:
        return AccountEvent(
            {a: (self.account.free(a), self.account.locked(a)) for a in assets}, self.now_ms
        )

    def _finish(self, order: VenueOrder, status: str) -> None:
        order.status = status
        self.account.release(order.lock_key)
        self._report(order, status)

    def _execute(
        self, order: VenueOrder, price: Decimal, quantity: Decimal, is_maker: bool, trade_id: int
    ) -> bool:
        """Book one fill; False (nothing booked) when the account cannot pay for it."""
        market = self.markets[order.symbol]
        fee = fee_for(market, price * quantity, is_maker)
        try:
            self.account.settle_fill(
                order.lock_key, order.side, market.base, market.quote, quantity, price, fee
            )
        except InsufficientFunds:
            # Per-fill fee rounding can outgrow a lock by a few 1e-8 when free is exactly 0:
            # the fill does not happen, as a real venue would not trade an unfunded order.
            return False
        fill = VenueFill(
            trade_id=trade_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            quantity=quantity,
            commission=fee,
            commission_asset=market.quote,
            time_ms=self.now_ms,
            is_maker=is_maker,
        )
        self._fills.append(fill)
        order.fills.append(fill)
        order.executed += quantity
        order.cumulative_quote += price * quantity
        order.status = "FILLED" if order.executed >= order.quantity else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self.account.release(order.lock_key)
        self._report(order, "TRADE", fill)
        return True

    def _consume(self, symbol: str, side: Side, price: Decimal, quantity: Decimal) -> None:
        book = self._books[symbol]
        levels = book.bids if side is Side.BUY else book.asks
        left = levels.get(price, ZERO) - quantity
        if left > 0:
            levels[price] = left
        else:
            levels.pop(price, None)
        diff = [(price, max(left, ZERO))]
        self._announce_depth(
            symbol, diff if side is Side.BUY else [], diff if side is Side.SELL else [], True
        )

    # ----------------------------------------------------------------- time
    def advance(self, to: datetime | None = None, steps: int = 1) -> list[VenueFill]:
        """Move the replay clock; print its trades, fill resting orders they cross, new books."""
        before_ms = self.now_ms
        printed = self.replay.advance_to(to) if to is not None else self.replay.step(steps)
        first_fill = len(self._fills)
        taken: dict[int, Decimal] = {}
        for trade in printed:
            if trade.symbol not in self.markets:
                continue
            public = self._print(
                trade.symbol,
                trade.price,
                trade.quantity,
                to_ms(trade.timestamp),
                trade.taker_side is Side.SELL,
            )
            for order in self.orders(trade.symbol):
                if not order.is_open or order.type is not OrderType.LIMIT or order.price is None:
                    continue
                got = match_resting(
                    order.side,
                    order.price,
                    order.remaining,
                    trade,
                    taken.get(public.trade_id, ZERO),
                )
                got = round_down(got, self.markets[order.symbol].amount_step)
                if got > 0 and self._execute(order, order.price, got, True, public.trade_id):
                    taken[public.trade_id] = taken.get(public.trade_id, ZERO) + got
        for symbol in self.markets:
            self._replace_book(symbol, self._replay_levels(symbol))
        self._announce_klines(before_ms)
        return self._fills[first_fill:]

    def _announce_klines(self, before_ms: int) -> None:
        for symbol in self.replay.symbols:
            if symbol not in self.markets:
                continue
            span_ms = timeframe_ms(self.replay.timeframe)
            since = from_ms(before_ms - span_ms + 1)  # candles that closed after `before_ms`
            for candle in self.replay.candles(symbol, self.replay.timeframe, since, limit=100):
                if before_ms < to_ms(candle.open_time) + span_ms <= self.now_ms:
                    self._emit(KlineEvent(candle, self.now_ms))


def _diff(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]) -> list[Level]:
    changes = [(p, q) for p, q in new.items() if old.get(p) != q]
    changes += [(p, ZERO) for p in old if p not in new]
    return sorted(changes)


def _quantity_for_quote(market: Market, levels: list[Level], quote: Decimal) -> Decimal:
    """Base quantity a quoteOrderQty market order buys/sells walking `levels`."""
    left, quantity = quote, ZERO
    for price, size in levels:
        if left <= 0:
            break
        take = min(size, left / price)
        quantity += take
        left -= take * price
    return round_down(quantity, market.amount_step)
