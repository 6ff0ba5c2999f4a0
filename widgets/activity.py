"""The account's activity as rows: the alert feed, commands to the engine, order and trade
history with its filters and pages (pure: records in, `widgets.model` rows out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from tradelib.domain import Order, OrderStatus, Position, PositionStatus
from tradelib.store import CommandRecord, EventRecord
from widgets.model import (
    AlertRow,
    CommandRow,
    HistoryFilter,
    HistoryPage,
    HistoryView,
    OrderRow,
    TradeRow,
)

OPEN_STATUSES = frozenset(s for s in OrderStatus if not s.is_terminal)


# Events worth a line in the feed besides alerts: what people did and what the kill switch did.
_FEED: dict[str, str] = {
    "kill_switch_engaged": "critical",
    "kill_enforced": "critical",
    "kill_switch_release": "warning",
    "kill_switch_release_refused": "warning",
    "go_live_requested": "critical",
    "go_live_refused": "warning",
    "live_grant_used": "critical",
    "back_to_paper_requested": "info",
    "strategy_paused": "warning",
    "strategy_resumed": "info",
    "limits_changed": "warning",
    "limits_change_refused": "warning",
    "command_sent": "info",
    "breaker_reset": "warning",
    "breaker_reset_refused": "warning",
    "order_refused": "warning",
    "reconcile_failed": "critical",
}
FEED_KINDS = frozenset(_FEED)


def _feed_text(kind: str, p: Mapping[str, Any]) -> str:
    who = p.get("by") or ""
    why = p.get("reason") or ""
    if kind == "kill_switch_engaged":
        return str(p.get("result") or f"kill switch engaged by {who}: {why}")
    if kind == "kill_enforced":
        actions = p.get("actions") or []
        failed = [a for a in actions if "FAILED" in str(a.get("result", ""))]
        text = f"kill switch enforced: {len(actions)} action(s)"
        if failed or p.get("problems"):
            text += f", {len(failed)} failed; problems: {'; '.join(p.get('problems') or [])}"
        return text
    if kind in ("kill_switch_release", "kill_switch_release_refused"):
        return str(p.get("result") or kind)
    if kind == "go_live_requested":
        return f"LIVE requested by {who} (cap ${p.get('capital_usd')}): {why}"
    if kind == "go_live_refused":
        return f"going live refused for {who}: {p.get('refused')}"
    if kind == "live_grant_used":
        return f"live grant of {p.get('granted_by')} used by {who}: the engine trades LIVE"
    if kind == "back_to_paper_requested":
        return f"back to PAPER requested by {who}: {why}"
    if kind in ("strategy_paused", "strategy_resumed"):
        verb = "paused" if kind == "strategy_paused" else "resumed"
        return f"entries {verb} by {who}: {why}"
    if kind in ("limits_changed", "limits_change_refused"):
        changes = ", ".join(
            f"{c.get('limit')} {c.get('before')}→{c.get('after')}" for c in p.get("changes") or []
        )
        if kind == "limits_changed":
            return f"limits changed by {who}: {changes} ({why})"
        return f"limit change refused for {who}: {changes}: {p.get('refused')}"
    if kind == "command_sent":
        target = p.get("payload") or {}
        what = target.get("symbol") or target.get("client_order_id") or ""
        return f"{who} sent {p.get('kind')} {what}: {why}"
    if kind == "order_refused":
        request = p.get("request") or {}
        reasons = "; ".join(p.get("reasons") or [])
        return f"order refused {request.get('side', '')} {request.get('symbol', '')}: {reasons}"
    if kind == "reconcile_failed":
        return f"reconciliation failed, trading halted: {p.get('error')}"
    if kind.startswith("breaker_reset"):
        return str(p.get("message") or p.get("refused") or f"{p.get('breaker')} reset by {who}")
    return kind.replace("_", " ")


def alert_rows(events: Iterable[EventRecord], limit: int = 100) -> tuple[AlertRow, ...]:
    """Alerts and people's actions, newest first, one row per event."""
    rows: dict[int, AlertRow] = {}
    for event in events:
        p = event.payload or {}
        if event.kind == "alert":
            rows[event.id] = AlertRow(
                event.id,
                event.at,
                str(p.get("severity") or "info"),
                str(p.get("kind") or ""),
                str(p.get("message") or ""),
                event.source,
            )
        elif event.kind in _FEED:
            rows[event.id] = AlertRow(
                event.id,
                event.at,
                _FEED[event.kind],
                event.kind,
                _feed_text(event.kind, p),
                event.source,
            )
    ordered = sorted(rows.values(), key=lambda r: (r.at, r.id), reverse=True)
    return tuple(ordered[:limit])


