"""The `tradelib` command line: one typer app, one module per command group."""

from __future__ import annotations

from tradelib.cli.app import app

__all__ = ["app"]
