"""The daily report of one account: P&L, win rate, Sharpe, unusual volume, and the alerts.

What the engine records is enough: its execution state keeps one equity close per UTC day
(`daily_equity`), the store keeps every closed position, and the exchange's daily candles give
the volumes. The report covers the last complete UTC day by default and applies the seed's
daily rules (`tradelib.alerts.daily_alerts`): P&L summary, win rate below 35 % over the last
30 days of trades, Sharpe dropping against a week earlier, a symbol trading 3x its volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from tradelib.alerts import Alert, AlertRouter, DailyStats, LogSink, StoreSink, daily_alerts
from tradelib.domain import ZERO, Mode
from tradelib.engine.performance import sharpe
from tradelib.errors import TradelibError
from tradelib.logs import get_logger

if TYPE_CHECKING:
    from tradelib.config import Settings
    from tradelib.exchange.base import Exchange
    from tradelib.store import Store

log = get_logger(__name__)

WINDOW_DAYS = 30
SHARPE_LOOKBACK_DAYS = 7


@dataclass
class DailyReport:
    """One day of one account, with the series behind the plots and the alerts it raised."""

    day: date
    mode: Mode
    exchange: str
    strategy: str
    stats: DailyStats
    equity: pd.Series  # equity close per day (USD)
    pnl: pd.Series  # P&L per day (USD)
    trades: pd.DataFrame  # positions closed in the window
    volume_ratio: dict[str, Decimal] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The day's numbers as one JSON-ready row."""
        s = self.stats
        return {
            "day": s.day,
            "account": f"{self.mode.value}/{self.exchange}",
            "pnl_usd": str(s.pnl),
            "pnl_pct": str(s.pnl_pct),
            "trades_today": s.trades,
            "win_rate_30d": None if s.win_rate is None else f"{s.win_rate:.0%}",
            "sharpe": None if s.sharpe is None else str(s.sharpe),
            "sharpe_week_ago": None if s.previous_sharpe is None else str(s.previous_sharpe),
            "alerts": len(self.alerts),
        }


def _closes(store: Store, strategy: str, mode: Mode) -> dict[str, str]:
    state = store.load_execution_state(strategy, mode)
    return dict((state.state if state else {}).get("daily_equity", {}))


def build_daily_report(
    store: Store,
    mode: Mode,
    exchange: str,
    day: date,
    strategy: str = "token_unlock",
    volume_ratio: dict[str, Decimal] | None = None,
) -> DailyReport:
    """The report of `day` from what the store holds (no alerts sent: see `send_alerts`)."""
    closes = {d: v for d, v in _closes(store, strategy, mode).items() if d <= day.isoformat()}
    equity = pd.Series({pd.Timestamp(d): float(v) for d, v in sorted(closes.items())},
                       dtype="float64", name="equity")  # fmt: skip
    pnl = equity.diff().dropna().rename("pnl")
    today, before = closes.get(day.isoformat()), _previous(closes, day)
    day_pnl = Decimal(today) - Decimal(before) if today and before else ZERO
    pnl_pct = day_pnl / Decimal(before) * 100 if before and Decimal(before) > 0 else ZERO
    start = datetime.combine(day - timedelta(days=WINDOW_DAYS - 1), time(), UTC)
    end = datetime.combine(day + timedelta(days=1), time(), UTC)
    every = store.list_positions(mode, strategy=strategy, include_closed=True, exchange=exchange)
    closed = [p for p in every if p.closed_at is not None and start <= p.closed_at < end]
    trades = pd.DataFrame(
        [{"symbol": p.symbol, "side": p.side.value, "opened_at": p.opened_at,
          "closed_at": p.closed_at, "entry": float(p.average_entry),
          "realized_pnl": float(p.realized_pnl), "fees": float(p.fees)} for p in closed],
        columns=["symbol", "side", "opened_at", "closed_at", "entry", "realized_pnl", "fees"],
    )  # fmt: skip
    wins = sum(1 for p in closed if p.realized_pnl > 0)
    week_ago = (day - timedelta(days=SHARPE_LOOKBACK_DAYS)).isoformat()
    stats = DailyStats(
        day=day.isoformat(),
        pnl=day_pnl.quantize(Decimal("0.01")),
        pnl_pct=pnl_pct.quantize(Decimal("0.01")),
        trades=sum(1 for p in closed if p.closed_at and p.closed_at.date() == day),
        win_rate=Decimal(wins) / Decimal(len(closed)) if closed else None,
        sharpe=sharpe(_window(closes, day)),
        previous_sharpe=sharpe({d: v for d, v in _window(closes, day).items() if d <= week_ago}),
        volume_ratio=dict(volume_ratio or {}),
    )
    return DailyReport(day, mode, exchange, strategy, stats, equity, pnl, trades,
                       dict(volume_ratio or {}))  # fmt: skip


