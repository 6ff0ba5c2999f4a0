"""A local Binance spot API (REST + WebSocket) over recorded market data, with fault injection.

In a test (same event loop)::

    async with BinanceEmulator(balances={"USDT": Decimal(10_000)}) as emu:
        client = ccxt.async_support.binance(ccxt_config_for(emu.base_url, emu.api_key,
                                                            emu.api_secret))
        ...
        emu.advance()            # one replay step: prints trades, fills resting limits
        emu.faults.drop_next()   # the next POST /api/v3/order is executed but never answered

or the `emulator`, `binance`, `binance_pro` fixtures in tests/integration/emulator_fixtures.py.
Faults (`emu.faults`): set_latency(ms), fail_next(n, status, path, method) for 5xx,
drop_next(n, path, method) after the request took effect, stall_next(n, seconds, ...) to time
clients out, limit_next(n, 429|418, retry_after), partial_fill(fraction, orders); real 429/418
come from the weight limit (`BinanceEmulator(weight_limit=...)`); `await emu.disconnect_streams()`
closes every WebSocket. Another process drives the same through POST /_emulator/<action>
(faults, advance, balance, book, disconnect, reset_limits, key_permissions; GET orders, trades,
balances, state). The API key's permissions (GET /sapi/v1/account/apiRestrictions) start as a
careful key's (IP restricted, spot trading, no withdrawals): `emu.set_key_permissions(...)`.
All control calls must run on the emulator's event loop; the emulator binds 127.0.0.1 only and the
admin endpoints have no authentication.
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
