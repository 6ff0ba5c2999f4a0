"""TOTP second factor: each code is accepted once, wrong codes are rate-limited and audited.

`use_totp` is the one door every action that needs a second factor goes through (going live,
releasing the kill switch, resetting a live breaker, loosening a limit). It keeps, per TOTP
secret, the last accepted 30-second time step in the store's `totp_uses` table, so a code
used for one action is refused for any other within its window, by every process sharing the
store. The secret is identified there by a keyed fingerprint, never stored. Wrong (and
replayed) codes count towards a limit; reaching it locks the second factor for a while, during
which no code is even looked at. Every refusal is audited; the code itself never is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pyotp

from tradelib.audit import AuditLog
from tradelib.domain import require_utc
from tradelib.errors import SecretError
from tradelib.logs import get_logger, register_secret
from tradelib.secrets.sources import TOTP_SECRET_ENV, load_totp_secret

if TYPE_CHECKING:
    from tradelib.store import Store, TotpUseRecord

log = get_logger(__name__)

STEP_SECONDS = 30
MIN_SECRET_BITS = 128  # RFC 4226 R6; `tradelib secrets new-totp` makes 160
_FINGERPRINT_LABEL = b"tradelib totp fingerprint v1"


@dataclass(frozen=True, slots=True)
class TotpPolicy:
    """How tolerant the second factor is: clock drift, and the wrong-code rate limit."""

    valid_window: int = 1  # ± steps of clock drift accepted
    max_failures: int = 5  # wrong or replayed codes within `failure_window` before locking
    failure_window: timedelta = timedelta(minutes=5)
    lockout: timedelta = timedelta(minutes=15)


DEFAULT_POLICY = TotpPolicy()


def new_totp_secret() -> str:
    """A new base32 TOTP secret (160 bits) to enrol in an authenticator app."""
    return pyotp.random_base32()


def _secret_bytes(secret: str) -> bytes:
    text = secret.strip().replace(" ", "").upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise SecretError(
            f"the TOTP secret ({TOTP_SECRET_ENV} or the keyring) is not base32: enrol a new one "
            "with `tradelib secrets new-totp`"
        ) from None
    if len(raw) * 8 < MIN_SECRET_BITS:
        raise SecretError(
            f"the TOTP secret has {len(raw) * 8} bits, fewer than {MIN_SECRET_BITS}: a short "
            "secret can be guessed; enrol a new one with `tradelib secrets new-totp`"
        )
    return raw


def totp_fingerprint(secret: str) -> str:
    """A keyed fingerprint naming a TOTP secret in the store without revealing it."""
    return hmac.new(_secret_bytes(secret), _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def time_step(now: datetime) -> int:
    """The 30-second TOTP time step that contains `now`."""
    return int(require_utc(now, "TOTP time").timestamp()) // STEP_SECONDS


def matching_step(code: str, secret: str, now: datetime, valid_window: int = 1) -> int | None:
    """The time step whose code `code` is (within ±`valid_window` of `now`), else None."""
    register_secret(secret)
    text = (code or "").strip()
    if not text.isdigit() or len(text) != 6:
        return None
    totp = pyotp.TOTP(secret)
    center = time_step(now)
    for step in range(center - valid_window, center + valid_window + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), text):
            return step
    return None


def verify_totp(code: str, secret: str, now: datetime, valid_window: int = 1) -> bool:
    """True when `code` is the TOTP for `now` (±`valid_window` steps); records nothing."""
    return matching_step(code, secret, now, valid_window) is not None


def require_totp(code: str | None, secret: str, now: datetime, action: str) -> None:
    """Stateless check (no replay protection): prefer `use_totp` for anything that acts."""
    if not code:
        raise SecretError(f"{action} needs a TOTP code from your authenticator app")
    if not verify_totp(code, secret, now):
        raise SecretError(f"{action} refused: the TOTP code is wrong or expired")


def _decide(
    record: TotpUseRecord,
    step: int | None,
    now: datetime,
    action: str,
    actor: str,
    policy: TotpPolicy,
) -> tuple[TotpUseRecord, str | None, str]:
    """(new record, refusal message or None, audit reason) — the pure part of `use_totp`."""
    if record.locked_until is not None and now < record.locked_until:
        return (
            record,
            (
                f"{action} refused: the second factor is locked until "
                f"{record.locked_until:%Y-%m-%d %H:%M:%S} UTC after {policy.max_failures} wrong "
                "TOTP codes; wait, then use a fresh code (every attempt is audited)"
            ),
            "locked",
        )
    if step is not None and (record.last_step is None or step > record.last_step):
        accepted = replace(
            record, last_step=step, last_action=action, last_actor=actor, last_used_at=now,
            failures=0, window_started_at=None, locked_until=None, updated_at=now,
        )  # fmt: skip
        return accepted, None, "accepted"
    in_window = (
        record.window_started_at is not None
        and now - record.window_started_at < policy.failure_window
    )
    failures = (record.failures if in_window else 0) + 1
    started = record.window_started_at if in_window else now
    locked = now + policy.lockout if failures >= policy.max_failures else None
    failed = replace(
        record, failures=0 if locked else failures, window_started_at=None if locked else started,
        locked_until=locked, updated_at=now,
    )  # fmt: skip
    if step is None:
        why, reason = "the TOTP code is wrong or expired", "wrong"
    else:
        used = f" (last for {record.last_action})" if record.last_action else ""
        why = f"this TOTP code was already used or is older than the last one used{used}"
        why, reason = f"{why}; wait for the next code", "replayed"
    minutes = int(policy.failure_window.total_seconds() // 60)
    if locked is not None:
        message = (
            f"{action} refused: {why}. {policy.max_failures} failed codes within {minutes} "
            f"minutes: the second factor is locked until {locked:%Y-%m-%d %H:%M:%S} UTC"
        )
    else:
        left = policy.max_failures - failures
        message = f"{action} refused: {why} ({left} more failed codes lock the second factor)"
    return failed, message, reason


def use_totp(
    store: Store,
    code: str | None,
    now: datetime,
    action: str,
    actor: str,
    *,
    secret: str | None = None,
    policy: TotpPolicy = DEFAULT_POLICY,
) -> int:
    """Accept `code` once for `action` by `actor`; return its time step, else raise SecretError.

    Refused: a missing code (nothing recorded), a wrong or expired code, a code whose time step
    was already used (by any action, in any process sharing the store), and any code while the
    second factor is locked after too many failures. Refusals are recorded and audited in
    their own transaction before the error is raised; call this outside a transaction that may
    roll back, or the failure count rolls back with it. `secret` defaults to
    TRADELIB_TOTP_SECRET, then the OS keyring.
    """
    from tradelib.store import TotpUseRecord

    now = require_utc(now, "TOTP time")
    if not action or not actor:
        raise SecretError("use_totp needs the action and who acts (actor): both are audited")
    secret = secret or load_totp_secret()  # no factor configured: say that, not "no code"
    if not code or not str(code).strip():
        raise SecretError(f"{action} needs a TOTP code from your authenticator app")
    fingerprint = totp_fingerprint(secret)
    step = matching_step(str(code), secret, now, policy.valid_window)
    with store.transaction():
        store.lock(f"totp:{fingerprint}")  # two processes using one code: one wins
        record = store.get_totp_use(fingerprint) or TotpUseRecord(fingerprint, now)
        after, refusal, reason = _decide(record, step, now, action, actor, policy)
        store.put_totp_use(after)
        if refusal is not None:
            payload = {
                "action": action,
                "reason": reason,
                "totp": fingerprint[:12],
                "failures": after.failures,
                "locked_until": after.locked_until,
            }
            AuditLog(store).record(actor, "totp_refused", payload, now)
    if refusal is not None:
        log.warning("TOTP code refused", action=action, actor=actor, reason=reason)
        raise SecretError(refusal)
    assert step is not None
    return step
