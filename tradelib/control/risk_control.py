"""`RiskControl`: the kill switch and circuit breakers, persistent in the store and enforced.

The pure state machines (`killswitch`, `breakers`) decide; this module keeps their state in the
store's `controls` table (keys "kill_switch" and "breakers"), so every process sharing the store
— engine, dashboard, CLI, notebook — sees the same switch, and reads it on every call: another
process may have engaged it a moment ago. Every change is audited (hash-chained), appended to
the events table and alerted; refused attempts (a release without a valid TOTP code, an order
refused by the guard) are audited too.

Rules the guard applies (`RiskControl.guard`, the executor's `guard`, called before an order is
written):

* Kill switch engaged: every entry is refused. An exit passes only if it cannot re-open
  exposure or rest on the book: it must be reduce-only, not a resting order (market, or a limit
  IOC/FOK — the switch promises an empty book), and close (part of) an open position this store
  holds for the same strategy and symbol (or be one of the closes `enforce_kill` sends).
* A breaker tripped: entries are refused with every tripped breaker's reason; reduce-only exits
  keep working (the design's "exits keep working").
* Trading halted by reconciliation (`tradelib.orders.halt_reason`): entries are refused with the
  halt's reason; exits keep working.

Releasing the kill switch always needs a TOTP code (TRADELIB_TOTP_SECRET). Resetting a breaker
lets entries flow again, i.e. puts money at risk: in LIVE mode it needs a TOTP code; in paper
mode it does not (no money is at stake and research iterations should stay quick).

Scope: the kill switch belongs to the store: engaged, it stops every engine on it (fail safe).
Breakers belong to one account, the control key "breakers:<mode>:<exchange>", so a paper run's
losses never block a live engine on the same store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradelib.alerts import Alert, AlertKind, AlertRouter, LogSink, Severity
from tradelib.audit import AuditLog
from tradelib.config import Settings
from tradelib.domain import Mode, OrderType, TimeInForce
from tradelib.errors import (
    BreakerTripped,
    KillSwitchEngaged,
    RiskRejected,
    SecretError,
    TradelibError,
)
from tradelib.logs import get_logger
from tradelib.orders.reconcile import halt_reason
from tradelib.orders.request import ExecutionRequest
from tradelib.risk.breakers import (
    Breaker,
    BreakerEvent,
    BreakerState,
    EventKind,
    Observation,
    reset,
    update,
)
from tradelib.risk.killswitch import KillSwitchState, KillSwitchTransition, engage, release
from tradelib.secrets import use_totp
from tradelib.webhooks import webhook_sinks

if TYPE_CHECKING:
    from tradelib.store import Store

log = get_logger(__name__)

KILL_CONTROL = "kill_switch"
BREAKERS_CONTROL = "breakers"
KILL_INTENT_PREFIX = "kill:"
_RESTING = frozenset({TimeInForce.GTC})


def kill_from(value: dict[str, Any] | None) -> KillSwitchState:
    """The kill switch from its stored KILL_CONTROL value (None: never set, released)."""
    return KillSwitchState.from_dict(value) if value else KillSwitchState()


class RiskControl:
    """Kill switch and breakers of one (mode, exchange), shared through the store."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        mode: Mode,
        exchange_id: str,
        clock: Callable[[], datetime],
        alerts: AlertRouter | None = None,
        actor: str = "engine",
    ) -> None:
        self.store = store
        self.settings = settings
        self.mode = mode
        self.exchange_id = exchange_id
        self.clock = clock
        self.alerts = alerts or AlertRouter([LogSink(), *webhook_sinks(settings.alerts)])
        self.actor = actor
        # Breakers measure one account: a paper run's losses must not stop a live engine (or
        # another paper venue) on the same store. The kill switch stays store-wide: fail safe.
        self.breakers_key = f"{BREAKERS_CONTROL}:{mode.value}:{exchange_id}"
        self.audit = AuditLog(store)
        self._kill_closes: dict[str, ExecutionRequest] = {}

    # -- kill switch ------------------------------------------------------------------------

    def kill_state(self) -> KillSwitchState:
        """The kill switch as the store holds it now (read on every call)."""
        return kill_from(self.store.get_control(KILL_CONTROL))

    def engage_kill(self, by: str, reason: str, flatten: bool = False) -> KillSwitchTransition:
        """Engage (or add flatten to) the switch: persisted, audited, alerted; no 2nd factor."""
        now = self.clock()
        with self.store.transaction():
            self.store.lock(KILL_CONTROL)  # engage and release of two processes serialise here
            before = self.kill_state()
            transition = engage(before, by, reason, now, flatten)
            if transition.accepted:
                self.store.set_control(KILL_CONTROL, transition.state.to_dict(), now, by)
            payload = {
                "by": by,
                "reason": reason,
                "flatten": flatten,
                "accepted": transition.accepted,
                "result": transition.reason,
                "state": transition.state.to_dict(),
                "mode": self.mode.value,
                "exchange": self.exchange_id,
            }
            self.store.append_event("kill_switch_engaged", payload, now, source=self.actor)
        self._audit_after(by, "kill_switch_engage", payload, now)
        log.error("kill switch engaged", by=by, reason=reason, flatten=transition.state.flatten)
        since = transition.state.since.isoformat() if transition.state.since else ""
        self._alert(
            AlertKind.KILL_SWITCH,
            Severity.CRITICAL,
            transition.reason,
            now,
            key=f"kill_switch:engaged:{since}:{transition.state.flatten}",
        )
        return transition

    def release_kill(self, by: str, reason: str, totp_code: str | None) -> KillSwitchTransition:
        """Release the switch with a valid TOTP code; a refusal is returned and audited too."""
        now = self.clock()
        verified, why = self._verify_totp(totp_code, now, "releasing the kill switch", by)
        with self.store.transaction():
            self.store.lock(KILL_CONTROL)
            before = self.kill_state()
            transition = release(before, by, reason, now, verified)
            if not verified and before.engaged:
                transition = replace(transition, reason=f"{transition.reason} ({why})")
            if transition.accepted:
                self.store.set_control(KILL_CONTROL, transition.state.to_dict(), now, by)
            action = "kill_switch_release" if transition.accepted else "kill_switch_release_refused"
            payload = {
                "by": by,
                "reason": reason,
                "totp_code_given": bool(totp_code),
                "totp_verified": verified,
                "accepted": transition.accepted,
                "result": transition.reason,
                "state_before": before.to_dict(),
                "mode": self.mode.value,
                "exchange": self.exchange_id,
            }
            self.store.append_event(action, payload, now, source=self.actor)
            self.audit.record(by, action, payload, now)
        if transition.accepted:
            log.warning("kill switch released", by=by, reason=reason)
            self._alert(AlertKind.KILL_SWITCH, Severity.WARNING, transition.reason, now)
        else:
            log.warning("kill switch release refused", by=by, result=transition.reason)
        return transition

    def allow_kill_close(self, request: ExecutionRequest) -> None:
        """Let `request` (a close built by the kill plan) pass this instance's guard."""
        self._kill_closes[request.intent_key] = request

    # -- circuit breakers -------------------------------------------------------------------

    def breaker_state(self) -> BreakerState:
        """The breakers as the store holds them now (read on every call)."""
        value = self.store.get_control(self.breakers_key)
        return BreakerState.from_dict(value) if value else BreakerState()

    def observe(self, observation: Observation, now: datetime | None = None) -> list[BreakerEvent]:
        """Feed one observation to the breakers; persist, audit trips, alert trips and warnings."""
        return self.observe_all([observation], now)

    def observe_all(
        self, observations: Sequence[Observation], now: datetime | None = None
    ) -> list[BreakerEvent]:
        """Feed observations to the breakers in order, in one transaction (one read, at most
        one write of the state); persist, audit trips, alert trips and warnings."""
        now = now or self.clock()
        trips: list[dict[str, Any]] = []
        events: list[BreakerEvent] = []
        unlocked = self.breaker_state()
        after = unlocked
        for observation in observations:
            after, seen = update(after, observation, now, self.settings.risk)
            if seen:
                break
        else:
            if after == unlocked:
                # Nothing to write: this read-only check stands at the moment of its read, so
                # it needs no lock (a cycle's observations are nearly all like this).
                return []
        with self.store.transaction():
            self.store.lock(self.breakers_key)  # read-modify-write shared by every process
            before = after = self.breaker_state()
            for observation in observations:
                after, seen = update(after, observation, now, self.settings.risk)
                events.extend(seen)
                for event in seen:
                    payload = {
                        "breaker": event.breaker.value,
                        "message": event.message,
                        "observation": repr(observation),
                        "mode": self.mode.value,
                        "exchange": self.exchange_id,
                    }
                    self.store.append_event(f"breaker_{event.kind.value}", payload, now, self.actor)
                    if event.kind is EventKind.TRIPPED:
                        trips.append(payload)
            if after != before:
                self.store.set_control(self.breakers_key, after.to_dict(), now, self.actor)
        for payload in trips:
            self._audit_after(self.actor, "breaker_tripped", payload, now)
        for event in events:
            if event.kind is EventKind.TRIPPED:  # the alert is the log line (sinks decide)
                self._alert(
                    AlertKind.BREAKER_TRIPPED,
                    Severity.CRITICAL,
                    f"{event.breaker.value} breaker tripped: {event.message}; new entries stop",
                    now,
                    key=f"breaker_tripped:{event.breaker.value}:{event.at.isoformat()}",
                )
            elif event.kind is EventKind.ALERT:
                self._alert(
                    AlertKind.DAILY_LOSS_WARNING,
                    Severity.WARNING,
                    event.message,
                    now,
                    key=f"daily_loss_warning:{now.date().isoformat()}",
                )
        return events

    def reset_breaker(
        self, breaker: Breaker | str, by: str, reason: str, totp_code: str | None
    ) -> BreakerState:
        """Reset one tripped breaker (a person's decision); LIVE mode needs a TOTP code.

        Raises SecretError (after auditing the refusal) when live and the code is missing or
        wrong. Resetting a breaker that is not tripped changes nothing and returns the state.
        """
        which = Breaker(breaker)
        now = self.clock()
        if self.mode is Mode.LIVE:
            verified, why = self._verify_totp(totp_code, now, f"resetting the {which} breaker", by)
            if not verified:
                payload = {
                    "breaker": which.value,
                    "by": by,
                    "reason": reason,
                    "totp_code_given": bool(totp_code),
                    "refused": why,
                    "mode": self.mode.value,
                }
                self.store.append_event("breaker_reset_refused", payload, now, self.actor)
                self.audit.record(by, "breaker_reset_refused", payload, now)
                raise SecretError(f"{which.value} breaker stays tripped: {why}")
        with self.store.transaction():
            self.store.lock(self.breakers_key)
            before = self.breaker_state()
            after, events = reset(before, which, by, now, reason)
            if after != before:
                self.store.set_control(self.breakers_key, after.to_dict(), now, by)
            for event in events:
                payload = {
                    "breaker": which.value,
                    "by": by,
                    "reason": reason,
                    "message": event.message,
                    "totp_required": self.mode is Mode.LIVE,
                    "mode": self.mode.value,
                    "exchange": self.exchange_id,
                }
                self.store.append_event("breaker_reset", payload, now, self.actor)
                self.audit.record(by, "breaker_reset", payload, now)
        for event in events:
            self._alert(AlertKind.BREAKER_TRIPPED, Severity.WARNING, event.message, now)
        return after

    # -- the executor's guard ---------------------------------------------------------------

    def guard(self, request: ExecutionRequest) -> None:
        """Refuse `request` if the kill switch, a breaker or a reconciliation halt forbids it."""
        kill = self.kill_state()
        if kill.engaged:
            refusal = self._kill_refusal(request, kill)
            if refusal is not None:
                self._refuse(KillSwitchEngaged, request, (refusal,))
        if request.reduce_only:
            return  # exits keep working under breakers and halts
        reasons: list[str] = []
        breakers = self.breaker_state()
        for trip in breakers.trips:
            reasons.append(
                f"{trip.breaker.value} breaker tripped at {trip.at.isoformat()}: {trip.reason}"
            )
        halted = halt_reason(self.store)
        if halted:
            reasons.append(f"trading halted: {halted}")
        if breakers.any_tripped:
            self._refuse(BreakerTripped, request, tuple(reasons))
        if halted:
            self._refuse(RiskRejected, request, tuple(reasons))

    def _kill_refusal(self, request: ExecutionRequest, kill: KillSwitchState) -> str | None:
        engaged = f"kill switch engaged since {kill.since.isoformat() if kill.since else '?'} "
        engaged += f"by {kill.by}: {kill.reason}"
        if not request.reduce_only:
            return f"new entries are refused: {engaged}"
        resting = request.type is OrderType.LIMIT and request.time_in_force in _RESTING
        if resting:
            return (
                f"a resting exit (limit {request.time_in_force.value}) is refused while the "
                f"book must stay empty: {engaged}; send the exit as market or limit IOC"
            )
        if self._kill_closes.get(request.intent_key) == request:
            return None
        held = [
            p
            for p in self.store.list_positions(self.mode, exchange=self.exchange_id)
            if p.strategy_id == request.strategy_id
            and p.symbol == request.symbol
            and p.side.opposite is request.side
            and p.quantity > 0
        ]
        quantity = sum((p.quantity for p in held), Decimal(0))
        if request.quantity > quantity:
            return (
                f"{request.side.value} {request.quantity} {request.symbol} is not an exit of an "
                f"open position of {request.strategy_id} "
                f"(holds {quantity.normalize():f} to close): {engaged}"
            )
        return None

    def _refuse(
        self, error: type[RiskRejected], request: ExecutionRequest, reasons: tuple[str, ...]
    ) -> None:
        now = self.clock()
        kind = "exit" if request.reduce_only else "entry"
        message = (
            f"{kind} {request.side.value} {request.quantity} {request.symbol} "
            f"({request.strategy_id}, intent {request.intent_key}) refused: " + "; ".join(reasons)
        )
        payload = {
            "request": request.as_json(),
            "refused_by": error.__name__,
            "reasons": list(reasons),
            "mode": self.mode.value,
            "exchange": self.exchange_id,
        }
        self.store.append_event("order_refused", payload, now, source=self.actor)
        self._audit_after(self.actor, "order_refused", payload, now)
        log.warning("order refused", reason=message)
        raise error(message, reasons)

    # -- helpers ----------------------------------------------------------------------------

    def _audit_after(self, actor: str, action: str, payload: dict[str, Any], at: datetime) -> None:
        """Audit a safety action that already took effect; a failed audit write never undoes it.

        Engaging the kill switch, tripping a breaker and refusing an order make trading safer:
        they must hold even when the audit log cannot be written (a missing or foreign audit
        key). The failure is kept in the events table and raised as a critical alert instead.
        """
        try:
            self.audit.record(actor, action, payload, at)
        except TradelibError as exc:
            log.error("audit entry not written", action=action, error=str(exc))
            failure = {"action": action, "actor": actor, "error": str(exc), "payload": payload}
            self.store.append_event("audit_failed", failure, at, source=self.actor)
            self._alert(
                AlertKind.AUDIT_FAILED,
                Severity.CRITICAL,
                f"{action} took effect but its audit entry could not be written: {exc}",
                at,
            )

    def _verify_totp(
        self, code: str | None, now: datetime, action: str, by: str
    ) -> tuple[bool, str]:
        """(verified, why not) for `code`, accepted once (`use_totp`); never logs the code."""
        try:
            use_totp(self.store, code, now, action, by)
        except SecretError as exc:
            return False, str(exc)
        return True, "TOTP verified"

    def _alert(
        self, kind: AlertKind, severity: Severity, message: str, at: datetime, key: str = ""
    ) -> None:
        data = {"mode": self.mode.value, "exchange": self.exchange_id}
        self.alerts.emit(Alert(kind, severity, message, at, key=key, data=data))
