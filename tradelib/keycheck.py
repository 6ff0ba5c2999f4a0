"""The live start-up's API key check: read the key's permissions, refuse an unsafe key.

`require_safe_key` is what every path that starts trading live calls first (the engine
runner, the dashboard's live toggle, `tradelib secrets check-key`). It asks the exchange what
the key may do (`Exchange.fetch_api_restrictions`), judges it (`risk.key_permissions`), records
the result in the store's `key_checks` table and the audit log, and raises `UnsafeApiKey`
unless every refusing problem is accepted by an override.

An override names the problem codes a person accepts, and why. It is given per call
(`KeyOverride`) or stored for the key with `accept_key_risk` (needs a TOTP code, audited),
so a scheduled start-up honours it without anybody at the keyboard. A stored override lapses
when the key is replaced, and never covers a problem it does not name: a key that later gets
withdrawals turned on is refused again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradelib.audit import AuditLog
from tradelib.domain import ApiKeyRestrictions, require_utc
from tradelib.errors import ConfigError, DataError, TradelibError, UnsafeApiKey
from tradelib.logs import get_logger
from tradelib.risk.key_permissions import (
    KeyProblem,
    evaluate_key,
    parse_codes,
    refusing,
)

if TYPE_CHECKING:
    from tradelib.exchange.base import Exchange
    from tradelib.store import Store

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KeyOverride:
    """A person's decision to trade live despite the named key problems, and why."""

    accept: frozenset[str]
    reason: str

    @classmethod
    def of(cls, accept: Iterable[str], reason: str) -> KeyOverride:
        """Validated override: overridable codes only, and a reason (it goes into the audit)."""
        if not reason or not reason.strip():
            raise ConfigError("a key override needs a reason: it goes into the audit log")
        try:
            codes = parse_codes(accept)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not codes:
            raise ConfigError("a key override must name at least one problem code to accept")
        return cls(frozenset(c.value for c in codes), reason.strip())


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The outcome of one key check; `verdict` is 'safe', 'overridden' or 'refused'."""

    exchange: str
    label: str
    restrictions: ApiKeyRestrictions
    problems: tuple[KeyProblem, ...]
    verdict: str
    check_id: int
    override: KeyOverride | None = None

    @property
    def allowed(self) -> bool:
        """True when live trading may start with this key."""
        return self.verdict != "refused"


def override_key(exchange: str, label: str) -> str:
    """Control key of a stored override."""
    return f"key_override:{exchange}:{label}"


def accept_key_risk(
    store: Store,
    exchange: str,
    label: str,
    override: KeyOverride,
    *,
    actor: str,
    now: datetime,
    totp_code: str | None,
) -> None:
    """Store `override` for (exchange, label), bound to the stored key; needs a TOTP code."""
    from tradelib.secrets import use_totp

    now = require_utc(now, "override time")
    use_totp(store, totp_code, now, f"accepting key risks {sorted(override.accept)}", actor)
    record = store.get_api_key(exchange, label)
    value = {
        "accept": sorted(override.accept),
        "reason": override.reason,
        "by": actor,
        "at": now,
        "key_created_at": record.created_at if record and record.created_at else None,
    }
    with store.transaction():
        store.set_control(override_key(exchange, label), value, now, actor)
        payload = {"exchange": exchange, "label": label, **value}
        AuditLog(store).record(actor, "key_override_set", payload, now)


def clear_key_risk(store: Store, exchange: str, label: str, *, actor: str, now: datetime) -> bool:
    """Remove a stored override (no second factor: this only makes things stricter)."""
    key = override_key(exchange, label)
    with store.transaction():
        had = store.get_control(key) is not None
        if had:
            store.set_control(key, {}, now, actor)
            AuditLog(store).record(
                actor, "key_override_cleared", {"exchange": exchange, "label": label}, now
            )
    return had


def stored_override(store: Store, exchange: str, label: str) -> KeyOverride | None:
    """The stored override of (exchange, label), unless the key was replaced since."""
    value = store.get_control(override_key(exchange, label))
    if not value or not value.get("accept"):
        return None
    record = store.get_api_key(exchange, label)
    bound = value.get("key_created_at")
    replaced = (
        bound is not None
        and record is not None
        and record.created_at is not None
        and datetime.fromisoformat(bound) != record.created_at
    )
    if replaced:
        log.warning("key override lapsed: the key was replaced", exchange=exchange, label=label)
        return None
    return KeyOverride(frozenset(value["accept"]), str(value.get("reason", "")))


async def require_safe_key(
    exchange: Exchange,
    store: Store,
    *,
    label: str = "main",
    override: KeyOverride | None = None,
    actor: str,
    now: datetime,
) -> KeyCheck:
    """Check the key `exchange` trades with; UnsafeApiKey unless it is safe or overridden.

    Reads the permissions from the exchange, records the check (key_checks table) and audits
    it ('key_check_safe', 'key_check_overridden', 'key_check_refused'; 'key_check_failed'
    when the exchange cannot be asked, and that error is re-raised). `override` defaults to
    the override stored with `accept_key_risk` for (exchange.id, label).
    """
    now = require_utc(now, "key check time")
    if not actor:
        raise DataError("require_safe_key needs the actor: who starts live trading is audited")
    audit = AuditLog(store)
    try:
        restrictions = await exchange.fetch_api_restrictions()
    except TradelibError as exc:
        failed = {"exchange": exchange.id, "label": label, "error": str(exc)}
        audit.record(actor, "key_check_failed", failed, now)
        log.error("key check failed", exchange=exchange.id, label=label, error=str(exc))
        raise
    if override is None:
        override = stored_override(store, exchange.id, label)
    accepted = override.accept if override else frozenset()
    problems = tuple(evaluate_key(restrictions))
    blocking = refusing(problems, accepted)
    used = {p.code.value for p in problems} & accepted
    verdict = "refused" if blocking else "overridden" if used else "safe"
    payload: dict[str, Any] = {
        "exchange": exchange.id,
        "label": label,
        "verdict": verdict,
        "problems": [p.code.value for p in problems],
        "accepted": sorted(used),
        "override_reason": override.reason if override and used else None,
        "restrictions": restrictions.as_json(),
    }
    with store.transaction():
        check_id = store.record_key_check(
            exchange.id, label, now, actor, verdict, restrictions.as_json(),
            [p.as_json() for p in problems], payload["override_reason"],
        )  # fmt: skip
        audit.record(actor, f"key_check_{verdict}", {**payload, "check_id": check_id}, now)
    check = KeyCheck(exchange.id, label, restrictions, problems, verdict, check_id, override)
    if verdict == "refused":
        log.error("live trading refused: unsafe API key", exchange=exchange.id, label=label,
                  problems=[p.code.value for p in blocking])  # fmt: skip
        raise UnsafeApiKey(refusal_message(check, blocking), tuple(p.code for p in blocking))
    if verdict == "overridden":
        log.warning("unsafe API key accepted by override", exchange=exchange.id, label=label,
                    accepted=sorted(used), reason=payload["override_reason"])  # fmt: skip
    return check


def refusal_message(check: KeyCheck, blocking: list[KeyProblem]) -> str:
    """What is wrong with the key and the two ways forward (fix it, or accept named codes)."""
    lines = [f"live trading refused: the {check.exchange} API key '{check.label}' is not safe:"]
    lines += [f"  - {p.code.value}: {p.message}" for p in blocking]
    codes = [p.code.value for p in blocking if p.severity.value == "refuse"]
    if codes:
        accept = " ".join(f"--accept {c}" for c in codes)
        lines.append(
            "Fix the key on the exchange and check again (`tradelib secrets check-key`), or "
            f"accept these risks: `tradelib secrets accept-key-risk {accept} --reason ... "
            "--code <TOTP>` (audited)"
        )
    else:
        lines.append("Fix the key on the exchange and check again (`tradelib secrets check-key`)")
    return "\n".join(lines)
