"""Root typer app and the commands that need no group."""

from __future__ import annotations

import sys

import typer

import tradelib
from tradelib.cli import db, doctor, emulator

app = typer.Typer(
    name="tradelib",
    help="Jupyter-first crypto trading: research, paper and live on one engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.command("doctor")(doctor.doctor)
app.command("emulator")(emulator.emulator)


@app.command()
def version() -> None:
    """Print the tradelib version."""
    typer.echo(f"tradelib {tradelib.__version__} (Python {sys.version.split()[0]})")
