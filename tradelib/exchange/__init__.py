"""Exchanges: the protocol, the ccxt connector, the paper exchange and the matching rules."""

from tradelib.exchange.base import BookSnapshot, Exchange, OrderRequest, OrderUpdate, Ticker

__all__ = ["BookSnapshot", "Exchange", "OrderRequest", "OrderUpdate", "Ticker"]

# The connectors pull in ccxt (slow to import): load them on first use, not with the package.
_LAZY = {
    "CcxtExchange": "tradelib.exchange.ccxt_exchange",
    "PaperExchange": "tradelib.exchange.paper",
    "MarketDataSource": "tradelib.exchange.paper",
    "ReplayMarketData": "tradelib.exchange.paper_data",
    "ExchangeMarketData": "tradelib.exchange.paper_data",
    "open_exchange": "tradelib.exchange.factory",
}
__all__ += list(_LAZY)


def __getattr__(name: str) -> object:
    """Import CcxtExchange, PaperExchange, open_exchange … when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tradelib.exchange' has no attribute {name!r}")
