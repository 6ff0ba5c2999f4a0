"""A paper engine in its own process, trading on the Binance emulator, for the dashboard tests.

Run as ``python dashboard_engine.py STORE_URL EMULATOR_URL``; the emulator's API key is read
from the store's secrets (key "main", TRADELIB_MASTER_KEY). Until `tradelib run` (issue 11)
lands, this stands in for the engine service: each cycle it moves the emulator's replay clock
one hour, runs `Engine.run_once()` on that clock, and publishes a heartbeat (wall clock) with
the account valuation the dashboard reads. The strategy enters every symbol on its first
closed candle (stops and targets close the positions, then it enters again), and once a
position is open the process rests two limit orders far from the market, so an emergency stop
has something to cancel on the emulator.

SIGUSR1 makes it "hang" after the current cycle: its event loop blocks (no beats, no cycles),
as a stuck strategy would; only SIGKILL ends it then. SIGTERM stops it cleanly otherwise.
Progress goes to stdout, one line per event ("READY", "CYCLE n ...", "POSITION sym",
"RESTING n", "WATCHING" once the warm-up is over, "FROZEN").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import aiohttp
import pandas as pd

from tradelib.config import ExchangeSettings, RiskSettings, Settings
from tradelib.domain import Mode, OrderType, Side, StrategyId
from tradelib.engine import Engine
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.operations.valuation import HEARTBEAT_KEY, AccountValuation
from tradelib.orders import ExecutionRequest
from tradelib.position.ledger import split_symbol
from tradelib.secrets import SecretBox, load_credentials, master_key_from_env
from tradelib.store import EngineState, HeartbeatRecord, open_store
from tradelib.strategy.base import SIGNAL_FIELDS, Strategy, empty_signal_frame

SYMBOLS = ["ARB/USDT", "OP/USDT"]
BAR = timedelta(hours=1)
WARMUP = 36  # one-hour cycles at full speed first: a day and a half of history to show
WATCH_STEP = timedelta(minutes=5)  # then the replay moves 5 minutes a cycle ...
PACE_S = 1.5  # ... every 1.5 s: slow enough to watch, fast enough to test
BEAT_S = 0.5
# Wider exits than the seed's than 2 % / 5 %: positions stay open while a person watches.
RISK = RiskSettings(stop_loss_pct=Decimal(6), take_profit_pct=Decimal(12),
                    max_consecutive_losses=10)  # fmt: skip


class EnterEverySymbol(Strategy):
    """Long every symbol whenever flat (the engine skips symbols it already holds)."""

    name: ClassVar[str] = "dashboard_demo"
    timeframe: ClassVar[str] = "1h"

    def signals(
        self, candles: Mapping[str, pd.DataFrame], calendar: Any, params: Any
    ) -> pd.DataFrame:
        """enter_long on every closed candle of every symbol."""
        frames = [f for f in candles.values() if not f.empty]
        index = frames[0].index if frames else pd.DatetimeIndex([], tz="UTC")
        table = empty_signal_frame(pd.DatetimeIndex(index), list(candles))
        for symbol in candles:
            table[(symbol, SIGNAL_FIELDS[0])] = True
        return table


async def _admin(session: aiohttp.ClientSession, base: str, action: str, **body: Any) -> Any:
    async with session.post(f"{base}/_emulator/{action}", json=body or None) as answer:
        answer.raise_for_status()
        return await answer.json()


async def main(store_url: str, base_url: str) -> int:
    """Trade until SIGTERM (or hang on SIGUSR1)."""
    store = open_store(store_url)
    creds = load_credentials(store, SecretBox(master_key_from_env()), "binance", "main")
    exchange = CcxtExchange(
        "binance", api_key=creds.api_key, api_secret=creds.api_secret, base_url=base_url,
        rate_limit=False,
    )  # fmt: skip
    settings = Settings(
        mode=Mode.PAPER, store_url=store_url, exchange=ExchangeSettings(base_url=base_url),
        risk=RISK,
    )  # fmt: skip
    session = aiohttp.ClientSession()
    clock = [datetime.fromisoformat((await _admin(session, base_url, "state"))["now"])]
    engine = Engine(
        settings, store, exchange, EnterEverySymbol(None, None), symbols=list(SYMBOLS),
        clock=lambda: clock[0], history=48,
    )  # fmt: skip
    stop, freeze = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, freeze.set)
    started = datetime.now(UTC)
    state: dict[str, Any] = {"cycles": 0, "last": None, "valuation": None}

    def beat(status: EngineState) -> None:
        # The keys `tradelib run` writes (issue 11), plus the valuation the dashboard charts.
        detail: dict[str, Any] = {
            "tick_seconds": BEAT_S, "stale_after_seconds": 10.0,
            "market_time": clock[0].isoformat(),
        }  # fmt: skip
        if state["valuation"] is not None:
            detail[HEARTBEAT_KEY] = state["valuation"].to_detail()
        store.beat(HeartbeatRecord(
            mode=Mode.PAPER, exchange="binance", strategy=engine.strategy.strategy_id,
            state=status, pid=os.getpid(), host=socket.gethostname(), started_at=started,
            beat_at=datetime.now(UTC), last_cycle_at=state["last"], cycles=state["cycles"],
            detail=detail,
        ))  # fmt: skip

    async def beating() -> None:
        while not stop.is_set():
            beat(EngineState.RUNNING)
            await asyncio.sleep(BEAT_S)

    beat(EngineState.STARTING)
    beater = asyncio.create_task(beating())
    rested = False
    print("READY", flush=True)
    try:
        while not stop.is_set():
            warming = state["cycles"] < WARMUP
            step = BAR if warming else WATCH_STEP
            moved = await _admin(session, base_url, "advance", to=(clock[0] + step).isoformat())
            clock[0] = datetime.fromisoformat(moved["now"])
            report = await engine.run_once()
            state["valuation"] = await _valuation(engine, clock[0])
            state["cycles"] += 1
            state["last"] = datetime.now(UTC)
            held = engine.positions.positions()
            print(f"CYCLE {state['cycles']} {clock[0].isoformat()} orders={report.orders} "
                  f"halted={report.halted}", flush=True)  # fmt: skip
            for position in held:
                print(f"POSITION {position.symbol}", flush=True)
            if held and not rested:
                rested = await _rest_orders(engine, sorted({p.symbol for p in held}))
            if state["cycles"] == WARMUP:
                print("WATCHING", flush=True)
            if freeze.is_set():
                print("FROZEN", flush=True)
                time.sleep(3600)  # a stuck strategy: the loop is blocked, no beat, no cycle
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0 if warming else PACE_S)
    finally:
        beater.cancel()
        beat(EngineState.STOPPED)
        await session.close()
        await exchange.close()
        store.close()
    return 0


async def _valuation(engine: Engine, now: datetime) -> AccountValuation:
    """What the engine service publishes each cycle (the snapshot it sized orders with)."""
    snapshot = await engine._snapshot(now)
    balances = await engine.exchange.fetch_balances()
    marks = {s: Decimal(repr(engine.candles.last_close(s))) for s in engine.symbols
             if engine.candles.last_close(s) is not None}  # fmt: skip
    prices = {split_symbol(s)[0]: p for s, p in marks.items()}
    return AccountValuation.from_snapshot(snapshot, list(balances.values()), marks, prices)


async def _rest_orders(engine: Engine, symbols: list[str]) -> bool:
    """A small bid at half the market per symbol: it rests on the emulator's book.

    Bids lock quote currency only, so the positions' stops and targets can still sell.
    """
    for symbol in symbols:
        last = Decimal(repr(engine.candles.last_close(symbol)))
        price = (last / 2).quantize(Decimal("0.0001"))
        request = ExecutionRequest(
            StrategyId(engine.strategy.strategy_id), symbol, Side.BUY,
            (Decimal(60) / price).quantize(Decimal(1)), f"dashboard-rest-bid-{symbol}",
            type=OrderType.LIMIT, price=price, reason="resting bid at half the market",
        )  # fmt: skip
        order = await engine.executor.submit(request)
        print(f"RESTING {order.client_order_id} {order.status}", flush=True)
    return True


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
