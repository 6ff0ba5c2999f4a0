"""Real-time market data: candle aggregation, order books, streaming and candle history."""

from tradelib.marketdata.candles import (
    AGGREGATED_TIMEFRAMES,
    AggregatorStats,
    CandleAggregator,
    CandleGap,
    aggregate_trades,
)
from tradelib.marketdata.events import (
    BookTop,
    CandleClosed,
    MarketDataSource,
    MarketEvent,
    StalenessChanged,
    StreamReconnecting,
    TradesReceived,
)
from tradelib.marketdata.history import (
    CandleHistory,
    CandleStore,
    OhlcvSource,
    candles_to_frame,
    load_bundled_candles,
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
from tradelib.marketdata.streamer import MarketDataStreamer, StreamerStats

__all__ = [
    "AGGREGATED_TIMEFRAMES",
    "AggregatorStats",
    "BookOutOfSync",
    "BookTop",
    "CandleAggregator",
    "CandleClosed",
    "CandleGap",
    "CandleHistory",
    "CandleStore",
    "DepthDiff",
    "DepthWithin",
    "FillEstimate",
    "MarketDataSource",
    "MarketDataStreamer",
    "MarketEvent",
    "OhlcvSource",
    "OrderBook",
    "StalenessChanged",
    "StreamReconnecting",
    "StreamerStats",
    "SyncMode",
    "TradesReceived",
    "aggregate_trades",
    "candles_to_frame",
    "load_bundled_candles",
    "parse_binance_depth",
]
