"""Exchanges: the protocol, the ccxt connector, the paper exchange and the matching rules."""

from tradelib.exchange.base import BookSnapshot, Exchange, OrderRequest, OrderUpdate, Ticker

__all__ = ["BookSnapshot", "Exchange", "OrderRequest", "OrderUpdate", "Ticker"]
