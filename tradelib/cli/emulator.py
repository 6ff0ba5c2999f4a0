"""`tradelib emulator`: the local Binance-compatible exchange for offline rehearsals."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from tradelib.cli.options import settings_or_exit
from tradelib.domain import require_utc
from tradelib.errors import ConfigError, DataError


def parse_balances(values: list[str]) -> dict[str, Decimal]:
    """Parse ASSET=AMOUNT pairs, e.g. USDT=10000."""
    balances: dict[str, Decimal] = {}
    for item in values:
        asset, sep, amount = item.partition("=")
        try:
            value = Decimal(amount)
        except InvalidOperation:
            value = Decimal(-1)
        if not sep or not asset or not value.is_finite() or value < 0:
            raise ConfigError(f"--balance {item!r}: expected ASSET=AMOUNT with AMOUNT >= 0")
        balances[asset.upper()] = value
    return balances


def emulator(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one)")] = 8080,
    api_key: Annotated[
        str | None, typer.Option(help="API key to accept (generated if absent)")
    ] = None,
    api_secret: Annotated[
        str | None, typer.Option(help="API secret to accept (generated if absent)")
    ] = None,
    balance: Annotated[
        list[str] | None, typer.Option(help="Starting balance ASSET=AMOUNT, repeatable")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Replay clock start, ISO 8601 UTC (default: data start)")
    ] = None,
) -> None:
    """Start the local Binance-compatible emulator (REST + WebSocket) on 127.0.0.1."""
    from tradelib.testing.binance_emulator import main

    settings = settings_or_exit()
    try:
        balances = parse_balances(balance or ["USDT=10000"])
        start_at = None
        if start:
            start_at = require_utc(datetime.fromisoformat(start.replace("Z", "+00:00")), "--start")
    except (ConfigError, DataError, ValueError) as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None
    main(
        port=port,
        api_key=api_key,
        api_secret=api_secret,
        balances=balances,
        data_dir=settings.data_dir,
        start=start_at,
    )
