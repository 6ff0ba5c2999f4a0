"""ExecutionRequest.from_decision: the order a risk decision allows, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tradelib.domain import OrderType, Side, SignalKind, StrategyId, TimeInForce
from tradelib.errors import KillSwitchEngaged
from tradelib.orders import ExecutionRequest
from tradelib.risk import OrderIntent, RejectCause, RiskAction, RiskDecision

NOW = datetime(2026, 4, 1, tzinfo=UTC)
D = Decimal


def decision(
    kind: SignalKind,
    limit: Decimal | None,
    action: RiskAction = RiskAction.RESIZE,
    stop: Decimal | None = None,
) -> RiskDecision:
    side = Side.BUY if kind is SignalKind.ENTRY else Side.SELL
    size = {"notional": D(2000)} if kind is SignalKind.ENTRY else {}
    intent = OrderIntent(
        StrategyId("s"), "ARB/USDT", side, kind, stop_price=stop, reason="why", **size
    )
    quantity = D(0) if action is RiskAction.REJECT else D("1999.9")
    return RiskDecision(
        action, intent, quantity, D(2000), D(1), NOW, ("sized", "capped"),
        cause=RejectCause.KILL_SWITCH if action is RiskAction.REJECT else None,
        limit_price=limit,
    )  # fmt: skip


def test_an_entry_is_a_limit_ioc_at_the_decisions_band_with_the_strategys_stop() -> None:
    request = ExecutionRequest.from_decision(
        decision(SignalKind.ENTRY, D("1.0053"), stop=D("0.95")), "entry:k"
    )
    assert (request.type, request.time_in_force, request.price) == (
        OrderType.LIMIT,
        TimeInForce.IOC,
        D("1.0053"),
    )
    assert request.quantity == D("1999.9") and not request.reduce_only
    assert request.stop_price == D("0.95") and request.reason == "why"
    assert request.as_json()["risk_reasons"] == ["sized", "capped"]


def test_an_exit_is_reduce_only_and_goes_at_market_only_without_a_band() -> None:
    banded = ExecutionRequest.from_decision(decision(SignalKind.EXIT, D("0.995")), "x")
    assert banded.reduce_only and banded.type is OrderType.LIMIT and banded.price == D("0.995")
    blind = ExecutionRequest.from_decision(decision(SignalKind.EXIT, None), "y")
    assert blind.reduce_only and blind.type is OrderType.MARKET and blind.price is None


def test_a_refused_decision_builds_no_order() -> None:
    with pytest.raises(KillSwitchEngaged, match="refused"):
        ExecutionRequest.from_decision(decision(SignalKind.ENTRY, None, RiskAction.REJECT), "z")
