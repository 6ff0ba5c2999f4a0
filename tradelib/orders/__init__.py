"""Orders: the durable executor and reconciliation with the exchange."""

from tradelib.orders.executor import MAX_ATTEMPTS, FillHandler, OrderExecutor
from tradelib.orders.reconcile import (
    HALT_CONTROL,
    Reconciler,
    ReconcileReport,
    halt_reason,
    set_halt,
)
from tradelib.orders.request import ExecutionRequest

__all__ = [
    "HALT_CONTROL",
    "MAX_ATTEMPTS",
    "ExecutionRequest",
    "FillHandler",
    "OrderExecutor",
    "ReconcileReport",
    "Reconciler",
    "halt_reason",
    "set_halt",
]
