"""Real-time market data: candle aggregation, order books, streaming and candle history."""

from tradelib.marketdata.candles import (
    AggregatorStats,
    CandleAggregator,
    CandleGap,
    aggregate_trades,
)
from tradelib.marketdata.orderbook import (
    BookOutOfSync,
    DepthDiff,
    DepthWithin,
    FillEstimate,
    OrderBook,
    SyncMode,
    parse_binance_depth,
)
from tradelib.marketdata.streamer import (
    BookTop,
    CandleClosed,
    MarketDataStreamer,
    MarketEvent,
    StalenessChanged,
    StreamerStats,
    StreamReconnecting,
    TradesReceived,
)
from tradelib.marketdata.timeframes import AGGREGATED_TIMEFRAMES, pandas_freq, timeframe_ms

__all__ = [
    "AGGREGATED_TIMEFRAMES",
    "AggregatorStats",
    "BookOutOfSync",
    "BookTop",
    "CandleAggregator",
    "CandleClosed",
    "CandleGap",
    "DepthDiff",
    "DepthWithin",
    "FillEstimate",
    "MarketDataStreamer",
    "MarketEvent",
    "OrderBook",
    "StalenessChanged",
    "StreamReconnecting",
    "StreamerStats",
    "SyncMode",
    "TradesReceived",
    "aggregate_trades",
    "pandas_freq",
    "parse_binance_depth",
    "timeframe_ms",
]
