"""Exits go through risk: a book that would fill an exit outside the slippage band cuts or stops it.

The order path the engine uses, on the paper exchange and on real ccxt against the Binance
emulator, both replaying the same recorded ARB/USDT market: the risk manager checks the exit
against the book side it would take (`fetch_order_book`), the request is the one its decision
allows (`ExecutionRequest.from_decision`: a reduce-only limit IOC at the tick-rounded band
edge), and the guarded executor sends it. What is checked is the venue's own record of the
order and its fills, and the position left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import EMULATOR_START, running_emulator

from tradelib.config import Settings, repo_data_dir
from tradelib.control import RiskControl
from tradelib.domain import ZERO, Mode, OrderStatus, OrderType, Side, SignalKind, StrategyId
from tradelib.errors import RiskRejected
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.paper import PaperExchange, ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.orders import ExecutionRequest, OrderExecutor
from tradelib.position import ExitRules, PortfolioSnapshot, build_snapshot, roll_day
from tradelib.position.manager import PositionManager
from tradelib.risk import (
    BreakerState,
    KillSwitchState,
    OrderIntent,
    ReferencePrice,
    RejectCause,
    RiskAction,
    RiskDecision,
    RiskManager,
    average_price,
    price_band,
)
from tradelib.store import Store, open_store

SYMBOL = "ARB/USDT"
STRATEGY = StrategyId("band")
USDT = Decimal(10_000_000)
SETTINGS = Settings()
BAND = SETTINGS.risk.max_slippage_pct


@dataclass
class Desk:
    """A venue with the engine's order path on top of it."""

    kind: str
    exchange: Any  # PaperExchange | CcxtExchange
    store: Store
    positions: PositionManager
    executor: OrderExecutor
    replay: ReplayMarket
    emulator: Any = None

    def now(self) -> datetime:
        """The replayed market's time (the venue's clock, not the wall clock)."""
        return self.replay.now

    def venue_orders(self) -> int:
        """How many orders the venue itself has seen."""
        if self.emulator is not None:
            return len(self.emulator.orders(SYMBOL))
        return len(self.exchange._orders)


@pytest.fixture(params=["paper", "emulator"])
async def desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    store = open_store(f"duckdb:///{tmp_path / 'band.duckdb'}")
    store.ensure_strategy(STRATEGY, {})

    def wire(exchange: Any, replay: ReplayMarket, emulator: Any = None) -> Desk:
        clock = lambda: replay.now  # noqa: E731  (replay time, not wall time)
        control = RiskControl(store, SETTINGS, mode=Mode.PAPER, exchange_id="binance", clock=clock)
        positions = PositionManager(
            store, mode=Mode.PAPER, exchange_id="binance", exit_rules=ExitRules(), clock=clock
        )
        executor = OrderExecutor(
            store, exchange, exchange_id="binance", mode=Mode.PAPER, clock=clock,
            on_fill=positions.on_fill, guard=control.guard,
        )  # fmt: skip
        return Desk(request.param, exchange, store, positions, executor, replay, emulator)

    try:
        if request.param == "paper":
            replay = ReplayMarket.from_data_dir(
                repo_data_dir(), start=EMULATOR_START, symbols=[SYMBOL]
            )
            paper = PaperExchange(ReplayMarketData(replay), balances={"USDT": USDT})
            yield wire(paper, replay)
            await paper.close()
        else:
            async with running_emulator(balances={"USDT": USDT}, symbols=[SYMBOL]) as emu:
                ccxt = CcxtExchange(
                    "binance", api_key=emu.api_key, api_secret=emu.api_secret,
                    base_url=emu.base_url, rate_limit=False,
                )  # fmt: skip
                try:
                    yield wire(ccxt, emu.replay, emu)
                finally:
                    await ccxt.close()
    finally:
        store.close()


async def _snapshot(desk: Desk, mark: Decimal) -> PortfolioSnapshot:
    now = desk.now()
    balances = list((await desk.exchange.fetch_balances()).values())
    return build_snapshot(
        desk.positions.positions(), balances, {SYMBOL: mark}, {"ARB": mark},
        roll_day(None, now, ZERO, ZERO), ZERO, now,
    )  # fmt: skip


