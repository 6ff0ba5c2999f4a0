"""`tradelib demo`: the paper engine replayed over the bundled unlock events, with a report.

Every demo run trades on its own paper venue id (``replay-<run id>``) in the chosen store, so
runs never see each other's orders or positions, and the dashboard can show any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from tradelib.alerts import Alert, AlertKind, AlertRouter, LogSink, StoreSink
from tradelib.config import Settings
from tradelib.control import RiskControl
from tradelib.domain import Mode
from tradelib.engine.core import CycleReport, Engine
from tradelib.engine.replay import event_windows, replay_windows
from tradelib.errors import KillSwitchEngaged
from tradelib.exchange.paper import PaperExchange
from tradelib.exchange.paper_data import ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.logs import get_logger
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent, load_calendar
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy, eligible_events

log = get_logger(__name__)

START_CASH = Decimal(10_000)


@dataclass
class DemoResult:
    """What the demo did: the paper trades, the equity curve, and the backtest beside it."""

    run_id: int
    exchange_id: str
    params: TokenUnlockParams
    events: int
    cycles: int
    trades: pd.DataFrame
    equity: pd.Series
    summary: dict[str, Any]
    event_list: list[UnlockEvent] = field(default_factory=list)
    report_path: Path | None = None
    refused: int = 0  # entries the risk checks or breakers refused
    breaker_trips: int = 0
    store_url: str = ""  # redacted


class ReplayLogSink:
    """Logs alerts like LogSink, except breaker trips and resets: a replay expects those (it
    resets tripped breakers before each event window), so they are info, not errors."""

    def __init__(self) -> None:
        self._sink = LogSink()

    def send(self, alert: Alert) -> None:
        """Log `alert`; breaker alerts at info level."""
        if alert.kind is AlertKind.BREAKER_TRIPPED:
            log.info("breaker event in the replay (expected)", message=alert.message)
        else:
            self._sink.send(alert)


# The spot variant: a spot paper account cannot short, and out of sample it held up better
# than the short variant (see the research notebook's walk-forward table).
DEMO_PARAMS = TokenUnlockParams(direction="spot", days_after=4.0)


def demo_events(
    calendar: UnlockCalendar,
    params: TokenUnlockParams,
    symbols: list[str] | None = None,
    limit: int | None = None,
) -> list[UnlockEvent]:
    """The events a demo replays: eligible under `params`, optionally only some symbols/first N."""
    events = eligible_events(list(calendar.events), params)
    if symbols is not None:
        events = [e for e in events if f"{e.symbol}/USDT" in symbols]
    return events if limit is None else events[:limit]


async def run_demo(
    settings: Settings,
    store: Any,
    *,
    params: TokenUnlockParams | None = None,
    calendar: UnlockCalendar | None = None,
    symbols: list[str] | None = None,
    limit_events: int | None = None,
) -> DemoResult:
    """Replay the events through the paper engine into `store`; returns trades and equity."""
    params = params or DEMO_PARAMS
    calendar = calendar or load_calendar()
    events = demo_events(calendar, params, symbols, limit_events)
    wanted = sorted({f"{e.symbol}/USDT" for e in events})
    settings = settings.model_copy(update={"mode": Mode.PAPER})
    refuse_while_killed(store, settings)
    run_id = store.start_run("demo", {"params": params.to_dict(), "events": len(events)})
    exchange_id = f"replay-{run_id}"
    bar = timedelta(hours=1)
    windows = event_windows(events, params, bar)
    replay = ReplayMarket.from_data_dir(
        Path(settings.data_dir), start=windows[0].start - bar * 24 * 14, symbols=wanted
    )
    paper = PaperExchange(
        ReplayMarketData(replay), balances={"USDT": START_CASH}, exchange_id=exchange_id
    )
    strategy = TokenUnlockStrategy(params, calendar)
    alerts = AlertRouter([ReplayLogSink(), StoreSink(store.append_event)])
    engine = Engine(
        settings, store, paper, strategy, symbols=[], clock=lambda: replay.now,
        alerts=alerts, history=24 * 14,
    )  # fmt: skip
    try:
        reports = await replay_windows(engine, paper, windows, reset_breakers=True)
        store.finish_run(run_id, "succeeded")
    except BaseException as exc:
        store.finish_run(run_id, "failed", error=str(exc))
        raise
    finally:
        await paper.close()
    trades = closed_trades(store, exchange_id)
    equity = equity_curve(reports)
    trips = [
        e
        for e in store.list_events(kind="breaker_tripped", limit=10_000)
        if e.payload.get("exchange") == exchange_id
    ]
    return DemoResult(
        run_id=run_id,
        exchange_id=exchange_id,
        params=params,
        events=len(events),
        cycles=len(reports),
        trades=trades,
        equity=equity,
        summary=summarise(trades, equity),
        event_list=events,
        refused=sum(len(r.rejected) for r in reports),
        breaker_trips=len(trips),
        store_url=store.url,
    )


def refuse_while_killed(store: Any, settings: Settings) -> None:
    """KillSwitchEngaged (saying how to release it) when the store's kill switch is on."""
    control = RiskControl(
        store, settings, mode=Mode.PAPER, exchange_id="replay", clock=lambda: datetime.now(UTC)
    )
    kill = control.kill_state()
    if not kill.engaged:
        return
    since = kill.since.isoformat() if kill.since else "an unknown time"
    raise KillSwitchEngaged(
        f"the kill switch is engaged on {store.url} (since {since} by {kill.by}: {kill.reason}), "
        "so the paper engine would not trade and the demo would show nothing. Nothing was run. "
        'Release it with: tradelib release --reason "<why it is safe>" --code <TOTP code> '
        "(see `tradelib status`), or run the demo on another store: "
        "tradelib demo --store duckdb:///tmp/tradelib-demo.duckdb"
    )


