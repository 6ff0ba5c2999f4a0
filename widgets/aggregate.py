"""Pure aggregation from store records to the dashboard's values (`widgets.model`).

No store, no clock, no widgets: every function takes what was read and the time to judge it
at, so the numbers a trader sees are tested here directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tradelib.config import RiskSettings, TargetSettings
from tradelib.domain import ZERO, PositionStatus
from tradelib.operations.valuation import AccountValuation
from tradelib.store import EventRecord, ExecutionState, HeartbeatRecord
from tradelib.store.records import PositionRecord
from widgets.model import (
    BalanceRow,
    BalancesView,
    EngineView,
    EquityPoint,
    Metric,
    PnlView,
    PositionRow,
    Verdict,
)

HUNDRED = Decimal(100)
DAYS_PER_MONTH = Decimal("30.4375")
PACE_AFTER_DAYS = 7  # a monthly pace from fewer days is noise, not a trend


# -- positions ---------------------------------------------------------------------------------


def position_rows(
    records: Sequence[PositionRecord], marks: Mapping[str, Decimal], now: datetime
) -> tuple[PositionRow, ...]:
    """Open positions priced at the engine's marks (else the stored last price), oldest first."""
    rows: list[PositionRow] = []
    for record in records:
        position = record.position
        if position.status is PositionStatus.CLOSED or position.quantity <= 0:
            continue
        price = marks.get(position.symbol, record.current_price)
        unrealised = pnl_pct = None
        if price is not None:
            unrealised = position.unrealized_pnl(price)
            cost = position.average_entry * position.quantity
            pnl_pct = unrealised / cost * HUNDRED if cost > 0 else None
        rows.append(
            PositionRow(
                strategy=position.strategy_id,
                symbol=position.symbol,
                side=position.side,
                quantity=position.quantity,
                entry=position.average_entry,
                price=price,
                unrealised=unrealised,
                unrealised_pct=pnl_pct,
                stop=position.stop_loss,
                target=position.take_profit,
                trailing=position.trailing_stop,
                opened_at=position.opened_at,
                age=max(now - position.opened_at, timedelta(0)),
            )
        )
    return tuple(rows)


# -- balances ----------------------------------------------------------------------------------


def usd_prices(marks: Mapping[str, Decimal], stablecoins: Sequence[str]) -> dict[str, Decimal]:
    """USD per unit of each base asset marked against a stablecoin ("ARB/USDT" -> ARB)."""
    prices: dict[str, Decimal] = {}
    for symbol, price in marks.items():
        base, _, quote = symbol.partition("/")
        if quote in stablecoins and price > 0:
            prices[base] = price
    return prices


def balances_view(
    held: Mapping[str, tuple[Decimal, Decimal]],
    prices_usd: Mapping[str, Decimal],
    stablecoins: Sequence[str],
    limits: RiskSettings,
    source: str,
    as_of: datetime | None,
) -> BalancesView:
    """Each asset in USD (stablecoins at 1 unless priced), the reserve and the minimum balance.

    An asset without a USD price counts as 0 in the totals and is named in `unpriced`, so a
    missing price is visible instead of silently shrinking the account.
    """
    rows: list[BalanceRow] = []
    total = stable = ZERO
    unpriced: list[str] = []
    for asset in sorted(held):
        free, locked = held[asset]
        if free + locked == 0:
            continue
        is_stable = asset in stablecoins
        price = prices_usd.get(asset, Decimal(1) if is_stable else None)
        usd = None if price is None else (free + locked) * price
        if usd is None:
            unpriced.append(asset)
        else:
            total += usd
            stable += usd if is_stable else ZERO
        rows.append(BalanceRow(asset, free, locked, usd, is_stable))
    rows.sort(key=lambda r: (r.usd is None, -(r.usd or ZERO), r.asset))
    return BalancesView(
        rows=tuple(rows),
        total_usd=total,
        stable_usd=stable,
        reserve_floor_pct=limits.stablecoin_reserve_pct,
        min_balance_usd=limits.min_account_balance_usd,
        source=source,
        as_of=as_of,
        unpriced=tuple(unpriced),
    )


# -- metrics -----------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> Verdict:
    return Verdict.NONE if ok is None else Verdict.MET if ok else Verdict.MISSED


