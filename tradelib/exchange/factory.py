"""`open_exchange`: the one place that picks the venue implementation from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tradelib.config import Settings
from tradelib.domain import Mode
from tradelib.errors import ConfigError
from tradelib.exchange.base import Exchange
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.paper import MarketDataSource, PaperExchange, ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.exchange.venues import VENUES


def _paper(settings: Settings, market_data: MarketDataSource | None, **_: Any) -> Exchange:
    owns = market_data is None
    if market_data is None:
        market_data = ReplayMarketData(ReplayMarket.from_data_dir(settings.data_dir))
    return PaperExchange(
        market_data,
        balances=dict(settings.exchange.paper_balances),
        latency_ms=settings.exchange.paper_latency_ms,
        exchange_id=settings.exchange.id,
        owns_source=owns,
    )


def _live(
    settings: Settings,
    market_data: MarketDataSource | None,
    api_key: str | None = None,
    api_secret: str | None = None,
) -> Exchange:
    if settings.exchange.id not in VENUES:
        raise ConfigError(
            f"exchange.id = {settings.exchange.id!r} has no live connector yet; "
            f"use one of {sorted(VENUES)}"
        )
    if not api_key or not api_secret:
        raise ConfigError(
            "live mode needs an API key and secret: load them from the secrets store and pass "
            "them to open_exchange(..., api_key=..., api_secret=...)"
        )
    return CcxtExchange(
        settings.exchange.id,
        api_key=api_key,
        api_secret=api_secret,
        base_url=settings.exchange.base_url,
        timeout_ms=settings.exchange.timeout_ms,
    )


_BY_MODE: dict[Mode, Callable[..., Exchange]] = {Mode.PAPER: _paper, Mode.LIVE: _live}


def open_exchange(
    settings: Settings,
    *,
    market_data: MarketDataSource | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
) -> Exchange:
    """The venue for `settings.mode`: PaperExchange (replay of data/ unless `market_data` is
    given) or CcxtExchange for `settings.exchange.id`, pointed at `exchange.base_url` if set.

    Keys are passed in by the caller (from the secrets store); they are never read from settings.
    """
    return _BY_MODE[settings.mode](settings, market_data, api_key=api_key, api_secret=api_secret)
