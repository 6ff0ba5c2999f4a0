"""HTML for the dashboard's tables and status badges, from `widgets.model` values (pure).

Each function returns a string; a view sets its widget only when the string changed, so a
refresh that changes nothing redraws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradelib.domain import Mode
from tradelib.store import Liveness
from widgets.fmt import (
    DASH,
    age,
    age_coarse,
    esc,
    hms,
    minute,
    money,
    pct,
    price,
    qty,
    short,
    sign_class,
    stamp,
)
from widgets.model import (
    AlertRow,
    BalancesView,
    CommandRow,
    HistoryPage,
    Metric,
    OrderRow,
    PositionRow,
    StatusView,
    TradeRow,
    Verdict,
)


def show(widget: Any, html: str) -> bool:
    """Set an HTML widget's value only when it differs: an unchanged section is not redrawn."""
    if widget.value == html:
        return False
    widget.value = html
    return True


@dataclass(frozen=True, slots=True)
class Connection:
    """How the dashboard's last reads of the store went."""

    ok: bool
    refreshed_at: datetime | None = None
    error: str | None = None
    failing_since: datetime | None = None


def _cell(text: str, cls: str = "tl-num") -> str:
    return f'<td class="{cls}">{text}</td>'


def _table(headers: Sequence[tuple[str, str]], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<div class="tl-empty">{esc(empty)}</div>'
    head = "".join(f'<th class="{cls}">{esc(name)}</th>' for name, cls in headers)
    return (
        f'<table class="tl-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _scroll(html: str) -> str:
    """A wide table scrolls sideways inside its card instead of being cut off."""
    return f'<div class="tl-scroll">{html}</div>'


def _signed(value: Decimal | None, text: str) -> str:
    return f'<span class="{sign_class(value)}">{text}</span>'


# -- status ------------------------------------------------------------------------------------


def _badge(title: str, sub: str, tone: str, tip: str = "") -> str:
    hint = f' title="{esc(tip)}"' if tip else ""
    return (
        f'<div class="tl-badge tl-{tone}"{hint}><b>{title}</b>'
        f'<span class="tl-sub">{sub}</span></div>'
    )


def render_status(status: StatusView, now: datetime, connection: Connection) -> str:
    """The badge row: mode, engine heartbeat, kill switch, breakers, halt, entries, store."""
    account = status.account
    live = account.mode is Mode.LIVE
    strategy = f" · {esc(account.strategy)}" if account.strategy else ""
    badges = [
        f'<div class="tl-badge tl-mode tl-mode-{account.mode.value}">'
        f"<b>{account.mode.value.upper()}</b>"
        f'<span class="tl-sub">{"REAL MONEY" if live else "simulated money"} · '
        f"{esc(account.exchange)}{strategy}</span></div>"
    ]
    request = status.mode_request
    if request is not None and request.mode is Mode.LIVE and not live:
        if request.grant_usable(now):
            badges.append(
                _badge(
                    "LIVE REQUESTED",
                    f"by {esc(request.by)} at {hms(request.at)} · grant until "
                    f"{hms(request.grant_expires_at)} · cap ${money(request.capital_usd)}",
                    "caution",
                )
            )
        elif request.consumed_at is not None:
            badges.append(
                _badge(
                    "LIVE GRANT USED",
                    f"by {esc(request.consumed_by)} at {hms(request.consumed_at)}; no live engine "
                    "beating",
                    "bad",
                )
            )
    engine = status.engine
    if engine is None:
        badges.append(_badge("NO ENGINE", f"none has run for {account.mode.value}", "idle"))
    else:
        tone = {Liveness.ALIVE: "ok", Liveness.STALE: "bad", Liveness.STOPPED: "idle"}
        cycle = f"cycle {hms(engine.last_cycle_at)}" if engine.last_cycle_at else "no cycle yet"
        badges.append(
            _badge(
                f"ENGINE {engine.liveness.value.upper()}",
                f"{cycle} · beat {age(engine.silent)} ago · #{engine.cycles}",
                tone[engine.liveness],
                tip=f"{engine.strategy} pid {engine.pid} on {engine.host}, started "
                f"{stamp(engine.started_at)} UTC, state {engine.state}",
            )
        )
    kill = status.kill
    if kill.engaged:
        badges.append(_badge("KILL SWITCH ON", f"since {hms(kill.since)} by {esc(kill.by)}", "bad"))
    else:
        badges.append(_badge("KILL SWITCH OFF", "orders allowed", "ok"))
    if status.trips:
        names = ", ".join(t.breaker.value for t in status.trips)
        tip = "; ".join(f"{t.breaker.value}: {t.reason}" for t in status.trips)
        badges.append(_badge(f"{len(status.trips)} BREAKER(S) TRIPPED", esc(names), "bad", tip))
    else:
        badges.append(_badge("BREAKERS CLEAR", "entries allowed", "ok"))
    if status.halt:
        badges.append(_badge("RECONCILIATION HALT", esc(status.halt[:60]), "bad", tip=status.halt))
    else:
        badges.append(_badge("RECONCILED", "no halt", "ok"))
    pause = status.pause
    if pause.paused:
        badges.append(
            _badge("ENTRIES PAUSED", f"by {esc(pause.by)}: {esc(pause.reason)}", "caution")
        )
    else:
        badges.append(_badge("ENTRIES ON", "not paused", "ok"))
    if connection.ok:
        badges.append(_badge("STORE OK", f"read {hms(connection.refreshed_at)} UTC", "ok"))
    else:
        since = hms(connection.failing_since)
        badges.append(
            _badge(
                "STORE UNREACHABLE",
                f"since {since}, retrying; showing data of {hms(connection.refreshed_at)}",
                "bad",
            )
        )
    return f'<div class="tl-status">{"".join(badges)}</div>'


def render_kill_bar(status: StatusView) -> str:
    """The full-width red bar shown while the kill switch is engaged (empty otherwise)."""
    kill = status.kill
    if not kill.engaged:
        return ""
    action = "cancel every order and close every position" if kill.flatten else "cancel every order"
    return (
        f'<div class="tl-killbar">■ KILL SWITCH ENGAGED — every account is stopped '
        f'<span class="tl-sub">since {stamp(kill.since)} UTC by {esc(kill.by)}: '
        f"{esc(kill.reason)} · {action} · releasing needs a TOTP code "
        "(<code>tradelib release</code>)</span></div>"
    )


def render_problems(connection: Connection, notes: Sequence[str]) -> str:
    """Amber notices: the store error while it lasts, and data problems the snapshot found."""
    lines = []
    if not connection.ok and connection.error:
        lines.append(f"Store unreachable: {esc(connection.error)}")
    lines.extend(esc(n) for n in notes)
    return "".join(f'<div class="tl-notice">{line}</div>' for line in lines)


# -- metrics -----------------------------------------------------------------------------------


def _metric_value(metric: Metric) -> str:
    value = metric.value
    if metric.unit == "usd":
        signed = metric.key != "equity"
        text = money(value, signed=signed)
        return _signed(value, text) if signed else text
    if metric.unit == "pct":
        return pct(value)
    if metric.unit == "count":
        return DASH if value is None else f"{int(value):,d}"
    return DASH if value is None else f"{value:.2f}"


def render_metrics(metrics: Sequence[Metric]) -> str:
    """One card per metric: value, its target, and a coloured edge for met / missed."""
    cards = []
    for m in metrics:
        mark = {Verdict.MET: "✓ ", Verdict.MISSED: "✗ ", Verdict.NONE: ""}[m.verdict]
        target = f"{mark}{esc(m.target)}" if m.target else "&nbsp;"
        tone = {Verdict.MET: "tl-up", Verdict.MISSED: "tl-down", Verdict.NONE: "tl-sub"}[m.verdict]
        cards.append(
            f'<div class="tl-metric tl-{m.verdict.value}" data-metric="{m.key}">'
            f'<div class="tl-label">{esc(m.label)}</div>'
            f'<div class="tl-value">{_metric_value(m)}</div>'
            f'<div class="tl-target {tone}">{target}</div>'
            f'<div class="tl-sub">{esc(m.note) or "&nbsp;"}</div></div>'
        )
    return f'<div class="tl-metrics">{"".join(cards)}</div>'


# -- positions ---------------------------------------------------------------------------------

_POSITION_HEADERS = (
    ("Symbol", "tl-l"),
    ("Strategy", "tl-l"),
    ("Side", "tl-l"),
    ("Size", ""),
    ("Entry", ""),
    ("Price", ""),
    ("Value", ""),
    ("Unrealised", ""),
    ("%", ""),
    ("Stop", ""),
    ("Target", ""),
    ("Trailing", ""),
    ("Age", ""),
)


def render_positions(rows: Sequence[PositionRow], quote: str) -> str:
    """The open positions table with a total line (value and unrealised P&L, in `quote`)."""
    body = []
    for r in rows:
        value = None if r.price is None else r.price * r.quantity
        body.append(
            f'<tr data-symbol="{esc(r.symbol)}">'
            + _cell(f"<b>{esc(r.symbol)}</b>", "tl-l")
            + _cell(esc(r.strategy), "tl-l")
            + _cell(f'<span class="tl-side-{r.side.value}">{r.side.value.upper()}</span>', "tl-l")
            + _cell(qty(r.quantity))
            + _cell(price(r.entry))
            + _cell(price(r.price))
            + _cell(money(value))
            + _cell(_signed(r.unrealised, money(r.unrealised, signed=True)))
            + _cell(_signed(r.unrealised_pct, pct(r.unrealised_pct, signed=True)))
            + _cell(price(r.stop))
            + _cell(price(r.target))
            + _cell(price(r.trailing))
            + _cell(age_coarse(r.age))
            + "</tr>"
        )
    if rows:
        known = [r.unrealised for r in rows if r.unrealised is not None]
        total = sum(known, Decimal(0)) if known else None
        values = [r.price * r.quantity for r in rows if r.price is not None]
        exposure = sum(values, Decimal(0)) if values else None
        body.append(
            '<tr class="tl-total">'
            + _cell(f"<b>{len(rows)} open</b>", "tl-l")
            + _cell(f'<span class="tl-sub">in {esc(quote)}</span>', "tl-l")
            + _cell("", "tl-l")
            + _cell("") * 3
            + _cell(f"<b>{money(exposure)}</b>")
            + _cell(f"<b>{_signed(total, money(total, signed=True))}</b>")
            + _cell("") * 5
            + "</tr>"
        )
    return _scroll(_table(_POSITION_HEADERS, body, "No open position."))


# -- balances ----------------------------------------------------------------------------------


def _meter(share: Decimal | None, floor: Decimal, ok: bool) -> str:
    width = 0 if share is None else float(min(max(share, Decimal(0)), Decimal(100)))
    colour = "var(--jp-success-color1, #1a7f37)" if ok else "var(--jp-error-color1, #cf222e)"
    return (
        f'<div class="tl-meter" title="stablecoin share against its floor">'
        f'<span style="width:{width:.1f}%;background:{colour}"></span>'
        f'<i style="left:{float(floor):.1f}%"></i></div>'
    )


def render_balances(view: BalancesView) -> str:
    """Total in USD, the stablecoin reserve meter against its floor, the assets table."""
    share = view.stable_pct
    reserve_tone = "tl-up" if view.reserve_ok else "tl-down"
    min_tone = "tl-up" if view.min_balance_ok else "tl-down"
    source = esc(view.source) + (f" {hms(view.as_of)}" if view.as_of else "")
    head = (
        f'<table class="tl-kv"><tr><td>Account value</td><td class="tl-num"><b>$'
        f'{money(view.total_usd)}</b></td><td class="tl-sub">from {source}</td></tr>'
        f'<tr><td>Stablecoin reserve</td><td class="tl-num {reserve_tone}"><b>{pct(share)}</b>'
        f'</td><td class="{reserve_tone}">floor {pct(view.reserve_floor_pct, places=0)} · '
        f"{'OK' if view.reserve_ok else 'BELOW FLOOR'}</td></tr>"
        f'<tr><td>Minimum balance</td><td class="tl-num">${money(view.min_balance_usd)}</td>'
        f'<td class="{min_tone}">{"OK" if view.min_balance_ok else "BELOW MINIMUM"}</td></tr>'
        "</table>"
    )
    meter = _meter(share, view.reserve_floor_pct, view.reserve_ok)
    rows = []
    for b in view.rows:
        part = None if b.usd is None or view.total_usd <= 0 else b.usd / view.total_usd * 100
        rows.append(
            "<tr>"
            + _cell(f"<b>{esc(b.asset)}</b>" + (" ◦" if b.stable else ""), "tl-l")
            + _cell(qty(b.free, 2 if b.stable else None))
            + _cell(qty(b.locked, 2 if b.stable else None) if b.locked else DASH)
            + _cell(money(b.usd))
            + _cell(pct(part, places=1))
            + "</tr>"
        )
    table = _table(
        (("Asset", "tl-l"), ("Free", ""), ("Locked", ""), ("USD", ""), ("Share", "")),
        rows,
        "No balance known yet.",
    )
    unpriced = ""
    if view.unpriced:
        missing = esc(", ".join(view.unpriced))
        unpriced = (
            f'<div class="tl-notice">No USD price for {missing}: left out of the totals.</div>'
        )
    return head + meter + table + unpriced


# -- alerts and commands -----------------------------------------------------------------------


def render_alerts(rows: Sequence[AlertRow], limit: int = 40) -> str:
    """The alert feed, newest first, severity as a coloured tag."""
    body = [
        "<tr>"
        + _cell(f'<span class="tl-sub">{short(r.at)}</span>', "tl-l tl-nowrap")
        + _cell(
            f'<span class="tl-sev tl-sev-{esc(r.severity)}">{esc(r.severity[:4].upper())}</span>',
            "tl-l",
        )
        + _cell(esc(r.message), "tl-l")
        + "</tr>"
        for r in rows[:limit]
    ]
    table = _table(
        (("Time (UTC)", "tl-l"), ("", "tl-l"), ("What happened", "tl-l")), body, "No alert yet."
    )
    return f'<div class="tl-feed">{table}</div>'


def render_commands(rows: Sequence[CommandRow]) -> str:
    """Commands sent to the engine and their outcome."""
    tone = {"done": "tl-up", "failed": "tl-down", "refused": "tl-down", "expired": "tl-warn"}
    body = [
        "<tr>"
        + _cell(f"#{r.id}", "tl-l")
        + _cell(esc(r.kind.replace("_", " ")), "tl-l")
        + _cell(esc(r.target), "tl-l")
        + _cell(f'<span class="{tone.get(r.status.value, "")}">{r.status.value}</span>', "tl-l")
        + _cell(
            f"{esc(r.by)}: {esc(r.reason)}" + (f" → {esc(r.result)}" if r.result else ""), "tl-l"
        )
        + "</tr>"
        for r in rows
    ]
    return _table(
        (
            ("", "tl-l"),
            ("Command", "tl-l"),
            ("Target", "tl-l"),
            ("Status", "tl-l"),
            ("Who, why, result", "tl-l"),
        ),
        body,
        "No command sent yet.",
    )


# -- history -----------------------------------------------------------------------------------

_ORDER_HEADERS = (
    ("Created (UTC)", "tl-l"),
    ("Mode", "tl-l"),
    ("Symbol", "tl-l"),
    ("Side", "tl-l"),
    ("Type", "tl-l"),
    ("Qty", ""),
    ("Limit", ""),
    ("Filled", ""),
    ("Avg price", ""),
    ("Fee", ""),
    ("Status", "tl-l"),
)
_TRADE_HEADERS = (
    ("Closed (UTC)", "tl-l"),
    ("Mode", "tl-l"),
    ("Symbol", "tl-l"),
    ("Side", "tl-l"),
    ("Qty", ""),
    ("Entry", ""),
    ("Realised", ""),
    ("Return", ""),
    ("Fees", ""),
    ("Held", ""),
)
_STATUS_TONE = {
    "filled": "tl-up",
    "rejected": "tl-down",
    "expired": "tl-warn",
    "cancelled": "tl-sub",
}


def _order_tr(r: OrderRow) -> str:
    tag = " ↩" if r.reduce_only else ""
    title = esc(f"{r.client_order_id} · {r.strategy}" + (f" · {r.reason}" if r.reason else ""))
    tone = _STATUS_TONE.get(r.status.value, "")
    return (
        f'<tr data-coid="{esc(r.client_order_id)}" title="{title}">'
        + _cell(minute(r.created_at), "tl-l")
        + _cell(r.mode.value, "tl-l")
        + _cell(esc(r.symbol), "tl-l")
        + _cell(f'<span class="tl-side-{r.side.value}">{r.side.value.upper()}</span>{tag}', "tl-l")
        + _cell(r.type.value, "tl-l")
        + _cell(qty(r.quantity))
        + _cell(price(r.price))
        + _cell(qty(r.filled))
        + _cell(price(r.average_price))
        + _cell(f"{money(r.fee, places=4)} {esc(r.fee_currency or '')}".strip())
        + _cell(f'<span class="{tone}">{r.status.value.replace("_", " ")}</span>', "tl-l")
        + "</tr>"
    )


def _trade_tr(t: TradeRow) -> str:
    held = age((t.closed_at or t.opened_at) - t.opened_at)
    return (
        "<tr>"
        + _cell(minute(t.closed_at), "tl-l")
        + _cell(t.mode.value, "tl-l")
        + _cell(esc(t.symbol), "tl-l")
        + _cell(f'<span class="tl-side-{t.side.value}">{t.side.value.upper()}</span>', "tl-l")
        + _cell(qty(t.quantity))
        + _cell(price(t.entry))
        + _cell(_signed(t.realised, money(t.realised, signed=True)))
        + _cell(_signed(t.return_pct, pct(t.return_pct, signed=True)))
        + _cell(money(t.fees, places=4))
        + _cell(held)
        + "</tr>"
    )


def render_history(page: HistoryPage) -> str:
    """The history table of one page (orders or closed trades)."""
    if page.rows and isinstance(page.rows[0], TradeRow):
        body = [_trade_tr(r) for r in page.rows if isinstance(r, TradeRow)]
        return _scroll(_table(_TRADE_HEADERS, body, "No closed trade matches the filters."))
    body = [_order_tr(r) for r in page.rows if isinstance(r, OrderRow)]
    return _scroll(_table(_ORDER_HEADERS, body, "No order matches the filters."))


def render_pager(page: HistoryPage) -> str:
    """'page 2 of 7 · 98 rows'."""
    return (
        f'<span class="tl-pager">page {page.filter.page + 1} of {page.pages} · '
        f"{page.total:,d} row{'s' if page.total != 1 else ''}</span>"
    )