def command_rows(commands: Iterable[CommandRecord]) -> tuple[CommandRow, ...]:
    """Commands with what they targeted and what came of them, newest first."""
    rows = []
    for c in commands:
        target = str(c.payload.get("symbol") or c.payload.get("client_order_id") or "")
        result = ""
        if c.result:
            result = str(c.result.get("error") or c.result.get("message") or c.result)
        rows.append(
            CommandRow(
                c.id, c.kind.value, target, c.status, c.requested_by, c.reason, c.created_at, result
            )
        )
    return tuple(sorted(rows, key=lambda r: r.id, reverse=True))


# -- history -----------------------------------------------------------------------------------


def order_row(order: Order) -> OrderRow:
    """An order as the history and the cancel list show it."""
    return OrderRow(
        client_order_id=order.client_order_id,
        created_at=order.created_at,
        mode=order.mode,
        strategy=order.strategy_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        price=order.price,
        filled=order.filled_quantity,
        average_price=order.average_price,
        fee=order.fee,
        fee_currency=order.fee_currency,
        status=order.status,
        reduce_only=order.reduce_only,
        reason=order.reason,
    )


def trade_row(position: Position) -> TradeRow:
    """A closed position as one round trip of the history."""
    return TradeRow(
        opened_at=position.opened_at,
        closed_at=position.closed_at,
        mode=position.mode,
        strategy=position.strategy_id,
        symbol=position.symbol,
        side=position.side,
        quantity=position.quantity,
        entry=position.average_entry,
        realised=position.realized_pnl,
        fees=position.fees,
    )


# "open" gathers every state an order can still fill in; the rest are OrderStatus values.
ORDER_STATUS_CHOICES: tuple[str, ...] = ("open", *(s.value for s in OrderStatus))
TRADE_STATUS_CHOICES: tuple[str, ...] = ("won", "lost")


def _in_range(at: datetime, start: date | None, end: date | None) -> bool:
    day = at.date()
    return (start is None or day >= start) and (end is None or day <= end)


def _order_matches(row: OrderRow, status: str | None) -> bool:
    if status is None:
        return True
    if status == "open":
        return row.status in OPEN_STATUSES
    return row.status.value == status


def _trade_matches(row: TradeRow, status: str | None) -> bool:
    if status is None:
        return True
    return (row.realised > 0) if status == "won" else (row.realised <= 0)


def history_page(
    orders: Sequence[Order], closed: Sequence[Position], wanted: HistoryFilter
) -> HistoryPage:
    """Filter (symbol, status, mode, date range), newest first, and cut out the wanted page.

    A page past the end shows the last page, so a filter that shrinks the list never leaves
    the table empty on a page that no longer exists.
    """
    rows: Sequence[OrderRow | TradeRow]
    if wanted.view is HistoryView.ORDERS:
        base = [order_row(o) for o in orders]
        symbols = sorted({r.symbol for r in base})
        order_rows = [
            r
            for r in base
            if (wanted.symbol is None or r.symbol == wanted.symbol)
            and (wanted.mode is None or r.mode is wanted.mode)
            and _order_matches(r, wanted.status)
            and _in_range(r.created_at, wanted.start, wanted.end)
        ]
        order_rows.sort(key=lambda r: r.created_at, reverse=True)
        rows = order_rows
    else:
        trades = [trade_row(p) for p in closed if p.status is PositionStatus.CLOSED]
        symbols = sorted({t.symbol for t in trades})
        trade_rows = [
            t
            for t in trades
            if (wanted.symbol is None or t.symbol == wanted.symbol)
            and (wanted.mode is None or t.mode is wanted.mode)
            and _trade_matches(t, wanted.status)
            and _in_range(t.closed_at or t.opened_at, wanted.start, wanted.end)
        ]
        trade_rows.sort(key=lambda t: t.closed_at or t.opened_at, reverse=True)
        rows = trade_rows
    size = max(1, wanted.page_size)
    last_page = max(0, (len(rows) - 1) // size)
    page = min(max(0, wanted.page), last_page)
    shown = HistoryFilter(
        wanted.view,
        wanted.symbol,
        wanted.status,
        wanted.mode,
        wanted.start,
        wanted.end,
        page,
        size,
    )
    return HistoryPage(
        shown, tuple(rows[page * size : (page + 1) * size]), len(rows), tuple(symbols)
    )
