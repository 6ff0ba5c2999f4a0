"""The emergency stop: engage the store-wide kill switch, then enforce it on the exchange.

One small function over tradelib's kill (`kill_async`): it opens its own store handle and its
own exchange connection on a worker thread's own event loop, so it works while the kernel is
busy and while the engine (here or in another process) is stuck. The switch is persisted
before anything touches the exchange, so every engine's guard refuses new orders at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tradelib.config import Settings
from tradelib.control import kill_async
from tradelib.domain import Mode
from tradelib.errors import TradelibError
from tradelib.risk import KillAction, KillActionKind
from widgets.venue import VenueFactory, run_on_own_loop


@dataclass(frozen=True, slots=True)
class StopReport:
    """What the emergency stop did: cancels, closes, failures (None: it could not run)."""

    actions: tuple[KillAction, ...]
    error: str | None = None
    venue_error: str | None = None
    note: str | None = None

    @property
    def failed(self) -> tuple[KillAction, ...]:
        """Actions whose outcome says they failed."""
        return tuple(a for a in self.actions if "FAILED" in a.reason)

    def summary(self) -> str:
        """One line for the dashboard."""
        if self.error is not None:
            return (
                f"emergency stop incomplete: {self.error}. Check the kill switch badge; if it "
                "is still OFF run `tradelib kill` from a terminal"
            )
        cancels = sum(a.kind is KillActionKind.CANCEL_ORDER for a in self.actions)
        closes = sum(a.kind is KillActionKind.CLOSE_POSITION for a in self.actions)
        text = f"kill switch engaged: {cancels} order(s) cancelled, {closes} position(s) closed"
        if self.failed:
            text += f"; {len(self.failed)} FAILED: " + "; ".join(a.reason for a in self.failed)
        if self.venue_error:
            text += f" (the account's venue could not be opened: {self.venue_error})"
        if self.note:
            text += f"; {self.note}"
        return text


def emergency_stop(
    store_url: str,
    settings: Settings,
    mode: Mode,
    *,
    flatten: bool,
    reason: str,
    by: str,
    venue: VenueFactory | None = None,
) -> StopReport:
    """Engage and enforce the kill switch for the `mode` account (blocking; run off the kernel).

    `venue` opens the connection to enforce through; None uses tradelib's default (the live
    key in live mode, the store's paper state in paper mode).
    """
    account = settings.model_copy(update={"mode": mode, "store_url": store_url})

    problem: list[str] = []

    async def work() -> Sequence[KillAction]:
        exchange = None
        if venue is not None:
            try:
                exchange = venue()
            except TradelibError as exc:  # still engage: kill_async falls back to its default
                problem.append(str(exc))
        try:
            return await kill_async(
                flatten=flatten,
                reason=reason,
                by=by,
                settings=account,
                store_url=store_url,
                exchange=exchange,
            )
        finally:
            if exchange is not None:
                await exchange.close()

    try:
        actions = tuple(run_on_own_loop(work))
    except TradelibError as exc:
        return StopReport((), error=str(exc), venue_error="; ".join(problem) or None)
    return StopReport(actions, venue_error="; ".join(problem) or None)
