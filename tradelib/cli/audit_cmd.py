"""`tradelib audit …`: show and verify the hash-chained audit log."""

from __future__ import annotations

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command()
def verify(store: StoreOption = None) -> None:
    """Recompute the chain; exit 1 and name the first broken row if it was altered."""
    from tradelib.audit import AuditLog
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            report = AuditLog(db).verify()
    except TradelibError as exc:
        fail(exc)
        return
    if report.ok:
        typer.echo(f"audit log intact: {report.rows} entries verified")
        return
    typer.echo(f"AUDIT LOG BROKEN at entry {report.broken_id}: {report.reason}")
    raise typer.Exit(1)


@app.command()
def show(limit: int = 20, store: StoreOption = None) -> None:
    """Print the latest audit entries."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            rows = db.list_audit()[-limit:]
    except TradelibError as exc:
        fail(exc)
        return
    for row in rows:
        typer.echo(
            f"{row.id:>6} {row.at.isoformat()} {row.actor:<12} {row.action:<24} {row.payload_json}"
        )
