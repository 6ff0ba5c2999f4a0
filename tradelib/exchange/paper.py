"""`PaperExchange`: the Exchange protocol filled against real market data, never optimistically.

* Market orders walk the current book; what the book cannot fill expires (IOC semantics).
* A resting limit fills only when real trades print strictly through its price, and only up
  to the volume those trades leave unclaimed (partial fills) — `matching.match_resting`.
* Latency (`latency_ms`) delays an order's (and a cancel's) arrival: the market moves on
  meanwhile and the order meets the book as it is at arrival.
* Balances are checked and locked as on Binance (`matching.Account`), fees come from the
  market's maker/taker schedule, a duplicate open client order id is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable

from tradelib.domain import (
    ZERO,
    ApiKeyRestrictions,
    Balance,
    Candle,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Market,
    MarketTrade,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    round_down,
)
from tradelib.errors import InsufficientFunds, NoApiKey, OrderNotFound, UnknownSymbol
from tradelib.exchange.base import BookSnapshot, OrderRequest, OrderUpdate, Ticker
from tradelib.exchange.matching import (
    Account,
    Level,
    buy_lock,
    fee_for,
    limit_crosses_book,
    match_resting,
    total_quantity,
    walk_book,
)
from tradelib.exchange.paper_data import ExchangeMarketData, ReplayMarketData
from tradelib.exchange.precheck import (
    check_request,
    duplicate_id_error,
    refuse_if_invalid,
    rounded,
)
from tradelib.exchange.venues import BINANCE, VENUES

__all__ = ["ExchangeMarketData", "MarketDataSource", "PaperExchange", "ReplayMarketData"]


@runtime_checkable
class MarketDataSource(Protocol):
    """What the paper exchange needs to know about a market, recorded or live."""

    def now(self) -> datetime:
        """The source's clock (replay time or wall clock), aware UTC."""
        ...

    async def markets(self) -> dict[str, Market]:
        """Trading rules by symbol."""
        ...

    async def book(self, symbol: str, depth: int = 100) -> BookSnapshot:
        """The current order book."""
        ...

    async def ticker(self, symbol: str) -> Ticker:
        """Best bid/ask and last price now."""
        ...

    async def candles(
        self, symbol: str, timeframe: str, since: datetime | None, limit: int | None
    ) -> list[Candle]:
        """Closed candles, oldest first."""
        ...

    async def new_trades(self, symbol: str, consumer: str = "paper") -> list[MarketTrade]:
        """Trades printed since `consumer` last asked about `symbol`, oldest first."""
        ...

    async def wait_until(self, when: datetime) -> None:
        """Let time pass until `when` (a replay advances its clock, live data sleeps)."""
        ...

    async def wait_for_data(self, timeout: float) -> None:
        """Wait until new market data may be there (or `timeout` seconds)."""
        ...


@dataclass(slots=True)
class _Resting:
    order: Order
    market: Market
    seq: int


