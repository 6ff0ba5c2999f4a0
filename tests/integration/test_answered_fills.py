"""Fills carried by a full create answer equal the ones looked up the long way."""

from __future__ import annotations

from decimal import Decimal

from emulator_fixtures import emulator  # noqa: F401  (pytest fixture)

from tradelib.domain import ClientOrderId, OrderType, Side
from tradelib.exchange.base import OrderRequest
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.testing.binance_emulator import BinanceEmulator


async def test_answered_fills_equal_looked_up_fills(emulator: BinanceEmulator) -> None:  # noqa: F811
    fast = CcxtExchange(
        "binance", api_key=emulator.api_key, api_secret=emulator.api_secret,
        base_url=emulator.base_url,
    )  # fmt: skip
    slow = CcxtExchange(
        "binance", api_key=emulator.api_key, api_secret=emulator.api_secret,
        base_url=emulator.base_url,
    )  # fmt: skip
    try:
        cid = ClientOrderId("answered-1")
        order = await fast.create_order(
            OrderRequest(cid, "ARB/USDT", Side.BUY, OrderType.MARKET, Decimal(300))
        )
        answered = await fast.fetch_order_fills(cid, "ARB/USDT")
        looked_up = await slow.fetch_order_fills(cid, "ARB/USDT")
    finally:
        await fast.close()
        await slow.close()
    assert sum(f.quantity for f in answered) == order.filled_quantity == Decimal(300)
    key = [(f.trade_id, f.quantity, f.price, f.fee, f.fee_currency, f.side) for f in answered]
    assert key == [
        (f.trade_id, f.quantity, f.price, f.fee, f.fee_currency, f.side) for f in looked_up
    ]
    assert {t.trade_id for t in emulator.trades()} == {int(f.trade_id) for f in answered}
