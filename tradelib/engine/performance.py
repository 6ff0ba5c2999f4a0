"""Running performance of a strategy: trades, wins, P&L, equity peaks, drawdown, Sharpe."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tradelib.domain import ZERO, Mode, require_utc
from tradelib.store.records import ExecutionState

_DAYS_PER_YEAR = 365  # crypto trades every day


def new_state(strategy: str, mode: Mode) -> ExecutionState:
    """A fresh execution state for `strategy`."""
    return ExecutionState(strategy=strategy, mode=mode)


def record_trade(state: ExecutionState, pnl: Decimal) -> ExecutionState:
    """Count one closed trade (net P&L in USD)."""
    won = pnl > 0
    return replace(
        state,
        total_trades=state.total_trades + 1,
        winning_trades=state.winning_trades + (1 if won else 0),
        losing_trades=state.losing_trades + (0 if won else 1),
        consecutive_losses=0 if won else state.consecutive_losses + 1,
        total_pnl=state.total_pnl + pnl,
    )


def record_equity(state: ExecutionState, equity: Decimal, now: datetime) -> ExecutionState:
    """Track peak, drawdown, daily P&L and the daily equity series behind the Sharpe ratio."""
    now = require_utc(now, "equity time")
    today = now.date()
    extra: dict[str, Any] = dict(state.state)
    closes: dict[str, str] = dict(extra.get("daily_equity", {}))
    closes[today.isoformat()] = str(equity)
    extra["daily_equity"] = closes
    start = _day_start(closes, today, equity)
    peak = equity if state.peak_equity is None else max(state.peak_equity, equity)
    drawdown = ZERO if peak <= 0 else (peak - equity) / peak * 100
    return replace(
        state,
        last_execution=now,
        peak_equity=peak,
        max_drawdown=max(state.max_drawdown, drawdown),
        daily_pnl=equity - start,
        daily_pnl_date=today,
        sharpe_ratio=sharpe(closes),
        state=extra,
        updated_at=now,
    )


def _day_start(closes: dict[str, str], today: date, equity: Decimal) -> Decimal:
    earlier = sorted(d for d in closes if d < today.isoformat())
    return Decimal(closes[earlier[-1]]) if earlier else equity


def sharpe(daily_equity: dict[str, str]) -> Decimal | None:
    """Annualised Sharpe of daily equity returns (risk-free 0); None with < 3 returns."""
    values = [float(daily_equity[d]) for d in sorted(daily_equity)]
    returns = [b / a - 1 for a, b in itertools.pairwise(values) if a > 0]
    if len(returns) < 3:
        return None
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    if var <= 0:
        return None
    return Decimal(str(round(mean / math.sqrt(var) * math.sqrt(_DAYS_PER_YEAR), 4)))


def win_rate(state: ExecutionState) -> Decimal | None:
    """Winning trades / all trades, or None before the first trade."""
    if state.total_trades == 0:
        return None
    return Decimal(state.winning_trades) / Decimal(state.total_trades)