class PaperExchange:
    """Simulated venue on real market data; behaves like CcxtExchange for every caller."""

    def __init__(
        self,
        source: MarketDataSource,
        *,
        balances: dict[str, Decimal] | None = None,
        latency_ms: int = 0,
        exchange_id: str = "binance",
        book_depth: int = 100,
        poll_seconds: float = 0.2,
        owns_source: bool = False,
    ) -> None:
        self.id = exchange_id
        self.source = source
        self.latency = timedelta(milliseconds=latency_ms)
        self.venue = VENUES.get(exchange_id, BINANCE)
        self.book_depth = book_depth
        self.poll_seconds = poll_seconds
        self._owns_source = owns_source
        self.account = Account(balances if balances is not None else {"USDT": Decimal(10_000)})
        self._markets: dict[str, Market] = {}
        self._orders: dict[str, Order] = {}
        self._resting: dict[str, _Resting] = {}
        self._fills: dict[str, list[Fill]] = {}
        self._watched: set[str] = set()
        self._taken: dict[str, tuple[datetime | None, dict[tuple[Side, Decimal], Decimal]]] = {}
        self._subscribers: list[asyncio.Queue[OrderUpdate]] = []
        self._lock = asyncio.Lock()
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        # Trade ids are unique per venue instance: the store keeps one fill per (trade id,
        # exchange), and a restarted paper venue must not reuse an earlier instance's ids.
        self._trade_tag = secrets.token_hex(4)
        self._seq = itertools.count()
        self._consumers = itertools.count(1)

    def __repr__(self) -> str:
        return f"PaperExchange(id={self.id!r}, latency={self.latency}, open={len(self._resting)})"

    # --- market data ----------------------------------------------------------------------

    async def load_markets(self, reload: bool = False) -> dict[str, Market]:
        """Trading rules of every symbol the market data source knows."""
        if reload or not self._markets:
            self._markets = await self.source.markets()
        return dict(self._markets)

    async def _market(self, symbol: str) -> Market:
        markets = await self.load_markets()
        market = markets.get(symbol)
        if market is None:
            sample = ", ".join(sorted(markets)[:8])
            raise UnknownSymbol(
                f"{symbol!r} is not a spot market on {self.id} (symbols look like "
                f"'BTC/USDT'; e.g. {sample})"
            )
        return market

    async def fetch_ticker(self, symbol: str) -> Ticker:
        """Best bid/ask and last price."""
        await self._market(symbol)
        return await self.source.ticker(symbol)

    async def fetch_order_book(self, symbol: str, limit: int = 100) -> BookSnapshot:
        """Order book snapshot."""
        await self._market(symbol)
        return await self.source.book(symbol, limit)

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1h",
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Candle]:
        """Closed candles, oldest first."""
        await self._market(symbol)
        return await self.source.candles(symbol, timeframe, since, limit)

    # --- the replay clock -----------------------------------------------------------------

    async def advance_to(self, when: datetime) -> None:
        """Let market time pass until `when` and fill resting orders from what printed."""
        await self.source.wait_until(when)
        async with self._lock:
            await self._sync()

    async def step(self, count: int = 1) -> None:
        """Advance a replay by `count` of its timeframes (replay sources only)."""
        step = getattr(self.source, "step", None)
        if step is None:
            raise TypeError(f"{type(self.source).__name__} cannot step; use advance_to()")
        await step(count)
        async with self._lock:
            await self._sync()

    # --- matching -------------------------------------------------------------------------

    async def _sync(self) -> None:
        """Apply every trade printed since the last sync to the resting orders (lock held)."""
        for symbol in sorted(self._watched):
            for trade in await self.source.new_trades(symbol):
                self._apply_trade(trade)

    def _apply_trade(self, trade: MarketTrade) -> None:
        resting = [r for r in self._resting.values() if r.order.symbol == trade.symbol]
        if not resting:
            return
        taken = ZERO
        for side in (Side.BUY, Side.SELL):
            queue = [r for r in resting if r.order.side is side]
            sign = -1 if side is Side.BUY else 1  # best price first, then time priority
            queue.sort(key=lambda r: (sign * (r.order.price or ZERO), r.seq))
            for entry in queue:
                order = entry.order
                assert order.price is not None
                quantity = match_resting(side, order.price, order.remaining, trade, taken)
                quantity = round_down(quantity, entry.market.amount_step)
                if quantity <= 0:
                    continue
                taken += quantity
                self._fill(order.client_order_id, quantity, order.price, True, trade.timestamp)

    def _fill(
        self, cid: str, quantity: Decimal, price: Decimal, is_maker: bool, at: datetime
    ) -> Fill:
        order = self._orders[cid]
        market = self._markets[order.symbol]
        fee = fee_for(market, quantity * price, is_maker)
        self.account.settle_fill(
            cid if cid in self._resting else None,  # only resting orders hold a lock
            order.side,
            market.base,
            market.quote,
            quantity,
            price,
            fee,
        )
        fill = Fill(
            trade_id=f"paper-{self._trade_tag}-{next(self._trade_ids)}",
            client_order_id=ClientOrderId(cid),
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            fee=fee,
            fee_currency=market.quote,
            timestamp=at,
            is_maker=is_maker,
        )
        order = order.apply_fill(fill)
        self._fills.setdefault(order.symbol, []).append(fill)
        self._store(order, (fill,))
        if order.status.is_terminal:
            self._finish(cid)
        return fill

    def _finish(self, cid: str) -> None:
        self._resting.pop(cid, None)
        self.account.release(cid)

    def _store(self, order: Order, fills: tuple[Fill, ...] = ()) -> None:
        self._orders[order.client_order_id] = order
        if order.client_order_id in self._resting:
            self._resting[order.client_order_id].order = order
        for queue in self._subscribers:
            queue.put_nowait(OrderUpdate(order, fills))

    # --- liquidity we took ----------------------------------------------------------------

    def _unconsumed(self, book: BookSnapshot) -> BookSnapshot:
        """The book minus what our own orders took from it at the same market time."""
        at, taken = self._taken.get(book.symbol, (None, {}))
        if at != book.timestamp or not taken:
            return book

        def left(levels: list[Level], side: Side) -> list[Level]:
            out = []
            for price, size in levels:
                rest = size - taken.get((side, price), ZERO)
                if rest > 0:
                    out.append((price, rest))
            return out

        return replace(book, bids=left(book.bids, Side.BUY), asks=left(book.asks, Side.SELL))

    def _consume(self, book: BookSnapshot, side: Side, price: Decimal, quantity: Decimal) -> None:
        at, taken = self._taken.get(book.symbol, (None, {}))
        if at != book.timestamp:
            taken = {}
        taken[(side, price)] = taken.get((side, price), ZERO) + quantity
        self._taken[book.symbol] = (book.timestamp, taken)

    # --- orders ---------------------------------------------------------------------------

    async def _reserve(self, order: Order, market: Market, book: BookSnapshot) -> list[Level]:
        """Check and lock funds; return the taker fills the order gets on arrival."""
        opposite = book.asks if order.side is Side.BUY else book.bids
        if order.type is OrderType.MARKET:
            fills = walk_book(opposite, order.quantity)
        else:
            assert order.price is not None
            fills = limit_crosses_book(order.side, order.price, order.quantity, opposite)
            if order.time_in_force is TimeInForce.FOK and total_quantity(fills) < order.quantity:
                fills = []
        cid = order.client_order_id
        rests = order.type is OrderType.LIMIT and order.time_in_force is TimeInForce.GTC
        try:
            if rests:
                assert order.price is not None
                if order.side is Side.BUY:
                    locked = buy_lock(market, order.quantity, order.price)
                    self.account.lock(cid, market.quote, locked)
                else:
                    self.account.lock(cid, market.base, order.quantity)
            elif order.side is Side.BUY:  # market, IOC and FOK never rest: pay what fills
                cost = sum((p * q + fee_for(market, p * q, False) for p, q in fills), ZERO)
                self.account.require(market.quote, cost)
            else:
                self.account.require(market.base, order.quantity)
        except InsufficientFunds as exc:
            raise InsufficientFunds(
                f"order {cid} refused by {self.id}: {exc} — reduce the order or add funds"
            ) from None
        return fills

    async def create_order(self, request: OrderRequest) -> Order:
        """Place an order: it arrives after the latency and meets the market as it is then."""
        market = await self._market(request.symbol)
        check_request(request, self.venue, self.id)
        quantity, price = rounded(request, market)
        reference = price
        if request.type is OrderType.MARKET:
            ticker = await self.source.ticker(request.symbol)
            best = ticker.ask if request.side is Side.BUY else ticker.bid
            reference = best or ticker.last
        refuse_if_invalid(request, market, quantity, price, reference, self.id)
        if self.latency:
            await self.source.wait_until(self.source.now() + self.latency)
        async with self._lock:
            await self._sync()
            return await self._arrive(request, market, quantity, price)

    async def _arrive(
        self, request: OrderRequest, market: Market, quantity: Decimal, price: Decimal | None
    ) -> Order:
        cid = request.client_order_id
        if cid in self._resting:
            raise duplicate_id_error(cid, self.id, "Duplicate order sent.")
        now = self.source.now()
        order = Order(
            client_order_id=cid,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            quantity=quantity,
            created_at=now,
            price=price,
            time_in_force=request.time_in_force,
            exchange=self.id,
            mode=Mode.PAPER,
            exchange_order_id=ExchangeOrderId(str(next(self._order_ids))),
            reduce_only=request.reduce_only,
            updated_at=now,
        )
        book = self._unconsumed(await self.source.book(request.symbol, self.book_depth))
        fills = await self._reserve(order, market, book)
        if request.symbol not in self._watched:
            await self.source.new_trades(request.symbol)  # start the tape at arrival
            self._watched.add(request.symbol)
        order = order.transition(OrderStatus.OPEN, now)
        self._orders[cid] = order
        if order.type is OrderType.LIMIT and order.time_in_force is TimeInForce.GTC:
            self._resting[cid] = _Resting(order, market, next(self._seq))
        if not fills:
            self._store(order)
        for fill_price, fill_quantity in fills:
            self._fill(cid, fill_quantity, fill_price, False, now)
            self._consume(book, order.side.opposite, fill_price, fill_quantity)
        order = self._orders[cid]
        if fills and cid in self._resting and order.side is Side.BUY and order.price is not None:
            # like Binance: what stays locked is what the rest of the order can still need
            self.account.release(cid)
            self.account.lock(cid, market.quote, buy_lock(market, order.remaining, order.price))
        if not order.status.is_terminal and cid not in self._resting:
            order = order.transition(OrderStatus.EXPIRED, now, "no more liquidity (IOC)")
            self._store(order)
            self._finish(cid)
        return order

    async def cancel_order(self, client_order_id: ClientOrderId, symbol: str) -> Order:
        """Cancel an open order (after the latency); returns its final state."""
        await self._market(symbol)
        if self.latency:
            await self.source.wait_until(self.source.now() + self.latency)
        async with self._lock:
            await self._sync()
            order = self._known(client_order_id, symbol)
            if order.status.is_terminal:
                return order
            order = order.transition(OrderStatus.CANCELLED, self.source.now(), "cancelled")
            self._store(order)
            self._finish(client_order_id)
            return order

    def _known(self, cid: str, symbol: str) -> Order:
        order = self._orders.get(cid)
        if order is None or order.symbol != symbol:
            raise OrderNotFound(f"{self.id} has no order with client order id {cid} on {symbol}")
        return order

    async def fetch_order(self, client_order_id: ClientOrderId, symbol: str) -> Order:
        """Current state of one order, looked up by client order id."""
        await self._market(symbol)
        async with self._lock:
            await self._sync()
            return self._known(client_order_id, symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders still resting on the book, oldest first."""
        if symbol is not None:
            await self._market(symbol)
        async with self._lock:
            await self._sync()
            entries = sorted(self._resting.values(), key=lambda r: r.seq)
            return [r.order for r in entries if symbol is None or r.order.symbol == symbol]

    async def fetch_my_trades(
        self, symbol: str, since: datetime | None = None, limit: int | None = None
    ) -> list[Fill]:
        """Own executions of `symbol` since `since`, oldest first."""
        await self._market(symbol)
        async with self._lock:
            await self._sync()
            fills = [
                f for f in self._fills.get(symbol, []) if since is None or f.timestamp >= since
            ]
        if limit is not None:
            fills = fills[:limit] if since is not None else fills[-limit:]
        return fills

    async def fetch_order_fills(self, client_order_id: ClientOrderId, symbol: str) -> list[Fill]:
        """Own executions of one order, oldest first."""
        trades = await self.fetch_my_trades(symbol)
        return [f for f in trades if f.client_order_id == client_order_id]

    async def fetch_balances(self) -> dict[str, Balance]:
        """Balances by asset (free and locked); assets with nothing are left out."""
        async with self._lock:
            await self._sync()
            balances = self.account.balances(self.id)
        return {a: b for a, b in balances.items() if b.total != 0}

    # --- streams --------------------------------------------------------------------------

    async def watch_trades(self, symbol: str) -> AsyncIterator[list[MarketTrade]]:
        """Public trades as they print (a replay prints when it advances)."""
        await self._market(symbol)
        consumer = f"watch-{next(self._consumers)}"
        await self.source.new_trades(symbol, consumer)
        while True:
            trades = await self.source.new_trades(symbol, consumer)
            if trades:
                yield trades
            else:
                await self.source.wait_for_data(self.poll_seconds)

    async def watch_order_book(self, symbol: str) -> AsyncIterator[BookSnapshot]:
        """The book now, then again whenever market data moved."""
        await self._market(symbol)
        while True:
            yield await self.source.book(symbol, self.book_depth)
            await self.source.wait_for_data(self.poll_seconds)

    async def watch_ohlcv(self, symbol: str, timeframe: str = "1m") -> AsyncIterator[list[Candle]]:
        """Candles whenever a new one closed."""
        await self._market(symbol)
        last: datetime | None = None
        while True:
            candles = await self.source.candles(symbol, timeframe, None, 2)
            if candles and candles[-1].open_time != last:
                last = candles[-1].open_time
                yield candles
            else:
                await self.source.wait_for_data(self.poll_seconds)

    async def watch_orders(self, symbol: str | None = None) -> AsyncIterator[list[OrderUpdate]]:
        """Own order updates: acceptance, every fill, cancels and expiries."""
        queue: asyncio.Queue[OrderUpdate] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                if queue.empty():
                    await self.source.wait_for_data(self.poll_seconds)
                    async with self._lock:
                        await self._sync()
                updates = []
                while not queue.empty():
                    update = queue.get_nowait()
                    if symbol is None or update.order.symbol == symbol:
                        updates.append(update)
                if updates:
                    yield updates
        finally:
            self._subscribers.remove(queue)

    async def fetch_api_restrictions(self) -> ApiKeyRestrictions:
        """Paper trading uses no API key: NoApiKey says so (the key check is for live mode)."""
        raise NoApiKey(
            f"paper exchange {self.id!r} trades without an API key: there are no key "
            "permissions to check (the key check applies to live mode)"
        )

    async def close(self) -> None:
        """Stop market data feeds this exchange owns."""
        closer = getattr(self.source, "close", None)
        if self._owns_source and closer is not None:
            await closer()
