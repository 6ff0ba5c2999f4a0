"""`tradelib schedule FILE`, `tradelib run-notebook NOTEBOOK -p k v`, `tradelib runs`.

Exit status of run-notebook: 0 succeeded, 1 failed or timed out, 2 bad input, 3 refused
because the same job is already running.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError

PARAMETER_FLAGS = ("-p", "--parameter")


def schedule(
    file: Annotated[Path, typer.Argument(help="Schedule file (.toml or .yaml)")],
    check: Annotated[
        bool, typer.Option("--check", help="Validate the file, show the next times, and exit")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Run the schedule's notebooks with papermill on their cron times, one run record each,
    until SIGTERM/SIGINT (running notebooks are allowed to finish)."""
    from datetime import UTC, datetime

    from tradelib.schedule.jobs import load_schedule
    from tradelib.schedule.notebook import store_alerts
    from tradelib.schedule.scheduler import Scheduler

    settings = settings_or_exit(store_url=store)
    try:
        plan = load_schedule(file)
    except TradelibError as exc:
        fail(exc)
        return
    now = datetime.now(UTC)
    for job in plan.jobs:
        upcoming = job.trigger().get_next_fire_time(None, now)
        when = upcoming.isoformat(timespec="seconds") if upcoming else "never"
        typer.echo(f"{job.name:<20} {job.timing():<32} next {when}  {job.notebook}")
    typer.echo(f"executed notebooks go to {plan.output_dir}; runs are recorded in "
               f"{_redacted(settings.store_url)}")  # fmt: skip
    if check:
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        alerts = store_alerts(settings.store_url, settings.alerts)
        Scheduler(plan, settings.store_url, alerts=alerts).run(stop)
    except TradelibError as exc:
        fail(exc)
    typer.echo("scheduler stopped")


def run_notebook_cmd(
    ctx: typer.Context,
    notebook: Annotated[Path, typer.Argument(help="The notebook to run")],
    name: Annotated[
        str | None, typer.Option("--name", help="Job name (default: the notebook's file name)")
    ] = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Time limit in seconds")] = 3600,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Folder for executed notebooks (default: state dir)"),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Run one notebook now with papermill, with its run record (like a scheduled job).

    Parameters as papermill takes them: -p NAME VALUE (repeatable; VALUE is read as YAML, so
    3 is a number, true a boolean and '{a: 1}' a mapping)."""
    import yaml

    from tradelib.config import state_dir
    from tradelib.schedule.notebook import run_notebook, store_alerts
    from tradelib.store import RunStatus

    settings = settings_or_exit(store_url=store)
    if not notebook.is_file():
        typer.secho(f"error: notebook {notebook} does not exist", err=True, fg="red")
        raise typer.Exit(2)
    if timeout <= 0:
        typer.secho(f"error: --timeout {timeout}: must be a positive number of seconds", err=True)
        raise typer.Exit(2)
    values: dict[str, Any] = {}
    for key, raw in _parameter_pairs(list(ctx.args)):
        try:
            values[key] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            typer.secho(f"error: -p {key} {raw!r} is not a valid value: {exc}", err=True)
            raise typer.Exit(2) from None
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run = run_notebook(
            settings.store_url, notebook, values, name=name, timeout_seconds=timeout,
            output_dir=output_dir or state_dir() / "runs",
            alerts=store_alerts(settings.store_url, settings.alerts),
        )  # fmt: skip
    except TradelibError as exc:
        fail(exc)
        return
    colour = "green" if run.status is RunStatus.SUCCEEDED else "red"
    typer.secho(f"run {run.run_id} of {run.name}: {run.status.value}", fg=colour)
    if run.output_path:
        typer.echo(f"executed notebook: {run.output_path}")
    if run.error:
        typer.echo(f"error: {run.error}")
    if run.status is RunStatus.SKIPPED:
        raise typer.Exit(3)
    if run.status is not RunStatus.SUCCEEDED:
        raise typer.Exit(1)


def _parameter_pairs(args: list[str]) -> list[tuple[str, str]]:
    """(name, value) of every `-p NAME VALUE` in `args`; anything else is a usage error."""
    pairs = []
    while args:
        flag = args.pop(0)
        if flag not in PARAMETER_FLAGS or len(args) < 2:
            typer.secho(f"error: unexpected {flag!r}: give parameters as -p NAME VALUE", err=True)
            raise typer.Exit(2)
        pairs.append((args.pop(0), args.pop(0)))
    return pairs


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def runs(
    name: Annotated[str | None, typer.Option("--name", help="Only this job")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first")] = 20,
    store: StoreOption = None,
) -> None:
    """List recent notebook runs: job, trigger, start, duration, status, error, notebook."""
    from tradelib.store import RunStatus, open_store

    if status is not None and status not in {s.value for s in RunStatus}:
        typer.secho(f"error: --status {status!r}: one of {[s.value for s in RunStatus]}", err=True)
        raise typer.Exit(2)
    if limit < 1:
        typer.secho(f"error: --limit {limit}: must be at least 1", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            rows = db.list_runs(limit=limit, name=name, status=status)
    except TradelibError as exc:
        fail(exc)
        return
    if not rows:
        typer.echo("no runs recorded" + (f" for {name}" if name else ""))
        return
    typer.echo(f"{'id':>5}  {'job':<18} {'trigger':<9} {'started (UTC)':<20} {'took':>7}  "
               f"{'status':<10} detail")  # fmt: skip
    for run in rows:
        took = f"{run.duration_seconds:.0f} s" if run.duration_seconds is not None else "-"
        detail = run.error or run.output_path or ""
        typer.echo(
            f"{run.id:>5}  {run.name[:18]:<18} {(run.triggered_by or '-')[:9]:<9} "
            f"{run.started_at:%Y-%m-%d %H:%M:%S}  {took:>7}  {run.status:<10} {detail}"
        )


def _redacted(url: str) -> str:
    from tradelib.store import redact_url

    return redact_url(url)


def register(app: typer.Typer) -> None:
    """Add schedule, run-notebook and runs to the root app."""
    app.command("schedule")(schedule)
    app.command(
        "run-notebook",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(run_notebook_cmd)
    app.command("runs")(runs)
