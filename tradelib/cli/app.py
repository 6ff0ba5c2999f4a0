"""Root typer app and the commands that need no group."""

from __future__ import annotations

import sys

import typer

import tradelib
from tradelib.cli import (
    audit_cmd,
    calendar_cmd,
    db,
    demo_cmd,
    doctor,
    emulator,
    reconcile_cmd,
    risk_cmd,
    run_cmd,
    schedule_cmd,
    secrets_cmd,
)
from tradelib.config import load_settings
from tradelib.errors import TradelibError
from tradelib.logs import configure_logging

app = typer.Typer(
    name="tradelib",
    help="Jupyter-first crypto trading: research, paper and live on one engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _setup() -> None:
    """Configure logging from settings before any command runs."""
    try:
        settings = load_settings()
    except TradelibError:
        configure_logging()  # the command reports the bad setting itself
        return
    configure_logging(settings.log_format, settings.log_level)


app.add_typer(db.app, name="db")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(secrets_cmd.app, name="secrets")
app.add_typer(calendar_cmd.app, name="calendar")
app.command("doctor")(doctor.doctor)
app.command("emulator")(emulator.emulator)
app.command("demo")(demo_cmd.demo)
app.command("run")(run_cmd.run)
app.command("reconcile")(reconcile_cmd.reconcile_cmd)
risk_cmd.register(app)
schedule_cmd.register(app)


@app.command()
def version() -> None:
    """Print the tradelib version."""
    typer.echo(f"tradelib {tradelib.__version__} (Python {sys.version.split()[0]})")
