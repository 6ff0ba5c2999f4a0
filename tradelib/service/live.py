"""What has to pass before a live engine sends its first order, and the capital it may use.

1. The account's API key pair is stored encrypted (`tradelib secrets set-key`, label "main")
   and decrypts with the master key.
2. The key passes the permission check: read from the exchange, refused when withdrawals are
   enabled, spot trading is not, or no IP whitelist is set (unless a person accepted that
   risk, audited) — `tradelib.keycheck.require_safe_key`.
3. A person confirmed it with a second factor: a TOTP code given to `tradelib run`
   (`--totp-code` or the prompt), which records a go-live request and uses its one-time
   grant at once; or an unused grant from the dashboard's live toggle (confirmed there with
   a code, valid 5 minutes).
4. The capital is capped: `live_capital_usd`, or less if the person confirmed less. The
   limits the confirmation showed must still be the limits in force.

Every refusal says what is missing and is audited; nothing is sent to the exchange before all
four hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from tradelib.audit import AuditLog
from tradelib.config import Settings
from tradelib.control.kill import KEY_LABEL
from tradelib.domain import Mode
from tradelib.errors import NeedsPerson, SecretError
from tradelib.keycheck import require_safe_key
from tradelib.operations import consume_live_grant, effective_limits, mode_request, request_live
from tradelib.operations.mode import ModeRequest
from tradelib.secrets import Credentials, SecretBox, load_credentials, load_master_key
from tradelib.service.venue import Venue, open_live_venue
from tradelib.store import Store


@dataclass(frozen=True, slots=True)
class LiveStart:
    """A live venue that passed every check, the capital cap and how it was confirmed."""

    venue: Venue
    capital_usd: Decimal
    confirmed_by: str
    confirmed_at: datetime


def load_live_credentials(store: Store, exchange: str) -> Credentials:
    """The account's stored key pair, decrypted with the master key (env or OS keyring)."""
    return load_credentials(store, SecretBox(load_master_key()), exchange, KEY_LABEL)


def _confirmed_limits_hold(request: ModeRequest, settings: Settings, store: Store) -> list[str]:
    """Limits the person confirmed that are no longer the ones in force."""
    current = effective_limits(store, settings.risk, Mode.LIVE, settings.exchange.id)
    changed = []
    for name, confirmed in request.limits.items():
        if name not in type(current).model_fields:
            continue
        try:
            same = Decimal(str(getattr(current, name))) == Decimal(confirmed)
        except InvalidOperation:
            same = False
        if not same:
            changed.append(f"{name}: confirmed {confirmed}, now {getattr(current, name)}")
    return changed


async def open_live(
    settings: Settings,
    store: Store,
    *,
    totp_code: str | None,
    actor: str,
    now: datetime,
) -> LiveStart:
    """Open the live venue once every check passed; raise (audited) NeedsPerson otherwise."""
    try:
        return await _open_live(settings, store, totp_code, actor, now)
    except NeedsPerson as exc:
        payload = {"exchange": settings.exchange.id, "by": actor, "refused": str(exc)}
        AuditLog(store).record(actor, "live_start_refused", payload, now)
        store.append_event("live_start_refused", payload, now, source=actor)
        raise


async def _open_live(
    settings: Settings, store: Store, totp_code: str | None, actor: str, now: datetime
) -> LiveStart:
    exchange_id = settings.exchange.id
    credentials = load_live_credentials(store, exchange_id)
    venue = open_live_venue(settings, credentials)
    try:
        # Refuses (UnsafeApiKey, audited) a key that may withdraw, cannot trade or has no IP
        # whitelist, unless a person accepted that risk (`tradelib secrets accept-key-risk`).
        await require_safe_key(venue.exchange, store, label=KEY_LABEL, actor=actor, now=now)
        if totp_code:
            limits = effective_limits(store, settings.risk, Mode.LIVE, exchange_id)
            request_live(
                store, exchange_id, by=actor, reason="tradelib run --mode live", now=now,
                totp_code=totp_code, capital_usd=settings.live_capital_usd,
                limits=limits.model_dump(), key_problems=(),
            )  # fmt: skip
        else:
            pending = mode_request(store, exchange_id)
            if pending is None or not pending.grant_usable(now):
                raise SecretError(
                    "live trading not started: it needs a second factor: pass --totp-code (or "
                    "answer the prompt), or confirm going live on the dashboard first (the "
                    "confirmation is valid 5 minutes and used once)"
                )
            changed = _confirmed_limits_hold(pending, settings, store)
            if changed:
                raise SecretError(
                    "live trading not started: the risk limits changed since the go-live "
                    "confirmation (" + "; ".join(changed) + "); confirm again on the dashboard"
                )
        grant = consume_live_grant(store, exchange_id, by=actor, now=now)
        capital = settings.live_capital_usd
        if grant.capital_usd is not None:
            capital = min(capital, grant.capital_usd)
        payload = {
            "exchange": exchange_id, "by": actor, "capital_usd": str(capital),
            "confirmed_by": grant.by, "confirmed_at": grant.at.isoformat(),
        }  # fmt: skip
        AuditLog(store).record(actor, "live_engine_started", payload, now)
        return LiveStart(venue, capital, grant.by, grant.at)
    except BaseException:
        await venue.close()
        raise
