"""Risk-limit overrides a person sets on a running account: which limits, which way is riskier.

Pure: no store, no clock. A change that loosens a limit (more risk: a bigger position, a
larger daily loss, fewer stablecoins kept) needs a second factor; tightening never does, so
a person can always make trading safer with one click. Every value must stay inside the
range `RiskSettings` allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from tradelib.config import RiskSettings
from tradelib.errors import ConfigError


class Riskier(StrEnum):
    """Which direction of a limit puts more money at risk."""

    HIGHER = "higher"
    LOWER = "lower"


# The limits a person may adjust on a running account, and which way loosens them.
ADJUSTABLE: dict[str, Riskier] = {
    "max_position_pct": Riskier.HIGHER,
    "max_portfolio_heat_pct": Riskier.HIGHER,
    "max_open_positions": Riskier.HIGHER,
    "stop_loss_pct": Riskier.HIGHER,
    "daily_loss_limit_pct": Riskier.HIGHER,
    "max_consecutive_losses": Riskier.HIGHER,
    "drawdown_pause_pct": Riskier.HIGHER,
    "max_slippage_pct": Riskier.HIGHER,
    "min_account_balance_usd": Riskier.LOWER,
    "stablecoin_reserve_pct": Riskier.LOWER,
}


@dataclass(frozen=True, slots=True)
class LimitChange:
    """One limit moving from `before` to `after`, and whether that loosens it."""

    name: str
    before: Decimal
    after: Decimal
    loosens: bool


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """The limits after a requested change, and what changed."""

    limits: RiskSettings
    changes: tuple[LimitChange, ...]

    @property
    def loosens(self) -> bool:
        """True when any change puts more money at risk (a second factor is needed)."""
        return any(c.loosens for c in self.changes)

    def overrides(self, base: RiskSettings) -> dict[str, str]:
        """The fields that differ from `base`, as exact text for the controls table."""
        ours, theirs = self.limits.model_dump(), base.model_dump()
        return {k: str(v) for k, v in ours.items() if k in ADJUSTABLE and v != theirs[k]}


def _number(name: str, value: Any) -> Decimal:
    if isinstance(value, float | bool):
        raise ConfigError(f"limit {name}: give an exact number as text or Decimal, not {value!r}")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"limit {name}: {value!r} is not a number") from None
    if not number.is_finite():
        raise ConfigError(f"limit {name}: {value!r} is not a finite number")
    return number


def apply_overrides(base: RiskSettings, overrides: Mapping[str, Any]) -> RiskSettings:
    """`base` with `overrides` applied; ConfigError names any unknown or out-of-range limit."""
    return plan_limit_change(base, overrides).limits


def plan_limit_change(current: RiskSettings, requested: Mapping[str, Any]) -> LimitPlan:
    """Validate `requested` against the allowed ranges and say which changes loosen a limit."""
    unknown = sorted(set(requested) - set(ADJUSTABLE))
    if unknown:
        raise ConfigError(
            f"limit(s) {unknown} cannot be adjusted on a running account; adjustable: "
            f"{', '.join(sorted(ADJUSTABLE))}"
        )
    numbers = {name: _number(name, value) for name, value in requested.items()}
    for name, number in numbers.items():
        if isinstance(getattr(current, name), int) and number != number.to_integral_value():
            raise ConfigError(f"limit {name}: {number} must be a whole number")
    typed = {
        name: int(n) if isinstance(getattr(current, name), int) else n
        for name, n in numbers.items()
    }
    try:
        limits = RiskSettings.model_validate({**current.model_dump(), **typed})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"limit change refused, outside the allowed range: {problems}") from None
    changes: list[LimitChange] = []
    for name in sorted(typed):
        before, after = Decimal(getattr(current, name)), Decimal(getattr(limits, name))
        if before == after:
            continue
        riskier = after > before if ADJUSTABLE[name] is Riskier.HIGHER else after < before
        changes.append(LimitChange(name, before, after, riskier))
    return LimitPlan(limits, tuple(changes))
