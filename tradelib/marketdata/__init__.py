"""Real-time market data: candle aggregation, order books, streaming and candle history."""

from tradelib.marketdata.candles import (
    AggregatorStats,
    CandleAggregator,
    CandleGap,
    aggregate_trades,
)
from tradelib.marketdata.timeframes import AGGREGATED_TIMEFRAMES, pandas_freq, timeframe_ms

__all__ = [
    "AGGREGATED_TIMEFRAMES",
    "AggregatorStats",
    "CandleAggregator",
    "CandleGap",
    "aggregate_trades",
    "pandas_freq",
    "timeframe_ms",
]
