"""The venue a long-running engine trades on, by mode.

Paper: a `PaperExchange` filled against the exchange's live public data (REST book and
tickers, the trade stream) through `ExchangeMarketData`, continuing the store's paper account
(`paper_account_balances`): a restarted service keeps trading the same paper money.
Live: the `CcxtExchange` of `settings.exchange.id` with the key pair stored encrypted under
the label "main" (see `tradelib.service.live` for what has to pass first).

In both modes `market` is a keyless-or-keyed `CcxtExchange` whose streams feed the candle
streamer; in live mode it is the trading connection itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tradelib.config import Settings
from tradelib.domain import Mode
from tradelib.exchange.base import Exchange
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.factory import open_exchange, open_paper_exchange, public_exchange
from tradelib.exchange.paper_data import ExchangeMarketData
from tradelib.secrets import Credentials
from tradelib.store import Store


@dataclass
class Venue:
    """What the engine trades on (`exchange`) and where its market data comes from."""

    mode: Mode
    exchange: Exchange
    market: CcxtExchange
    source: ExchangeMarketData | None = None

    async def close(self) -> None:
        """Close the trading connection, the paper data feeds and the data connection."""
        with contextlib.suppress(Exception):
            await self.exchange.close()
        if self.source is not None:
            with contextlib.suppress(Exception):
                await self.source.close()
        if self.market is not self.exchange:
            with contextlib.suppress(Exception):
                await self.market.close()


def open_paper_venue(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
) -> Venue:
    """Paper trading on live public data (at the market's `clock`), continuing the store's
    paper account."""
    market = public_exchange(settings)
    source = ExchangeMarketData(market, clock=clock)
    paper = open_paper_exchange(settings, store, market_data=source)
    return Venue(Mode.PAPER, paper, market, source)


def open_live_venue(settings: Settings, credentials: Credentials) -> Venue:
    """The live connection of `settings.exchange.id` with `credentials`."""
    live = settings.model_copy(update={"mode": Mode.LIVE})
    exchange = open_exchange(
        live, api_key=credentials.api_key, api_secret=credentials.api_secret
    )
    assert isinstance(exchange, CcxtExchange)
    return Venue(Mode.LIVE, exchange, exchange)