def _pct(value: Decimal) -> str:
    return f"{value.normalize():f} %"


def daily_closes(state: ExecutionState | None) -> list[tuple[date, Decimal]]:
    """The strategy's end-of-day equity series (`record_equity` keeps it), oldest first."""
    closes = (state.state if state else {}).get("daily_equity") or {}
    out: list[tuple[date, Decimal]] = []
    for day, value in closes.items():
        try:
            out.append((date.fromisoformat(day), Decimal(str(value))))
        except (ValueError, ArithmeticError):
            continue  # one bad entry must not hide the rest
    return sorted(out)


def monthly_pace(
    closes: Sequence[tuple[date, Decimal]], equity: Decimal | None
) -> tuple[Decimal | None, Decimal | None, int]:
    """(return since the first close %, that return per 30.4 days %, days covered)."""
    if not closes:
        return None, None, 0
    first_day, first = closes[0]
    last_day, last = closes[-1]
    current = equity if equity is not None else last
    days = (last_day - first_day).days
    if first <= 0:
        return None, None, days
    total = (current / first - 1) * HUNDRED
    pace = total * DAYS_PER_MONTH / days if days >= PACE_AFTER_DAYS else None
    return total, pace, days


def strategy_metrics(
    state: ExecutionState | None,
    valuation: AccountValuation | None,
    targets: TargetSettings,
    limits: RiskSettings,
) -> tuple[Metric, ...]:
    """Trades, win rate, Sharpe, drawdown, total and daily P&L, each beside its target."""
    trades = state.total_trades if state else 0
    wins = state.winning_trades if state else 0
    win_rate = Decimal(wins) / Decimal(trades) * HUNDRED if trades else None
    sharpe = state.sharpe_ratio if state else None
    max_dd = state.max_drawdown if state else None
    equity = valuation.equity_usd if valuation else None
    closes = daily_closes(state)
    _, pace, days = monthly_pace(closes, equity)
    total_pnl = state.total_pnl if state else None
    total_return = None
    if total_pnl is not None and valuation is not None:
        # The equity it started from: today's equity less realised and open P&L.
        began = valuation.equity_usd - total_pnl - valuation.unrealised_usd
        total_return = total_pnl / began * HUNDRED if began > 0 else None
    current_dd = None
    if valuation and valuation.peak_equity_usd > 0:
        current_dd = (valuation.peak_equity_usd - valuation.equity_usd) / valuation.peak_equity_usd
        current_dd *= HUNDRED
    daily = valuation.daily_pnl_usd if valuation else (state.daily_pnl if state else None)
    start = valuation.day_start_equity_usd if valuation else None
    limit_usd = start * limits.daily_loss_limit_pct / HUNDRED if start else None
    pace_note = (
        f"{_fmt(pace)} %/month over {days} d"
        if pace is not None
        else f"pace after {PACE_AFTER_DAYS} d"
    )
    return (
        Metric(
            "equity",
            "Equity",
            equity,
            "usd",
            "",
            Verdict.NONE,
            note=f"peak {valuation.peak_equity_usd:,.2f}"
            if valuation
            else "the engine publishes no valuation",
        ),
        Metric(
            "total_pnl",
            "Total P&L",
            state.total_pnl if state else None,
            "usd",
            f"target ≥ {_pct(targets.monthly_return_pct)}/month",
            _verdict(None if pace is None else pace >= targets.monthly_return_pct),
            note=(f"{_fmt(total_return)} % · " if total_return is not None else "") + pace_note,
        ),
        Metric(
            "daily_pnl",
            "Daily P&L",
            daily,
            "usd",
            f"within limit −{_pct(limits.daily_loss_limit_pct)}"
            + (f" (−{limit_usd:,.2f})" if limit_usd is not None else ""),
            _verdict(None if daily is None or limit_usd is None else daily > -limit_usd),
            note=""
            if start is None
            else f"{_fmt(daily / start * HUNDRED)} % of the day"
            if daily is not None and start > 0
            else "",
        ),
        Metric(
            "trades",
            "Trades",
            Decimal(trades),
            "count",
            "",
            Verdict.NONE,
            note=f"{wins} won · {trades - wins} lost" if trades else "no closed trade yet",
        ),
        Metric(
            "win_rate",
            "Win rate",
            win_rate,
            "pct",
            f"target > {_pct(targets.win_rate_pct)}",
            _verdict(None if win_rate is None else win_rate > targets.win_rate_pct),
        ),
        Metric(
            "sharpe",
            "Sharpe",
            sharpe,
            "ratio",
            f"target > {targets.sharpe.normalize():f}",
            _verdict(None if sharpe is None else sharpe > targets.sharpe),
            note="" if sharpe is not None else "needs 4 daily closes",
        ),
        Metric(
            "max_drawdown",
            "Max drawdown",
            max_dd,
            "pct",
            f"target < {_pct(targets.max_drawdown_pct)}",
            _verdict(
                None
                if max_dd is None or not state or state.peak_equity is None
                else max_dd < targets.max_drawdown_pct
            ),
            note="" if current_dd is None else f"now {_fmt(current_dd)} %",
        ),
    )


