"""The engine: one strategy, risk, orders, positions and market data, cycle by cycle."""

from tradelib.engine.core import CycleReport, Engine

__all__ = ["CycleReport", "Engine"]
