"""The paper/live switch of an exchange account, as a control every process sees.

The dashboard's toggle (or the CLI) writes the request; the engine service that runs the
account (`tradelib run`) obeys it: on a live request it stops its paper engine and starts the
live one, on a paper request it stops trading live. Going live needs what a person must
confirm — the account, the capital cap and the limits it will trade with, a passed API-key
check, and a TOTP code — and the grant that results is used once: the service consumes it
when it starts the live engine, so an old grant cannot put money at risk again later.
Going back to paper needs no code. Every request, refusal and consumption is audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradelib.audit import AuditLog
from tradelib.domain import Mode, require_utc
from tradelib.errors import DataError, SecretError
from tradelib.operations.steering import _second_factor

if TYPE_CHECKING:
    from tradelib.store import Store

GRANT_TTL = timedelta(minutes=5)


def mode_key(exchange: str) -> str:
    """Control key of an exchange account's paper/live switch."""
    return f"mode:{exchange}"


@dataclass(frozen=True, slots=True)
class ModeRequest:
    """What a person asked the account to trade as, and (live) the terms they confirmed."""

    mode: Mode
    by: str
    reason: str
    at: datetime
    capital_usd: Decimal | None = None
    limits: dict[str, str] = field(default_factory=dict)
    grant_expires_at: datetime | None = None
    consumed_at: datetime | None = None
    consumed_by: str | None = None

    def grant_usable(self, now: datetime) -> bool:
        """True for a live request whose one-time grant is unused and not expired."""
        return (
            self.mode is Mode.LIVE
            and self.consumed_at is None
            and self.grant_expires_at is not None
            and require_utc(now, "grant check time") <= self.grant_expires_at
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the controls table."""
        return {
            "mode": self.mode.value,
            "by": self.by,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "capital_usd": None if self.capital_usd is None else str(self.capital_usd),
            "limits": dict(self.limits),
            "grant_expires_at": _iso(self.grant_expires_at),
            "consumed_at": _iso(self.consumed_at),
            "consumed_by": self.consumed_by,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModeRequest:
        """Inverse of `to_dict`."""
        capital = data.get("capital_usd")
        return cls(
            mode=Mode(data["mode"]),
            by=str(data["by"]),
            reason=str(data["reason"]),
            at=datetime.fromisoformat(data["at"]),
            capital_usd=None if capital is None else Decimal(capital),
            limits=dict(data.get("limits") or {}),
            grant_expires_at=_parse(data.get("grant_expires_at")),
            consumed_at=_parse(data.get("consumed_at")),
            consumed_by=data.get("consumed_by"),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def mode_request(store: Store, exchange: str) -> ModeRequest | None:
    """The account's last paper/live request, or None if nobody ever flipped it."""
    value = store.get_control(mode_key(exchange))
    return ModeRequest.from_dict(value) if value else None


def request_live(
    store: Store,
    exchange: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    totp_code: str | None,
    capital_usd: Decimal,
    limits: Mapping[str, Any],
    key_problems: Sequence[str],
) -> ModeRequest:
    """Ask the account to trade live; refused (audited, nothing changed) unless every check
    passed: a TOTP code, an API key whose check found no problem, a positive capital cap.

    `capital_usd` and `limits` are what the person was shown and confirmed; they are kept in
    the request so the audit log says exactly what was agreed to.
    """
    now = require_utc(now, "live request time")
    _require_text(by, reason)
    payload: dict[str, Any] = {
        "exchange": exchange, "by": by, "reason": reason, "capital_usd": str(capital_usd),
        "limits": {k: str(v) for k, v in limits.items()}, "key_problems": list(key_problems),
    }  # fmt: skip
    refusal: str | None = None
    if not capital_usd.is_finite() or capital_usd <= 0:
        refusal = f"the live capital cap must be a positive amount, got {capital_usd}"
    elif key_problems:
        refusal = "the API key check failed: " + "; ".join(key_problems)
    else:
        verified, why = _second_factor(store, totp_code, now, "going live", by)
        if not verified:
            refusal = why
    audit = AuditLog(store)
    if refusal is not None:
        with store.transaction():
            store.append_event("go_live_refused", {**payload, "refused": refusal}, now, by)
            audit.record(by, "go_live_refused", {**payload, "refused": refusal}, now)
        raise SecretError(f"going live refused: {refusal}")
    request = ModeRequest(
        Mode.LIVE, by, reason, now, capital_usd, {k: str(v) for k, v in limits.items()},
        grant_expires_at=now + GRANT_TTL,
    )  # fmt: skip
    with store.transaction():
        store.set_control(mode_key(exchange), request.to_dict(), now, by)
        store.append_event("go_live_requested", payload, now, source=by)
        audit.record(by, "go_live_requested", payload, now)
    return request


def request_paper(
    store: Store, exchange: str, *, by: str, reason: str, now: datetime
) -> ModeRequest:
    """Ask the account to stop trading live and trade paper; no second factor needed."""
    now = require_utc(now, "paper request time")
    _require_text(by, reason)
    request = ModeRequest(Mode.PAPER, by, reason, now)
    payload = {"exchange": exchange, "by": by, "reason": reason}
    with store.transaction():
        store.set_control(mode_key(exchange), request.to_dict(), now, by)
        store.append_event("back_to_paper_requested", payload, now, source=by)
        AuditLog(store).record(by, "back_to_paper_requested", payload, now)
    return request


def consume_live_grant(store: Store, exchange: str, *, by: str, now: datetime) -> ModeRequest:
    """Use the account's live grant once (the service starting its live engine).

    Raises SecretError when there is no live request, it was already used, or it expired:
    the person has to confirm again (TOTP) before money goes at risk.
    """
    now = require_utc(now, "grant use time")
    key = mode_key(exchange)
    with store.transaction():
        store.lock(key)
        request = mode_request(store, exchange)
        if request is None or request.mode is not Mode.LIVE:
            raise SecretError(f"{exchange}: nobody asked to go live (use the dashboard toggle)")
        if not request.grant_usable(now):
            why = "was already used" if request.consumed_at else "has expired"
            raise SecretError(
                f"{exchange}: the go-live confirmation of {request.by} at "
                f"{request.at.isoformat()} {why}; confirm again with a fresh TOTP code"
            )
        used = ModeRequest(
            request.mode, request.by, request.reason, request.at, request.capital_usd,
            request.limits, request.grant_expires_at, consumed_at=now, consumed_by=by,
        )  # fmt: skip
        store.set_control(key, used.to_dict(), now, by)
        payload = {"exchange": exchange, "by": by, "granted_by": request.by,
                   "granted_at": request.at.isoformat()}  # fmt: skip
        store.append_event("live_grant_used", payload, now, source=by)
        AuditLog(store).record(by, "live_grant_used", payload, now)
    return used


def _require_text(by: str, reason: str) -> None:
    if not by or not by.strip():
        raise DataError("say who flips the account (by)")
    if not reason or not reason.strip():
        raise DataError("say why (reason): it goes into the audit log")
