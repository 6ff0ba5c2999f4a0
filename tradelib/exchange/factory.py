"""`open_exchange`: the one place that picks the venue implementation from the settings."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradelib.config import Settings
from tradelib.domain import Mode, split_symbol
from tradelib.errors import ConfigError
from tradelib.exchange.base import Exchange
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.paper import MarketDataSource, PaperExchange, ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.exchange.venues import VENUES

if TYPE_CHECKING:
    from tradelib.store import Store


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


def paper_account_balances(settings: Settings, store: Store) -> dict[str, Decimal]:
    """The paper account of `settings.exchange.id` as the store last saw it.

    A paper venue lives in one process; the store is what outlives it. A restarted paper
    engine (or a process enforcing the kill switch) continues from the balances the store
    holds — the configured `paper_balances` only when the account never traded — with at
    least enough of each open position's base asset to close it.
    """
    exchange = settings.exchange.id
    balances = {
        asset: b.total for asset, b in store.list_balances(Mode.PAPER, exchange=exchange).items()
    } or dict(settings.exchange.paper_balances)
    for position in store.list_positions(Mode.PAPER, exchange=exchange):
        base = split_symbol(position.symbol)[0]
        if position.quantity > balances.get(base, Decimal(0)):
            balances[base] = position.quantity
    return balances


def open_paper_exchange(
    settings: Settings, store: Store, market_data: MarketDataSource | None = None
) -> Exchange:
    """A paper venue continuing the store's paper account (see `paper_account_balances`)."""
    seeded = settings.exchange.model_copy(
        update={"paper_balances": paper_account_balances(settings, store)}
    )
    paper = settings.model_copy(update={"exchange": seeded, "mode": Mode.PAPER})
    return open_exchange(paper, market_data=market_data)


def public_exchange(settings: Settings) -> CcxtExchange:
    """A keyless connection to `settings.exchange` for public market data (paper, reports)."""
    return CcxtExchange(
        settings.exchange.id,
        base_url=settings.exchange.base_url,
        timeout_ms=settings.exchange.timeout_ms,
    )
