"""A local Binance spot API (REST + WebSocket) over recorded market data, with fault injection.

Start it in a test with ``async with BinanceEmulator(balances={"USDT": Decimal(10_000)}) as emu``
(or the ``emulator`` fixture in tests/integration/emulator_fixtures.py), point plain ccxt at it
with ``ccxt_config_for(emu.base_url, emu.api_key, emu.api_secret)``, drive the market with
``emu.advance()`` and inject faults through ``emu.faults``.
"""

from tradelib.testing.binance_emulator.client import ccxt_config_for, point_ccxt_at
from tradelib.testing.binance_emulator.faults import Faults
from tradelib.testing.binance_emulator.server import BinanceEmulator, main
from tradelib.testing.binance_emulator.wire import VenueFill, VenueOrder

__all__ = [
    "BinanceEmulator",
    "Faults",
    "VenueFill",
    "VenueOrder",
    "ccxt_config_for",
    "main",
    "point_ccxt_at",
]