def closed_trades(store: Any, exchange_id: str) -> pd.DataFrame:
    """One row per closed position of this demo run."""
    rows = [
        {
            "symbol": p.symbol,
            "side": str(p.side),
            "entry_time": p.opened_at,
            "entry_price": float(p.average_entry),
            "exit_time": p.closed_at,
            "realized_pnl": float(p.realized_pnl),
            "fees": float(p.fees),
        }
        for p in store.list_positions(Mode.PAPER, include_closed=True, exchange=exchange_id)
        if p.closed_at is not None
    ]
    columns = ["symbol", "side", "entry_time", "entry_price", "exit_time", "realized_pnl", "fees"]
    return pd.DataFrame(rows, columns=columns)


def equity_curve(reports: list[CycleReport]) -> pd.Series:
    """Equity (USD) after each cycle, indexed by the replay time."""
    points = [(r.at, float(r.equity_usd)) for r in reports if r.equity_usd is not None]
    if not points:
        return pd.Series(dtype="float64", name="equity")
    times, values = zip(*points, strict=True)
    return pd.Series(values, index=pd.DatetimeIndex(times), name="equity")


def summarise(trades: pd.DataFrame, equity: pd.Series) -> dict[str, Any]:
    """Return (total and per 30 days), drawdown, win rate, Sharpe and trades of the paper run."""
    start = float(START_CASH)
    end = float(equity.iloc[-1]) if len(equity) else start
    peak = equity.cummax() if len(equity) else equity
    drawdown = float(((peak - equity) / peak).max() * 100) if len(equity) else 0.0
    wins = int((trades["realized_pnl"] > 0).sum()) if len(trades) else 0
    total = (end / start - 1) * 100
    days = (equity.index[-1] - equity.index[0]).days if len(equity) > 1 else 0
    monthly = ((end / start) ** (30 / days) - 1) * 100 if days > 0 else 0.0
    daily = equity.resample("1D").last().dropna() if len(equity) else equity
    returns = daily.pct_change().dropna()
    sharpe = (
        float(returns.mean() / returns.std() * (365**0.5))
        if len(returns) > 2 and returns.std() > 0
        else None
    )
    return {
        "trades": len(trades),
        "win_rate_pct": round(100 * wins / len(trades), 1) if len(trades) else None,
        "total_return_pct": round(total, 3),
        "monthly_return_pct": round(monthly, 3),
        "sharpe": None if sharpe is None else round(sharpe, 3),
        "max_drawdown_pct": round(drawdown, 3),
        "realized_pnl_usd": round(float(trades["realized_pnl"].sum()), 2) if len(trades) else 0.0,
        "fees_usd": round(float(trades["fees"].sum()), 2) if len(trades) else 0.0,
        "end_equity_usd": round(end, 2),
    }
