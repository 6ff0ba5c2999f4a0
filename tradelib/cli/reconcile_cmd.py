"""`tradelib reconcile [--dry-run]`: bring the store in line with the exchange, by hand.

Every engine reconciles on start and retries each cycle while trading is halted; this command
is for a person who fixed the cause (or wants to see it) while no engine runs on the account.
`--dry-run` runs the very same reconciliation inside a store transaction that is rolled back,
so it shows exactly what would change and changes nothing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import ReconciliationError, TradelibError

if TYPE_CHECKING:
    from tradelib.config import Settings
    from tradelib.orders import ReconcileReport
    from tradelib.store import Store

DEFAULT_STALE_AFTER_S = 30.0


class _RolledBack(Exception):
    """Carries a dry run's report out of the transaction it rolls back."""

    def __init__(self, report: ReconcileReport | None, error: str | None) -> None:
        super().__init__("dry run")
        self.report, self.error = report, error


def _now() -> datetime:
    return datetime.now(UTC)


def _engine_alive(db: Store, settings: Settings) -> str | None:
    """Who runs this account now, or None when no engine beats for it."""
    from tradelib.store.records import Liveness

    beat = db.get_heartbeat(settings.mode, settings.exchange.id)
    if beat is None:
        return None
    stale_after = float(beat.detail.get("stale_after_seconds", DEFAULT_STALE_AFTER_S))
    if beat.liveness(_now(), stale_after) is not Liveness.ALIVE:
        return None
    return f"pid {beat.pid} on {beat.host} (last beat {beat.beat_at.isoformat()})"


async def _reconcile(db: Store, settings: Settings) -> ReconcileReport:
    from tradelib.control import open_kill_exchange
    from tradelib.domain import OrderStatus
    from tradelib.orders import OrderExecutor, Reconciler
    from tradelib.position.exits import ExitRules
    from tradelib.position.manager import PositionManager

    mode, venue = settings.mode, settings.exchange.id
    exchange = open_kill_exchange(settings, db)
    try:
        positions = PositionManager(
            db, mode=mode, exchange_id=venue, exit_rules=ExitRules.from_settings(settings.risk),
            clock=_now,
        )  # fmt: skip
        held = positions.rebuild()
        live = [s for s in OrderStatus if not s.is_terminal]
        symbols = {o.symbol for o in db.list_orders(statuses=live, mode=mode, exchange=venue)}
        symbols |= {p.symbol for p in held}
        executor = OrderExecutor(
            db, exchange, exchange_id=venue, mode=mode, clock=_now, on_fill=positions.on_fill
        )
        return await Reconciler(executor, lambda: sorted(symbols)).run()
    finally:
        await exchange.close()


async def _dry_run(db: Store, settings: Settings) -> tuple[ReconcileReport | None, str | None]:
    try:
        with db.transaction():
            try:
                report = await _reconcile(db, settings)
            except ReconciliationError as exc:
                raise _RolledBack(None, str(exc)) from None
            raise _RolledBack(report, None)
    except _RolledBack as done:
        return done.report, done.error


def _print(report: ReconcileReport, dry_run: bool) -> None:
    verb = "would be" if dry_run else "were"
    rows = [
        ("resolved", report.resolved, "orders brought up to date"),
        ("expired", report.expired, "pending orders the exchange never saw"),
        ("rejected", report.rejected, "pending orders the exchange could never take"),
        ("adopted", report.adopted, "open orders found on the exchange only"),
    ]
    for name, ids, what in rows:
        typer.echo(f"  {len(ids):>3} {name:<9} {what}" + (f": {', '.join(ids)}" if ids else ""))
    typer.echo(f"  {report.fills_recorded:>3} fills    {verb} recorded")
    typer.echo(f"  {report.balances:>3} balances  {verb} refreshed")


def reconcile_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Reconcile the store with the exchange for the configured account; lifts a halt."""
    from tradelib.orders import halt_reason
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    account = f"{settings.mode.value} account on {settings.exchange.id}"
    try:
        with open_store(settings.store_url) as db:
            running = _engine_alive(db, settings)
            if running and not dry_run:
                typer.secho(
                    f"error: an engine runs the {account} ({running}); it reconciles by itself "
                    "every cycle while trading is halted. Stop it first, or use --dry-run.",
                    err=True, fg="red",
                )  # fmt: skip
                raise typer.Exit(2)
            halted = halt_reason(db)
            if dry_run:
                report, error = asyncio.run(_dry_run(db, settings))
            else:
                report, error = None, None
                try:
                    report = asyncio.run(_reconcile(db, settings))
                except ReconciliationError as exc:
                    error = str(exc)
    except TradelibError as exc:
        fail(exc)
        return
    prefix = "DRY RUN (nothing was written): " if dry_run else ""
    if error is not None:
        typer.secho(f"{prefix}reconciliation of the {account} fails: {error}", fg="red", err=True)
        raise typer.Exit(1)
    assert report is not None
    typer.echo(f"{prefix}reconciled the {account}:")
    _print(report, dry_run)
    if halted:
        lifted = "would be lifted" if dry_run else "lifted"
        typer.echo(f"trading halt {lifted} (it said: {halted})")