def _previous(closes: dict[str, str], day: date) -> str | None:
    earlier = sorted(d for d in closes if d < day.isoformat())
    return closes[earlier[-1]] if earlier else None


def _window(closes: dict[str, str], day: date) -> dict[str, str]:
    first = (day - timedelta(days=WINDOW_DAYS)).isoformat()
    return {d: v for d, v in closes.items() if first <= d <= day.isoformat()}


async def volume_ratios(exchange: Exchange, symbols: list[str], day: date) -> dict[str, Decimal]:
    """Quote volume of `day` over the mean of the 30 days before it, per symbol."""
    ratios: dict[str, Decimal] = {}
    since = datetime.combine(day - timedelta(days=WINDOW_DAYS), time(), UTC)
    for symbol in symbols:
        try:
            candles = await exchange.fetch_ohlcv(symbol, "1d", since=since, limit=WINDOW_DAYS + 1)
        except TradelibError as exc:
            log.warning("no daily volume for the report", symbol=symbol, error=str(exc))
            continue
        quote = {c.open_time.date(): c.volume * c.close for c in candles if c.closed}
        if day not in quote:
            continue
        history = [v for d, v in quote.items() if d < day]
        if history and sum(history) > 0:
            mean = sum(history, ZERO) / len(history)
            ratios[symbol] = (quote[day] / mean).quantize(Decimal("0.01"))
    return ratios


def send_alerts(report: DailyReport, store: Store, now: datetime) -> list[Alert]:
    """Apply the daily rules and route what they raise to the log and the store's events."""
    router = AlertRouter([LogSink(), StoreSink(store.append_event)])
    sent = [a for a in daily_alerts(report.stats, now) if router.emit(a)]
    report.alerts = sent
    return sent


def report_figures(report: DailyReport) -> list[go.Figure]:
    """Equity, P&L per day, the window's trades and the volume ratios, as plotly figures."""
    figures = []
    equity = go.Figure(go.Scatter(x=report.equity.index, y=report.equity.values, name="equity"))
    equity.update_layout(title=f"Equity (USD), {report.mode.value}/{report.exchange}", height=320)
    figures.append(equity)
    colours = ["#2a9d8f" if v >= 0 else "#e63946" for v in report.pnl.values]
    daily = go.Figure(go.Bar(x=report.pnl.index, y=report.pnl.values, marker_color=colours))
    daily.update_layout(title="P&L per day (USD)", height=320)
    figures.append(daily)
    if len(report.trades):
        trades = go.Figure(go.Bar(x=report.trades["closed_at"], y=report.trades["realized_pnl"],
                                  text=report.trades["symbol"], name="realised P&L"))  # fmt: skip
        trades.update_layout(title=f"Trades closed in the last {WINDOW_DAYS} days", height=320)
        figures.append(trades)
    if report.volume_ratio:
        names = sorted(report.volume_ratio)
        volume = go.Figure(go.Bar(x=names, y=[float(report.volume_ratio[n]) for n in names]))
        volume.add_hline(y=3, line_dash="dash", annotation_text="unusual (3x)")
        volume.update_layout(title="Volume against its 30-day mean", height=320)
        figures.append(volume)
    return figures


def last_complete_day(now: datetime) -> date:
    """The UTC day before `now`'s day: the last one whose closes are all in."""
    return (now.astimezone(UTC) - timedelta(days=1)).date()


async def daily_report(
    settings: Settings,
    now: datetime,
    *,
    mode: Mode = Mode.PAPER,
    day: date | None = None,
    strategy: str = "token_unlock",
    alerts: bool = True,
) -> DailyReport:
    """Build the report of `day` (default: the last complete day before `now`), with volumes
    from the exchange's public data, and send its alerts."""
    from tradelib.exchange.factory import public_exchange
    from tradelib.store import open_store

    day = day or last_complete_day(now)
    exchange_id = settings.exchange.id
    with open_store(settings.store_url) as store:
        every = store.list_positions(mode, strategy=strategy, include_closed=True,
                                     exchange=exchange_id)  # fmt: skip
        traded = {p.symbol for p in every}
        market = public_exchange(settings)
        try:
            ratios = await volume_ratios(market, sorted(traded), day)
        finally:
            await market.close()
        report = build_daily_report(store, mode, exchange_id, day, strategy, ratios)
        if alerts:
            send_alerts(report, store, now)
    return report
