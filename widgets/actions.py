"""What each dashboard control does to the store and the engine, with who and why.

Every method returns an `Outcome` (shown under the control) and never raises for a refusal:
a refused action writes nothing except the audit record the operations layer keeps of it.
Checks that need no store (a reason given, an engine alive to take a command) refuse before
anything is written. The methods block (store, exchange): the dashboard runs them on its
worker thread.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tradelib.config import RiskSettings, Settings
from tradelib.domain import Mode
from tradelib.errors import TradelibError
from tradelib.operations import (
    change_limits,
    effective_limits,
    request_live,
    request_paper,
    send_command,
    set_paused,
)
from tradelib.risk.overrides import ADJUSTABLE, plan_limit_change
from tradelib.store import CommandKind, Liveness, Store, redact_url
from widgets.model import OrderRow, PositionRow
from widgets.snapshot import DEFAULT_STALE_AFTER
from widgets.snapshot import stale_after as engine_stale_after
from widgets.stop import StopReport, emergency_stop
from widgets.venue import KEY_LABEL, VenueFactory, key_problems, run_on_own_loop

Clock = Callable[[], datetime]


def operator_name(configured: str | None = None) -> str:
    """Who acts: the configured operator name, else the OS user."""
    if configured and configured.strip():
        return configured.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown-operator"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of an action, in words for the person who clicked."""

    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class LiveTerms:
    """What a person confirms before going live: account, key, capital cap, limits."""

    exchange: str
    key_label: str
    venue: str
    capital_usd: Decimal
    limits: RiskSettings
    problems: tuple[str, ...]


def _refused(message: str) -> Outcome:
    return Outcome(False, message)


