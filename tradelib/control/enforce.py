"""Enforcing an engaged kill switch: cancel every open order, then (flatten) close positions.

`enforce_kill` gathers the open orders from both sides — the store's non-terminal orders
of this (mode, exchange) and the exchange's open orders of every symbol involved — asks the
pure `kill_plan` what to do, and does it:

* A stored order is cancelled through the executor, so the cancel and any fill before it are
  durable. Paper mode only: an order the paper venue of this process does not know (the venue
  that held it lived in another, stopped process) is marked cancelled in the store.
* An order only the exchange knows is cancelled on the exchange directly and an event records it.
* A position is closed with a reduce-only limit IOC inside `settings.risk.max_slippage_pct` of the
  touch (bid for sells, ask for buys), sent through `executor.submit` with the intent key
  ``kill:{since}:{symbol}:{quantity}``: a re-run for the same position finds the order it
  already sent instead of doubling the close, and a position left partly open gets a new close.

One failing step never stops the others; each returned `KillAction`'s reason ends with what
happened to it. Nothing here waits for the engine: it is plain async code over the store and
the exchange object it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from tradelib.alerts import Alert, AlertKind, Severity
from tradelib.control.risk_control import KILL_INTENT_PREFIX, RiskControl
from tradelib.domain import (
    ClientOrderId,
    Market,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StrategyId,
    TimeInForce,
)
from tradelib.errors import OrderNotFound, TradelibError
from tradelib.exchange.base import Exchange
from tradelib.logs import get_logger
from tradelib.orders.executor import OrderExecutor
from tradelib.orders.request import ExecutionRequest
from tradelib.risk.killswitch import KillAction, KillActionKind, KillSwitchState, kill_plan

log = get_logger(__name__)

_OPEN = [s for s in OrderStatus if not s.is_terminal]


def kill_intent_key(state: KillSwitchState, symbol: str, quantity: Decimal) -> str:
    """Deterministic intent key of the close of `quantity` `symbol` under this engagement."""
    since = state.since.isoformat() if state.since else "unknown"
    return f"{KILL_INTENT_PREFIX}{since}:{symbol}:{quantity.normalize():f}"


async def _open_orders(
    control: RiskControl,
    exchange: Exchange,
    symbols: set[str],
    sweep: bool,
    problems: list[str],
) -> tuple[dict[str, Order], dict[str, Order]]:
    """(stored non-terminal orders, exchange-only open orders) by client order id."""
    stored: dict[str, Order] = {
        o.client_order_id: o
        for o in control.store.list_orders(
            statuses=_OPEN, mode=control.mode, exchange=control.exchange_id
        )
    }
    unknown: dict[str, Order] = {}
    # Per symbol is cheap (Binance: weight 6 vs 80); a caller that does not know the engine's
    # symbols (CLI, notebook) gets an extra sweep over every symbol so nothing is missed.
    queries: list[str | None] = [*sorted(symbols | {o.symbol for o in stored.values()})]
    if sweep:
        queries.append(None)
    for symbol in queries:
        try:
            remote = await exchange.fetch_open_orders(symbol)
        except TradelibError as exc:
            what = symbol or "(all symbols)"
            problems.append(f"could not list open {what} orders on the exchange: {exc}")
            continue
        for order in remote:
            if order.client_order_id not in stored:
                unknown[order.client_order_id] = order
    return stored, unknown


async def _reference_prices(
    exchange: Exchange, positions: Sequence[Position], problems: list[str]
) -> dict[str, Decimal]:
    """The touch each close would hit: bid for closing longs, ask for closing shorts."""
    prices: dict[str, Decimal] = {}
    for symbol in sorted({p.symbol for p in positions if p.quantity > 0}):
        sides = {p.side.opposite for p in positions if p.symbol == symbol and p.quantity > 0}
        try:
            ticker = await exchange.fetch_ticker(symbol)
        except TradelibError as exc:
            problems.append(f"no {symbol} price for the slippage band: {exc}")
            continue
        touch = ticker.bid if sides == {Side.SELL} else ticker.ask if sides == {Side.BUY} else None
        price = touch if touch is not None and touch > 0 else ticker.last
        if price is not None and price > 0:
            prices[symbol] = price
    return prices


async def _cancel_stored(control: RiskControl, executor: OrderExecutor, order: Order) -> str:
    try:
        done = await executor.cancel(order.client_order_id)
    except OrderNotFound as exc:
        if control.mode is not Mode.PAPER:
            return f"FAILED: the exchange does not know it ({exc}); run `tradelib reconcile`"
        return _cancel_in_store(control, order.client_order_id, str(exc))
    return f"{done.status.value} (filled {done.filled_quantity} before the cancel)"


def _cancel_in_store(control: RiskControl, coid: ClientOrderId, why: str) -> str:
    """Paper only: the venue holding this order is gone; the store is the paper state."""
    now = control.clock()
    reason = "kill switch: paper venue that held the order is not running; cancelled in the store"
    with control.store.transaction():
        order = control.store.get_order(coid, for_update=True)
        if order is None or order.status.is_terminal:
            return f"already {order.status.value if order else 'gone'}"
        control.store.update_order(order.transition(OrderStatus.CANCELLED, now, reason))
        control.store.append_event(
            "order_cancelled",
            {"client_order_id": coid, "symbol": order.symbol, "reason": reason, "venue": why},
            now,
            source="kill_switch",
        )
    return "cancelled in the store (paper)"


async def _cancel_unknown(control: RiskControl, exchange: Exchange, order: Order) -> str:
    done = await exchange.cancel_order(order.client_order_id, order.symbol)
    control.store.append_event(
        "kill_cancelled_unknown_order",
        {
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "quantity": str(order.quantity),
            "price": None if order.price is None else str(order.price),
            "status": done.status.value,
            "filled": str(done.filled_quantity),
        },
        control.clock(),
        source="kill_switch",
    )
    return f"{done.status.value} on the exchange (the store did not know it; event recorded)"


async def _close(
    control: RiskControl, executor: OrderExecutor, action: KillAction, state: KillSwitchState
) -> str:
    assert action.side is not None and action.quantity is not None
    request = ExecutionRequest(
        strategy_id=StrategyId(action.strategy_id or "manual"),
        symbol=action.symbol,
        side=action.side,
        quantity=action.quantity,
        intent_key=kill_intent_key(state, action.symbol, action.quantity),
        type=action.order_type or OrderType.MARKET,
        price=action.limit_price,
        time_in_force=action.time_in_force or TimeInForce.IOC,
        reduce_only=True,
        reason=action.reason,
    )
    control.allow_kill_close(request)
    order = await executor.submit(request)
    return f"order {order.client_order_id} {order.status.value}, filled {order.filled_quantity}" + (
        f" at {order.average_price}" if order.average_price is not None else ""
    )


async def enforce_kill(
    control: RiskControl,
    executor: OrderExecutor,
    exchange: Exchange,
    positions: Sequence[Position],
    symbols: Iterable[str],
) -> list[KillAction]:
    """Cancel every open order and (flatten) close every position; each action with its outcome.

    Plain async code that never waits for the engine's loop or a strategy: the engine calls
    it each cycle while the switch is engaged (a no-op once nothing is left); the CLI, the
    dashboard and `tradelib.control.kill` call it with their own store handle and exchange
    connection. `symbols` are listed one by one on the exchange; empty means "unknown",
    and every symbol is swept. `positions` should be fresh (PositionManager.rebuild()).
    """
    state = control.kill_state()
    if not state.engaged:
        return []
    problems: list[str] = []
    live_positions = [p for p in positions if p.quantity > 0]
    given = set(symbols)
    wanted = given | {p.symbol for p in live_positions}
    stored, unknown = await _open_orders(control, exchange, wanted, not given, problems)
    prices: dict[str, Decimal] = {}
    markets: dict[str, Market] = {}
    if state.flatten and live_positions:
        try:
            markets = await exchange.load_markets()
        except TradelibError as exc:
            problems.append(f"markets not loaded (closes are not rounded to the tick): {exc}")
        prices = await _reference_prices(exchange, live_positions, problems)
    plan = kill_plan(
        state,
        [*stored.values(), *unknown.values()],
        live_positions,
        prices,
        control.settings.risk.max_slippage_pct,
        markets,
    )
    done: list[KillAction] = []
    for action in plan:
        try:
            if action.kind is KillActionKind.CANCEL_ORDER:
                coid = action.client_order_id
                assert coid is not None
                if coid in stored:
                    outcome = await _cancel_stored(control, executor, stored[coid])
                else:
                    outcome = await _cancel_unknown(control, exchange, unknown[coid])
            else:
                outcome = await _close(control, executor, action, state)
        except TradelibError as exc:
            outcome = f"FAILED: {type(exc).__name__}: {exc}"
        done.append(replace(action, reason=f"{action.reason} -> {outcome}"))
    _record(control, state, done, problems)
    return done


def _record(
    control: RiskControl, state: KillSwitchState, done: list[KillAction], problems: list[str]
) -> None:
    if not done and not problems:
        return  # nothing left to do: the engine calls this every cycle, keep the log quiet
    now = control.clock()
    payload: dict[str, Any] = {
        "since": state.since.isoformat() if state.since else None,
        "flatten": state.flatten,
        "actions": [{"kind": a.kind.value, "symbol": a.symbol, "result": a.reason} for a in done],
        "problems": problems,
        "mode": control.mode.value,
        "exchange": control.exchange_id,
    }
    control.store.append_event("kill_enforced", payload, now, source=control.actor)
    control.audit.record(control.actor, "kill_switch_enforce", payload, now)
    failed = [a.reason for a in done if "-> FAILED" in a.reason]
    if failed or problems:
        log.error("kill switch enforcement incomplete", failed=failed, problems=problems)
        message = "kill switch enforcement incomplete: " + "; ".join([*failed, *problems])
        control.alerts.emit(
            Alert(AlertKind.KILL_SWITCH, Severity.CRITICAL, message, now, data=payload)
        )
    else:
        log.warning("kill switch enforced", actions=len(done))
