"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tradelib.config import Settings, load_settings
from tradelib.errors import TradelibError

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL, duckdb:///path or postgresql://… (default: TRADELIB_STORE_URL or the "
        "DuckDB file in the user state directory)",
    ),
]


def settings_or_exit(**overrides: Any) -> Settings:
    """Load settings; print the ConfigError and exit 2 when they are invalid."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except TradelibError as exc:
        fail(exc)
        raise  # unreachable: fail() exits


def fail(exc: BaseException) -> None:
    """Print a tradelib error as one readable message and exit with status 2."""
    typer.secho(f"error: {exc}", err=True, fg="red")
    raise typer.Exit(2)
