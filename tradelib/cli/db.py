"""`tradelib db …`: schema migrations and status."""

from __future__ import annotations

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError

app = typer.Typer(help="Database (store) maintenance.", no_args_is_help=True)


@app.command()
def upgrade(store: StoreOption = None) -> None:
    """Apply pending schema migrations to the store."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url, migrate=False) as db:
            applied = db.migrate()
            version, where = db.schema_version(), db.url  # the store's url hides the password
    except TradelibError as exc:
        fail(exc)
        return
    if applied:
        typer.echo(f"applied migrations {', '.join(map(str, applied))} to {where}")
    typer.echo(f"{where} is at schema version {version}")


@app.command()
def status(store: StoreOption = None) -> None:
    """Show the store's schema version and pending migrations."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url, migrate=False) as db:
            version, pending, where = db.schema_version(), db.pending_migrations(), db.url
    except TradelibError as exc:
        fail(exc)
        return
    typer.echo(f"{where}: schema version {version}")
    typer.echo(f"pending: {', '.join(map(str, pending)) if pending else 'none'}")
