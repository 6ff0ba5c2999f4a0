"""`tradelib db …`: schema migrations and status."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

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


def missing_duckdb_file(url: str) -> Path | None:
    """The file a duckdb:/// URL names when it does not exist yet (opening would create it)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "duckdb" or parts.path in ("/:memory:", ":memory:"):
        return None
    path = Path("/" + parts.path.lstrip("/"))
    return None if path.exists() else path


@app.command()
def status(store: StoreOption = None) -> None:
    """Show the store's schema version and pending migrations (never creates a store)."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    missing = missing_duckdb_file(settings.store_url)
    if missing is not None:
        typer.echo(
            f"no store at {missing}: nothing to show. `tradelib db upgrade --store "
            f"{settings.store_url}` (or the first `tradelib demo`) creates it"
        )
        raise typer.Exit(1)
    try:
        with open_store(settings.store_url, migrate=False) as db:
            version, pending, where = db.schema_version(), db.pending_migrations(), db.url
    except TradelibError as exc:
        fail(exc)
        return
    typer.echo(f"{where}: schema version {version}")
    typer.echo(f"pending: {', '.join(map(str, pending)) if pending else 'none'}")
