"""exchangeInfo as Binance sends it, built from tradelib's market rules."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradelib.domain import Market
from tradelib.testing.binance_emulator.wire import symbol_id

# Binance's published spot limits (exchangeInfo.rateLimits).
RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def _plain(value: Decimal) -> str:
    return f"{value:.8f}"


def symbol_info(market: Market) -> dict[str, Any]:
    """One `symbols` entry with PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE and NOTIONAL."""
    max_qty = market.max_amount if market.max_amount is not None else Decimal(9_000_000)
    return {
        "symbol": symbol_id(market.symbol),
        "status": "TRADING" if market.active else "BREAK",
        "baseAsset": market.base,
        "baseAssetPrecision": 8,
        "quoteAsset": market.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _plain(market.price_tick),
                "maxPrice": _plain(Decimal(1_000_000)),
                "tickSize": _plain(market.price_tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _plain(market.min_amount or market.amount_step),
                "maxQty": _plain(max_qty),
                "stepSize": _plain(market.amount_step),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": _plain(Decimal(0)),
                "maxQty": _plain(max_qty),
                "stepSize": _plain(Decimal(0)),
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _plain(market.min_notional),
                "applyMinToMarket": True,
                "maxNotional": _plain(Decimal(9_000_000)),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def exchange_info(
    markets: Mapping[str, Market], server_ms: int, weight_limit: int = 6000
) -> dict[str, Any]:
    """The whole /api/v3/exchangeInfo answer."""
    limits = [dict(r) for r in RATE_LIMITS]
    limits[0]["limit"] = weight_limit
    return {
        "timezone": "UTC",
        "serverTime": server_ms,
        "rateLimits": limits,
        "exchangeFilters": [],
        "symbols": [symbol_info(m) for m in markets.values()],
    }


def by_symbol_id(markets: Mapping[str, Market]) -> dict[str, Market]:
    """Markets keyed by Binance's id ('ARBUSDT')."""
    return {symbol_id(m.symbol): m for m in markets.values()}
