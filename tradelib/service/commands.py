"""Carrying out the commands people send a running engine (close a position, cancel an order).

The service claims its account's commands on every control tick and runs each through the
engine's own executor — the one process that owns the account's orders and positions — so the
kill switch, breakers and the write-then-send discipline apply as to any other order. A close
goes through the risk manager like every exit (a reduce-only limit IOC inside the slippage band,
checked against the book), under an intent key starting ``command:<id>:close:``: an engine that
dies mid-command and a successor that claims it again find the same order instead of sending a
second one. Each outcome is recorded on the command (`finish_command`) and in the audit log
with who asked, why, and who carried it out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tradelib.audit import AuditLog
from tradelib.domain import ClientOrderId, Order, Position
from tradelib.engine.core import Engine
from tradelib.errors import CommandRefused, TradelibError
from tradelib.logs import get_logger
from tradelib.store.records import CommandKind, CommandRecord, CommandStatus

log = get_logger(__name__)


def _order_json(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "status": order.status.value,
        "quantity": str(order.quantity),
        "filled": str(order.filled_quantity),
        "average_price": None if order.average_price is None else str(order.average_price),
    }


def _held(engine: Engine, symbol: str, strategy_id: str) -> Position:
    for position in engine.positions.positions():
        if position.symbol == symbol and position.strategy_id == strategy_id:
            return position
    raise CommandRefused(
        f"no open {symbol} position of strategy {strategy_id} on "
        f"{engine.mode.value}/{engine.exchange_id}"
    )


async def _close(engine: Engine, command: CommandRecord) -> tuple[CommandStatus, dict[str, Any]]:
    symbol = str(command.payload["symbol"])
    strategy = str(command.payload["strategy_id"])
    if strategy != engine.strategy.strategy_id:
        raise CommandRefused(
            f"this engine runs strategy {engine.strategy.strategy_id}, not {strategy}: its "
            f"{symbol} position is not this engine's to close"
        )
    position = _held(engine, symbol, strategy)
    tag = f"command:{command.id}:close"
    report = await engine.close_position(
        symbol, tag, f"command {command.id} by {command.requested_by}: {command.reason}"
    )
    engine.flush_events()
    order = _order_of(engine, symbol, tag)
    if order is None:  # refused by risk (e.g. the book would fill it outside the band)
        raise CommandRefused("; ".join(report.rejected) or f"{symbol}: no exit order was made")
    done = order.filled_quantity >= position.quantity
    result: dict[str, Any] = {"order": _order_json(order), "closed": done}
    if not done:
        result["error"] = (
            f"filled {order.filled_quantity} of {position.quantity} inside the slippage band; "
            "the rest is still open: send the command again or widen max_slippage_pct"
        )
    return (CommandStatus.DONE if done else CommandStatus.FAILED), result


def _order_of(engine: Engine, symbol: str, tag: str) -> Order | None:
    """The newest order of this account whose intent key starts with `tag`."""
    for order in reversed(engine.store.list_orders(mode=engine.mode, symbol=symbol,
                                                   exchange=engine.exchange_id)):  # fmt: skip
        intent = engine.store.get_order_intent(order.client_order_id) or {}
        if str(intent.get("intent_key", "")).startswith(f"{tag}:"):
            return order
    return None


async def _cancel(engine: Engine, command: CommandRecord) -> tuple[CommandStatus, dict[str, Any]]:
    coid = ClientOrderId(str(command.payload["client_order_id"]))
    order = engine.store.get_order(coid)
    if order is None or order.mode is not engine.mode or order.exchange != engine.exchange_id:
        raise CommandRefused(
            f"order {coid} is not an order of {engine.mode.value}/{engine.exchange_id}"
        )
    if order.status.is_terminal:
        raise CommandRefused(f"order {coid} is already {order.status.value}: nothing to cancel")
    final = await engine.executor.cancel(coid)
    engine.flush_events()
    return CommandStatus.DONE, {"order": _order_json(final)}


_HANDLERS = {CommandKind.CLOSE_POSITION: _close, CommandKind.CANCEL_ORDER: _cancel}


async def execute_command(
    engine: Engine, command: CommandRecord, executed_by: str, now: datetime
) -> CommandRecord:
    """Carry out one claimed command; record and audit its outcome; returns the final row."""
    try:
        if not engine.markets:
            raise CommandRefused(
                "the engine has not reconciled with the exchange yet (trading is halted); "
                "the command was not carried out — see `tradelib status`"
            )
        status, result = await _HANDLERS[command.kind](engine, command)
    except CommandRefused as exc:
        status, result = CommandStatus.REFUSED, {"error": str(exc)}
    except TradelibError as exc:
        status, result = CommandStatus.FAILED, {"error": f"{type(exc).__name__}: {exc}"}
    payload = {
        "command_id": command.id,
        "kind": command.kind.value,
        "payload": command.payload,
        "requested_by": command.requested_by,
        "reason": command.reason,
        "executed_by": executed_by,
        "status": status.value,
        "result": result,
        "mode": engine.mode.value,
        "exchange": engine.exchange_id,
    }
    with engine.store.transaction():
        final = engine.store.finish_command(command.id, status, result, now)
        engine.store.append_event(f"command_{status.value}", payload, now, source=executed_by)
        AuditLog(engine.store).record(command.requested_by, f"command_{status.value}", payload, now)
    log.warning("engine command", id=command.id, kind=command.kind.value, status=status.value,
                by=command.requested_by)  # fmt: skip
    return final
