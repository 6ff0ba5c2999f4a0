"""Fixtures that run the Binance emulator in-process on a free port.

Use from a test module under tests/integration/::

    from emulator_fixtures import binance, emulator  # noqa: F401  (pytest fixtures)

    async def test_something(emulator, binance):
        await binance.create_order("ARB/USDT", "market", "buy", 100)
        emulator.advance()

`emulator` starts a fresh emulator (10,000 USDT, replay clock at EMULATOR_START) and stops it
after the test; `binance` / `binance_pro` are plain ccxt clients pointed at it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from tradelib.testing.binance_emulator import BinanceEmulator, ccxt_config_for

EMULATOR_START = datetime(2024, 8, 1, tzinfo=UTC)
EMULATOR_BALANCES = {"USDT": Decimal(10_000)}


@asynccontextmanager
async def running_emulator(**kwargs: Any) -> AsyncIterator[BinanceEmulator]:
    """Start an emulator on 127.0.0.1 (free port), yield it, stop it."""
    kwargs.setdefault("balances", dict(EMULATOR_BALANCES))
    kwargs.setdefault("start", EMULATOR_START)
    emulator = BinanceEmulator(**kwargs)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@asynccontextmanager
async def ccxt_client(
    emulator: BinanceEmulator, pro: bool = False, **overrides: Any
) -> AsyncIterator[Any]:
    """A plain ccxt (or ccxt.pro) binance client pointed at `emulator`, closed afterwards."""
    config = ccxt_config_for(emulator.base_url, emulator.api_key, emulator.api_secret)
    # ccxt's own throttle would sleep cost x 50 ms per call; the emulator's limits are tested
    # on their own, so tests run unthrottled.
    config["enableRateLimit"] = False
    config.update(overrides)
    client = (ccxt_pro.binance if pro else ccxt_async.binance)(config)
    try:
        yield client
    finally:
        await client.close()


async def until(condition: Callable[[], bool], what: str, limit_s: float = 10.0) -> None:
    """Wait for `condition` (a safety net against hangs, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def emulator() -> AsyncIterator[BinanceEmulator]:
    """A running emulator with 10,000 USDT at 2024-08-01 00:00 UTC."""
    async with running_emulator() as emu:
        yield emu


@pytest.fixture
async def binance(emulator: BinanceEmulator) -> AsyncIterator[Any]:
    """ccxt.async_support.binance pointed at the emulator, markets loaded."""
    async with ccxt_client(emulator) as client:
        await client.load_markets()
        yield client


@pytest.fixture
async def binance_pro(emulator: BinanceEmulator) -> AsyncIterator[Any]:
    """ccxt.pro.binance pointed at the emulator, markets loaded."""
    async with ccxt_client(emulator, pro=True) as client:
        await client.load_markets()
        yield client
