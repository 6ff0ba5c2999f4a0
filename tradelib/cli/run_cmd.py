"""`tradelib run`: keep one account's engine trading, paper or live, until stopped.

Exit status: 0 stopped on request (SIGTERM/SIGINT); 1 the engine failed (its run lock was lost,
or it could not keep going) — a supervisor should start it again; 2 refused to start (a
setting, a missing key, a failed key check, no second factor); 3 another engine already
trades this account.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from tradelib.cli.options import StoreOption
from tradelib.domain import Mode
from tradelib.errors import AlreadyRunning, NeedsPerson, TradelibError


def run(
    mode: Annotated[
        Mode, typer.Option("--mode", help="paper (simulated fills on live data) or live")
    ] = Mode.PAPER,
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="Exchange id (default: exchange.id setting)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Settings TOML file (as TRADELIB_CONFIG)")
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option("--params", help="Strategy parameters JSON (research notebook's output)"),
    ] = None,
    calendar: Annotated[
        Path | None, typer.Option("--calendar", help="Unlock calendar CSV (default: bundled)")
    ] = None,
    totp_code: Annotated[
        str | None,
        typer.Option("--totp-code", help="Live: TOTP code (asked for when a terminal is attached)"),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Run the engine service: reconcile, trade every candle, obey the kill switch and
    commands, follow the paper/live switch, beat a heartbeat; stop cleanly on SIGTERM."""
    from tradelib.config import load_settings
    from tradelib.logs import configure_logging
    from tradelib.service import StrategyConfig, run_service

    overrides: dict[str, object] = {}
    if store:
        overrides["store_url"] = store
    if exchange:
        overrides["exchange"] = {"id": exchange}
    try:
        settings = load_settings(config_file=config, **overrides)
    except TradelibError as exc:
        _refused(exc)
    configure_logging(settings.log_format, settings.log_level)
    if mode is Mode.LIVE and not totp_code and sys.stdin.isatty():
        answer = typer.prompt(
            "TOTP code to start live trading (empty: use the dashboard's confirmation)",
            default="", hide_input=True, show_default=False,
        )  # fmt: skip
        totp_code = answer.strip() or None
    config_used = StrategyConfig(params_file=params, calendar_file=calendar)
    try:
        outcome = run_service(settings, config_used, mode=mode, totp_code=totp_code)
    except AlreadyRunning as exc:
        typer.secho(f"refused: {exc}", err=True, fg="red")
        raise typer.Exit(3) from None
    except NeedsPerson as exc:
        _refused(exc)
    except TradelibError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    if outcome.failed:
        typer.secho(f"engine failed: {outcome.reason}", err=True, fg="red")
        raise typer.Exit(1)
    typer.echo(f"engine stopped: {outcome.reason}")


def _refused(exc: BaseException) -> NoReturn:
    typer.secho(f"refused to start: {exc}", err=True, fg="red")
    raise typer.Exit(2)