async def _buy_through_the_book(desk: Desk) -> Decimal:
    """A manual market buy of most of the ask side: a position bigger than the band's depth."""
    book = await desk.exchange.fetch_order_book(SYMBOL)
    quantity = sum((size for _, size in book.asks), ZERO) * Decimal("0.9")
    quantity = quantity.quantize(Decimal("0.1"))
    order = await desk.executor.submit(
        ExecutionRequest(STRATEGY, SYMBOL, Side.BUY, quantity, "big-entry", type=OrderType.MARKET)
    )
    assert order.status is OrderStatus.FILLED, order
    [held] = desk.positions.positions()
    assert held.quantity == quantity
    return quantity


async def _exit_decision(desk: Desk, reference: Decimal) -> tuple[RiskDecision, list[Any]]:
    """The risk manager's verdict on closing the whole position, against the live bids."""
    [held] = desk.positions.positions()
    market = (await desk.exchange.load_markets())[SYMBOL]
    bids = (await desk.exchange.fetch_order_book(SYMBOL)).bids
    intent = OrderIntent(
        STRATEGY, SYMBOL, Side.SELL, SignalKind.EXIT, quantity=held.quantity,
        reference_price=reference, exchange="binance", reason="stop loss",
    )  # fmt: skip
    decision = RiskManager(SETTINGS.risk, Mode.PAPER, SETTINGS.live_capital_usd).check(
        intent, await _snapshot(desk, reference), market, desk.now(),
        ReferencePrice(reference, desk.now()), BreakerState(), KillSwitchState(), book=bids,
    )  # fmt: skip
    return decision, bids


async def test_an_exit_the_book_would_fill_outside_the_band_is_reduced(desk: Desk) -> None:
    held = await _buy_through_the_book(desk)
    bids = (await desk.exchange.fetch_order_book(SYMBOL)).bids
    reference = bids[0][0]  # a fresh price: the touch
    band = price_band(Side.SELL, reference, BAND, Decimal("0.0001"))
    expected = average_price(bids, held)
    assert expected is None or expected < band, "the whole exit would fill outside the band"

    decision, _ = await _exit_decision(desk, reference)
    assert decision.action is RiskAction.RESIZE and ZERO < decision.quantity < held
    assert decision.limit_price == band
    assert any("reduced from" in r for r in decision.reasons), decision.reasons

    order = await desk.executor.submit(ExecutionRequest.from_decision(decision, "exit-1"))
    assert (order.type, order.time_in_force, order.price) == (OrderType.LIMIT, "IOC", band)
    assert order.reduce_only and order.quantity == decision.quantity
    fills = await desk.exchange.fetch_order_fills(order.client_order_id, SYMBOL)
    assert fills, "the part inside the band trades"
    assert all(f.price >= band for f in fills), [f.price for f in fills]  # nothing outside
    sold = sum((f.quantity for f in fills), ZERO)
    assert sold <= decision.quantity
    # The rest stays a managed position: in the ledger, in the store, on the venue.
    [rest] = desk.positions.positions()
    assert rest.quantity == held - sold > 0
    [stored] = desk.store.list_positions(Mode.PAPER)
    assert stored.quantity == rest.quantity and stored.stop_loss is not None
    assert (await desk.exchange.fetch_balances())["ARB"].total == rest.quantity


async def test_an_exit_with_no_fill_inside_the_band_is_refused_and_nothing_is_sent(
    desk: Desk,
) -> None:
    held = await _buy_through_the_book(desk)
    sent = desk.venue_orders()
    # The exit was decided on a price the book has left behind (a close before a drop): every
    # bid is more than the band below it.
    best_bid = (await desk.exchange.fetch_order_book(SYMBOL)).bids[0][0]
    reference = (best_bid * (1 + 2 * BAND / 100)).quantize(Decimal("0.0001"))
    decision, _ = await _exit_decision(desk, reference)
    assert not decision.approved and decision.cause is RejectCause.SLIPPAGE
    assert "no quantity fills within" in " ".join(decision.reasons)
    assert "stays open and managed" in decision.reasons[-1]
    with pytest.raises(RiskRejected, match="refused"):
        ExecutionRequest.from_decision(decision, "exit-refused")
    assert desk.venue_orders() == sent, "a refused exit reaches no exchange"
    assert desk.store.list_orders(statuses=[OrderStatus.PENDING]) == []
    [still] = desk.positions.positions()
    assert still.quantity == held
    # A fresh price lets the same position leave (within the band) on the next try.
    fresh, _ = await _exit_decision(desk, best_bid)
    assert fresh.approved and fresh.limit_price is not None
