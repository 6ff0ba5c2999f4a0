"""`tradelib calendar …`: show and extend the unlock calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from tradelib.cli.options import fail
from tradelib.errors import TradelibError

app = typer.Typer(help="The token-unlock calendar.", no_args_is_help=True)
MAX_DAYS = 36_500  # a century: further ahead is a typo, and beyond year 9999 cannot be a date

CalendarOption = Annotated[
    Path | None, typer.Option("--calendar", help="Calendar CSV (default: data/unlocks.csv)")
]


@app.command("import")
def import_cmd(src: Path, calendar: CalendarOption = None) -> None:
    """Validate SRC and merge its events into the calendar; nothing is written on any error."""
    from tradelib.strategy.calendar import default_calendar_path, import_events

    target = calendar or default_calendar_path()
    try:
        added = import_events(src, target)
    except TradelibError as exc:
        fail(exc)
        return
    typer.echo(f"added {added} event(s) from {src} to {target}")


@app.command("upcoming")
def upcoming_cmd(
    days: Annotated[
        int, typer.Option(min=0, max=MAX_DAYS, help="How many days ahead (0-36500)")
    ] = 30,
    calendar: CalendarOption = None,
) -> None:
    """List the events of the next DAYS days."""
    from tradelib.strategy.calendar import load_calendar

    try:
        events = load_calendar(calendar).upcoming(datetime.now(UTC), timedelta(days=days))
    except TradelibError as exc:
        fail(exc)
        return
    for event in events:
        pct = f"{event.pct_circulating}% of {event.pct_basis}" if event.pct_circulating else "?"
        typer.echo(
            f"{event.unlock_time.isoformat()}  {event.symbol:<6} {pct:<24} {event.source_url}"
        )
    if not events:
        typer.echo(f"no unlock in the next {days} days in the calendar")
