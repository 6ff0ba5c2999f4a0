"""Pause/resume an account's entries and adjust its risk limits, through the store's controls.

Both are controls of one account (control keys "paused:<mode>:<exchange>" and
"limits:<mode>:<exchange>"), read by the account's engine every cycle, so a change made in
the dashboard or the CLI of any process takes effect on the engine's next cycle. Pausing
stops new entries only; exits, stops and the kill switch keep working. Every change is
audited with who and why; a refused change (loosening a limit without a valid second factor)
is audited too and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradelib.audit import AuditLog
from tradelib.config import RiskSettings
from tradelib.domain import Mode, require_utc
from tradelib.errors import DataError, SecretError
from tradelib.risk.overrides import LimitPlan, apply_overrides, plan_limit_change

if TYPE_CHECKING:
    from tradelib.store import Store


def pause_key(mode: Mode | str, exchange: str) -> str:
    """Control key of an account's pause switch."""
    return f"paused:{Mode(mode).value}:{exchange}"


def limits_key(mode: Mode | str, exchange: str) -> str:
    """Control key of an account's risk-limit overrides."""
    return f"limits:{Mode(mode).value}:{exchange}"


@dataclass(frozen=True, slots=True)
class PauseState:
    """Whether an account's entries are paused, since when, by whom and why."""

    paused: bool = False
    since: datetime | None = None
    by: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the controls table."""
        return {
            "paused": self.paused,
            "since": self.since.isoformat() if self.since else None,
            "by": self.by,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PauseState:
        """Inverse of `to_dict`."""
        since = data.get("since")
        return cls(
            paused=bool(data.get("paused")),
            since=datetime.fromisoformat(since) if since else None,
            by=data.get("by"),
            reason=data.get("reason"),
        )


def _who_and_why(by: str, reason: str) -> None:
    if not by or not by.strip():
        raise DataError("say who makes the change (by)")
    if not reason or not reason.strip():
        raise DataError("say why (reason): it goes into the audit log")


def pause_state(store: Store, mode: Mode | str, exchange: str) -> PauseState:
    """The account's pause switch as the store holds it now."""
    return pause_from(store.get_control(pause_key(mode, exchange)))


def pause_from(value: dict[str, Any] | None) -> PauseState:
    """The pause switch from its stored value (None: never set, not paused)."""
    return PauseState.from_dict(value) if value else PauseState()


def set_paused(
    store: Store, mode: Mode | str, exchange: str, paused: bool, by: str, reason: str,
    now: datetime,
) -> PauseState:  # fmt: skip
    """Pause (or resume) the account's new entries; audited. Returns the new state."""
    _who_and_why(by, reason)
    now = require_utc(now, "pause time")
    key = pause_key(mode, exchange)
    with store.transaction():
        store.lock(key)
        before = pause_state(store, mode, exchange)
        after = PauseState(True, before.since or now, by, reason) if paused else PauseState()
        store.set_control(key, after.to_dict(), now, by)
        action = "strategy_paused" if paused else "strategy_resumed"
        payload = {"mode": Mode(mode).value, "exchange": exchange, "by": by, "reason": reason,
                   "was_paused": before.paused}  # fmt: skip
        store.append_event(action, payload, now, source=by)
        AuditLog(store).record(by, action, payload, now)
    return after


def effective_limits(
    store: Store, base: RiskSettings, mode: Mode | str, exchange: str
) -> RiskSettings:
    """The account's limits now: `base` (settings) with the stored overrides applied."""
    return limits_from(base, store.get_control(limits_key(mode, exchange)))


def limits_from(base: RiskSettings, value: dict[str, Any] | None) -> RiskSettings:
    """`base` with the overrides of a stored limits value applied (None: no overrides)."""
    return apply_overrides(base, (value or {}).get("overrides", {}))


def change_limits(
    store: Store,
    base: RiskSettings,
    mode: Mode | str,
    exchange: str,
    requested: Mapping[str, Any],
    by: str,
    reason: str,
    now: datetime,
    totp_code: str | None = None,
) -> LimitPlan:
    """Adjust the account's limits inside the allowed ranges; loosening needs a TOTP code.

    `base` is the account's configured limits (settings); the plan is made against the
    limits in force now (base + earlier overrides). Raises ConfigError for an unknown or
    out-of-range limit and SecretError when a loosening change lacks a valid code; both are
    audited and change nothing.
    """
    _who_and_why(by, reason)
    now = require_utc(now, "limit change time")
    key = limits_key(mode, exchange)
    audit = AuditLog(store)
    with store.transaction():
        store.lock(key)
        current = effective_limits(store, base, mode, exchange)
        plan = plan_limit_change(current, requested)
        payload: dict[str, Any] = {
            "mode": Mode(mode).value,
            "exchange": exchange,
            "by": by,
            "reason": reason,
            "changes": [
                {
                    "limit": c.name,
                    "before": str(c.before),
                    "after": str(c.after),
                    "loosens": c.loosens,
                }
                for c in plan.changes
            ],
        }
        why = "tightening needs no second factor"
        if plan.loosens:
            verified, why = _second_factor(store, totp_code, now, "loosening a risk limit", by)
            payload["totp_verified"] = verified
        if payload.get("totp_verified", True):
            store.set_control(key, {"overrides": plan.overrides(base)}, now, by)
            store.append_event("limits_changed", payload, now, source=by)
            audit.record(by, "limits_changed", payload, now)
            return plan
        # The refusal is committed (audited) before the error reaches the caller.
        store.append_event("limits_change_refused", {**payload, "refused": why}, now, by)
        audit.record(by, "limits_change_refused", {**payload, "refused": why}, now)
    raise SecretError(f"limit change refused: {why}")


def _second_factor(
    store: Store, code: str | None, now: datetime, action: str, by: str
) -> tuple[bool, str]:
    """(verified, why not) for a TOTP code, accepted once; never returns or logs the code."""
    from tradelib.secrets import use_totp

    try:
        use_totp(store, code, now, action, by)
    except SecretError as exc:
        return False, str(exc)
    return True, "TOTP verified"
