"""The daily report's numbers and alerts from what the store holds (no exchange, no notebook)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tradelib.domain import Mode, Position, PositionStatus, Side, StrategyId
from tradelib.engine.daily_report import (
    build_daily_report,
    last_complete_day,
    report_figures,
    send_alerts,
)
from tradelib.store import ExecutionState, Store

DAY = date(2024, 8, 20)


def _closed(symbol: str, pnl: str, closed: datetime) -> Position:
    return Position(
        strategy_id=StrategyId("token_unlock"), exchange="binance", symbol=symbol,
        side=Side.BUY, quantity=Decimal(0), average_entry=Decimal(1),
        opened_at=closed - timedelta(hours=5), status=PositionStatus.CLOSED,
        realized_pnl=Decimal(pnl), closed_at=closed, mode=Mode.PAPER,
    )  # fmt: skip


def _seed(store: Store) -> None:
    store.ensure_strategy("token_unlock", {})
    # Steady gains for three weeks, then three losing days: the Sharpe ratio drops.
    closes: dict[str, str] = {}
    equity = Decimal(10_000)
    for back in range(25, -1, -1):
        day = DAY - timedelta(days=back)
        equity += Decimal(30) + (day.toordinal() % 3) if back > 2 else Decimal(-250)
        closes[day.isoformat()] = str(equity)
    store.save_execution_state(ExecutionState(strategy="token_unlock", mode=Mode.PAPER,
                                              state={"daily_equity": closes}))  # fmt: skip
    at = datetime(2024, 8, 20, 9, tzinfo=UTC)
    for i, pnl in enumerate(["-40", "-25", "12"]):
        store.upsert_position(_closed(f"{['ARB', 'OP', 'SUI'][i]}/USDT", pnl,
                                      at - timedelta(days=i * 3)))  # fmt: skip
    store.upsert_position(_closed("ARB/USDT", "99", at - timedelta(days=40)))  # outside 30 days


def test_the_report_of_a_losing_day_raises_the_seed_alerts(store: Store) -> None:
    _seed(store)
    report = build_daily_report(store, Mode.PAPER, "binance", DAY,
                                volume_ratio={"ARB/USDT": Decimal("4.20"),
                                              "OP/USDT": Decimal("1.10")})  # fmt: skip
    stats = report.stats
    assert stats.pnl == Decimal("-250.00") and stats.pnl_pct < 0
    assert stats.trades == 1  # closed that day
    assert stats.win_rate == Decimal(1) / Decimal(3)  # the last 30 days: 1 win of 3
    assert stats.sharpe is not None and stats.previous_sharpe is not None
    assert stats.sharpe < stats.previous_sharpe
    sent = send_alerts(report, store, datetime(2024, 8, 21, 0, 5, tzinfo=UTC))
    kinds = sorted(str(a.kind) for a in sent)
    assert kinds == ["daily_summary", "low_win_rate", "sharpe_drop", "unusual_volume"]
    [volume] = [a for a in sent if str(a.kind) == "unusual_volume"]
    assert "ARB/USDT volume is 4.2x" in volume.message
    stored = [e.payload["kind"] for e in store.list_events(kind="alert")]
    assert sorted(stored) == kinds
    assert len(report_figures(report)) == 4  # equity, daily P&L, trades, volume


def test_a_quiet_day_raises_only_the_summary(store: Store) -> None:
    store.ensure_strategy("token_unlock", {})
    report = build_daily_report(store, Mode.PAPER, "binance", DAY)
    assert report.stats.pnl == 0 and report.stats.trades == 0 and report.stats.win_rate is None
    sent = send_alerts(report, store, datetime(2024, 8, 21, tzinfo=UTC))
    assert [str(a.kind) for a in sent] == ["daily_summary"]
    assert last_complete_day(datetime(2024, 8, 21, 0, 5, tzinfo=UTC)) == DAY