class Actions:
    """The dashboard's controls for one exchange account, acting as `operator`."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        store_url: str,
        settings: Settings,
        *,
        exchange: str,
        operator: str,
        clock: Clock = lambda: datetime.now(UTC),
        live_venue: VenueFactory | None = None,
        stop_venues: dict[Mode, VenueFactory] | None = None,
    ) -> None:
        self._store = store if isinstance(store, Store) else None
        self._open = None if isinstance(store, Store) else store
        self.store_url = store_url
        self.settings = settings
        self.exchange = exchange
        self.operator = operator
        self.clock = clock
        self.live_venue = live_venue
        self.stop_venues = dict(stop_venues or {})

    @property
    def store(self) -> Store:
        """The dashboard's store (StoreError while it cannot be reached)."""
        if self._store is None:
            assert self._open is not None
            return self._open()
        return self._store

    # -- emergency stop: one click and a confirmation, never a second factor ------------------

    def emergency_stop(self, mode: Mode, flatten: bool, reason: str) -> StopReport:
        """Engage the store-wide kill switch and cancel (and, if asked, flatten) `mode`'s book."""
        why = reason.strip() or "emergency stop from the dashboard"
        venue = self.stop_venues.get(mode)
        report = emergency_stop(
            self.store_url, self.settings, mode, flatten=flatten, reason=why, by=self.operator,
            venue=venue,
        )  # fmt: skip
        if report.actions or report.error or venue is not None or mode is not Mode.PAPER:
            return report
        if self._engine_refusal(mode, DEFAULT_STALE_AFTER) is None:
            # tradelib's paper kill leaves a running paper engine's book to that engine: the
            # paper venue lives in its process (it enforces within its next control tick).
            note = "the running paper engine cancels its own paper orders (its venue is its own)"
            return replace(report, note=note)
        return report

    # -- paper / live -------------------------------------------------------------------------

    def live_terms(self) -> LiveTerms:
        """The terms going live would trade with, and what the API-key check found."""
        limits = effective_limits(self.store, self.settings.risk, Mode.LIVE, self.exchange)
        return LiveTerms(
            exchange=self.exchange,
            key_label=KEY_LABEL,
            venue=redact_url(self.settings.exchange.base_url or "")
            or f"{self.exchange} (production API)",
            capital_usd=self.settings.live_capital_usd,
            limits=limits,
            problems=tuple(self._key_problems()),
        )

    def _key_problems(self) -> list[str]:
        if self.live_venue is None:
            return ["no live venue configured for the key check"]
        factory = self.live_venue

        async def check() -> list[str]:
            try:
                venue = factory()
            except TradelibError as exc:
                return [str(exc)]
            try:
                return await key_problems(venue, self.store, self.operator, self.clock())
            finally:
                await venue.close()

        return run_on_own_loop(check)

    def go_live(self, terms: LiveTerms, confirmed: bool, code: str, reason: str) -> Outcome:
        """Ask the account to trade live on `terms` (confirmation, TOTP, a passed key check)."""
        if not confirmed:
            return _refused("tick the confirmation first: you are about to trade real money")
        if not reason.strip():
            return _refused("say why you go live (it goes into the audit log)")
        limits: dict[str, Any] = terms.limits.model_dump()
        try:
            request = request_live(
                self.store,
                self.exchange,
                by=self.operator,
                reason=reason.strip(),
                now=self.clock(),
                totp_code=code.strip() or None,
                capital_usd=terms.capital_usd,
                limits=limits,
                key_problems=terms.problems,
            )
        except TradelibError as exc:
            return _refused(str(exc))
        until = request.grant_expires_at.strftime("%H:%M:%S") if request.grant_expires_at else "?"
        return Outcome(
            True,
            f"LIVE granted to {self.exchange} with a cap of ${terms.capital_usd:,.2f}; the "
            f"engine service must switch before {until} UTC (one-time grant)",
        )

    def go_paper(self, reason: str) -> Outcome:
        """Ask the account to stop trading live and trade paper (no second factor)."""
        if not reason.strip():
            return _refused("say why you go back to paper (it goes into the audit log)")
        try:
            request_paper(
                self.store,
                self.exchange,
                by=self.operator,
                reason=reason.strip(),
                now=self.clock(),
            )
        except TradelibError as exc:
            return _refused(str(exc))
        return Outcome(True, f"back to PAPER requested for {self.exchange}")

    # -- steering ------------------------------------------------------------------------------

    def set_paused(self, mode: Mode, paused: bool, reason: str) -> Outcome:
        """Pause (or resume) the account's new entries; exits keep working."""
        if not reason.strip():
            return _refused("say why (it goes into the audit log)")
        try:
            set_paused(
                self.store, mode, self.exchange, paused, self.operator, reason.strip(), self.clock()
            )
        except TradelibError as exc:
            return _refused(str(exc))
        verb = "paused" if paused else "resumed"
        return Outcome(True, f"entries {verb} on {mode.value}/{self.exchange}")

    def limit_loosens(self, mode: Mode, name: str, value: str) -> bool | None:
        """True when `name` = `value` loosens the limit (TOTP needed); None when invalid."""
        try:
            current = effective_limits(self.store, self.settings.risk, mode, self.exchange)
            return plan_limit_change(current, {name: value}).loosens
        except TradelibError:
            return None

    def change_limit(self, mode: Mode, name: str, value: str, reason: str, code: str) -> Outcome:
        """Set one adjustable limit inside its allowed range; loosening needs a TOTP code."""
        if name not in ADJUSTABLE:
            return _refused(
                f"{name} cannot be adjusted; adjustable: {', '.join(sorted(ADJUSTABLE))}"
            )
        if not reason.strip():
            return _refused("say why you change the limit (it goes into the audit log)")
        try:
            plan = change_limits(
                self.store,
                self.settings.risk,
                mode,
                self.exchange,
                {name: value.strip()},
                self.operator,
                reason.strip(),
                self.clock(),
                totp_code=code.strip() or None,
            )
        except TradelibError as exc:
            return _refused(str(exc))
        if not plan.changes:
            return Outcome(True, f"{name} already is {value.strip()}: nothing changed")
        change = plan.changes[0]
        return Outcome(True, f"{name}: {change.before} → {change.after} on {mode.value}")

    # -- commands to the running engine -------------------------------------------------------

    def _engine_refusal(self, mode: Mode, stale_after: float) -> str | None:
        beat = self.store.get_heartbeat(mode, self.exchange)
        if beat is None:
            return (
                f"no engine has ever run for {mode.value}/{self.exchange}: nobody would execute "
                "the command. Start the engine, or use the emergency stop"
            )
        if beat.liveness(self.clock(), engine_stale_after(beat, stale_after)) is not Liveness.ALIVE:
            return (
                f"the {mode.value}/{self.exchange} engine is not running (last beat "
                f"{beat.beat_at:%H:%M:%S} UTC): the command would expire unexecuted. Start the "
                "engine, or use the emergency stop"
            )
        return None

    def close_position(
        self, mode: Mode, row: PositionRow, reason: str, stale_after: float
    ) -> Outcome:
        """Ask the running engine to close one position (market, reduce-only)."""
        payload = {"symbol": row.symbol, "strategy_id": row.strategy}
        return self._command(
            mode,
            CommandKind.CLOSE_POSITION,
            payload,
            reason,
            stale_after,
            f"close {row.symbol} ({row.strategy})",
        )

    def cancel_order(self, mode: Mode, row: OrderRow, reason: str, stale_after: float) -> Outcome:
        """Ask the running engine to cancel one open order."""
        payload = {"client_order_id": row.client_order_id, "symbol": row.symbol}
        return self._command(
            mode,
            CommandKind.CANCEL_ORDER,
            payload,
            reason,
            stale_after,
            f"cancel {row.client_order_id}",
        )

    def _command(
        self,
        mode: Mode,
        kind: CommandKind,
        payload: dict[str, Any],
        reason: str,
        stale_after: float,
        what: str,
    ) -> Outcome:
        if not reason.strip():
            return _refused("say why (it goes into the audit log)")
        refusal = self._engine_refusal(mode, stale_after)
        if refusal is not None:
            return _refused(refusal)
        try:
            command_id = send_command(
                self.store,
                mode,
                self.exchange,
                kind,
                payload,
                self.operator,
                reason.strip(),
                self.clock(),
            )
        except TradelibError as exc:
            return _refused(str(exc))
        return Outcome(True, f"command #{command_id} sent: {what}; the engine takes it next tick")
