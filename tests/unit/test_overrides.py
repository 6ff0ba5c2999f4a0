"""Risk-limit overrides: ranges, and which direction of each limit loosens it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tradelib.config import RiskSettings
from tradelib.errors import ConfigError
from tradelib.risk.overrides import ADJUSTABLE, Riskier, apply_overrides, plan_limit_change

BASE = RiskSettings()


@given(
    name=st.sampled_from(sorted(ADJUSTABLE)),
    factor=st.sampled_from(["0", "0.5", "0.9", "1.1", "1.5", "100"]),
)
def test_a_change_loosens_exactly_when_it_moves_the_riskier_way(name: str, factor: str) -> None:
    before = Decimal(getattr(BASE, name))
    after = before * Decimal(factor)
    if isinstance(getattr(BASE, name), int):
        after = after.to_integral_value()
    try:
        RiskSettings.model_validate({**BASE.model_dump(), name: after})
    except ValidationError:
        with pytest.raises(ConfigError, match="outside the allowed range"):
            plan_limit_change(BASE, {name: str(after)})
        return
    plan = plan_limit_change(BASE, {name: str(after)})
    if after == before:
        assert plan.changes == ()
        return
    (change,) = plan.changes
    higher = after > before
    assert change.loosens is (higher if ADJUSTABLE[name] is Riskier.HIGHER else not higher)
    assert plan.loosens is change.loosens
    assert apply_overrides(BASE, plan.overrides(BASE)) == plan.limits


def test_overrides_keep_only_what_differs_from_the_base() -> None:
    plan = plan_limit_change(BASE, {"max_position_pct": "20", "stop_loss_pct": "1.5"})
    assert plan.overrides(BASE) == {"stop_loss_pct": "1.5"}
    assert [c.name for c in plan.changes] == ["stop_loss_pct"]
    assert not plan.loosens  # a tighter stop risks less