def _fmt(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:+,.{places}f}" if value else f"{value:,.{places}f}"


# -- P&L chart ---------------------------------------------------------------------------------


def equity_points(
    cycle_events: Iterable[EventRecord],
    samples: Iterable[EquityPoint],
    closes: Sequence[tuple[date, Decimal]] = (),
    limit: int = 2000,
) -> tuple[EquityPoint, ...]:
    """The equity series: daily closes, equity of cycles that traded, live samples; by time.

    A sample and an event at the same moment are one point (the sample, which also knows
    the daily P&L). At most `limit` points, the newest.
    """
    by_time: dict[datetime, EquityPoint] = {}
    for event in cycle_events:
        raw = event.payload.get("equity_usd")
        if raw is None:
            continue
        try:
            by_time[event.at] = EquityPoint(event.at, Decimal(str(raw)))
        except ArithmeticError:
            continue
    for sample in samples:
        by_time[sample.at] = sample
    newest = max(by_time, default=None)
    for day, close in closes:
        # A day's close is stamped at its end; today's would lie ahead of the live points.
        at = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
        if at not in by_time and (newest is None or at <= newest):
            by_time[at] = EquityPoint(at, close)
    points = _with_daily_pnl(sorted(by_time.values(), key=lambda p: p.at))
    return tuple(points[-limit:])


def _with_daily_pnl(points: list[EquityPoint]) -> list[EquityPoint]:
    """Fill in the daily P&L the engine did not publish: equity since the day's start.

    The day starts at the last equity of the previous UTC day (else the day's first point),
    which is what the engine's daily counter measures for a spot account.
    """
    out: list[EquityPoint] = []
    start: Decimal | None = None
    day = None
    previous: EquityPoint | None = None
    for point in points:
        if point.at.date() != day:
            day = point.at.date()
            start = previous.equity if previous is not None else point.equity
        if point.daily_pnl is None and start is not None:
            point = EquityPoint(point.at, point.equity, point.equity - start)
        out.append(point)
        previous = point
    return out


def pnl_view(
    points: tuple[EquityPoint, ...], valuation: AccountValuation | None, limits: RiskSettings
) -> PnlView:
    """The chart's series with the daily loss limit (and its alert level) in USD."""
    start = valuation.day_start_equity_usd if valuation else None
    limit = alert = None
    if start is not None and start > 0:
        limit = -(start * limits.daily_loss_limit_pct / HUNDRED)
        alert = limit * limits.daily_loss_alert_fraction
    return PnlView(
        points=points,
        loss_limit_usd=limit,
        alert_level_usd=alert,
        daily_pnl_usd=valuation.daily_pnl_usd if valuation else None,
        day_start_equity_usd=start,
    )


# -- engine ----------------------------------------------------------------------------------------


def engine_view(beat: HeartbeatRecord, now: datetime, stale_after: float) -> EngineView:
    """A heartbeat judged at `now`: alive, stale or stopped, and how long it has been silent."""
    return EngineView(
        mode=beat.mode,
        exchange=beat.exchange,
        strategy=beat.strategy,
        state=beat.state.value,
        liveness=beat.liveness(now, stale_after),
        pid=beat.pid,
        host=beat.host,
        started_at=beat.started_at,
        beat_at=beat.beat_at,
        last_cycle_at=beat.last_cycle_at,
        cycles=beat.cycles,
        silent=max(now - beat.beat_at, timedelta(0)),
    )
