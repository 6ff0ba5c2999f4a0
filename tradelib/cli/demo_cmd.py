"""`tradelib demo`: the main job — the paper engine over the bundled unlock events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError


def demo(
    store: StoreOption = None,
    out: Annotated[Path, typer.Option(help="Folder for the HTML report")] = Path("reports"),
    events: Annotated[
        int | None, typer.Option(min=1, help="Replay only the first N events")
    ] = None,
    backtest: Annotated[
        bool, typer.Option(help="Also run the vectorbt backtest of the same parameters")
    ] = True,
    params: Annotated[
        Path | None,
        typer.Option(help="Strategy parameters JSON saved by the research notebook"),
    ] = None,
) -> None:
    """Replay real candles over the unlock calendar through the paper engine; print and report."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tradelib.engine.demo import DEMO_PARAMS, demo_events, refuse_while_killed, run_demo
    from tradelib.engine.demo_report import backtest_metrics, compare, print_summary, report_demo
    from tradelib.store import open_store
    from tradelib.strategy.calendar import load_calendar
    from tradelib.strategy.params import TokenUnlockParams

    settings = settings_or_exit(store_url=store)
    started = time.monotonic()
    pool: ProcessPoolExecutor | None = None
    try:
        chosen = TokenUnlockParams.load_json(params) if params is not None else DEMO_PARAMS
        calendar = load_calendar()
        with open_store(settings.store_url) as db:
            refuse_while_killed(db, settings)  # before any work starts: nothing is left behind
            # The backtest runs on the second core while the engine replays on the first.
            if backtest:
                pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
            pending = (
                pool.submit(backtest_metrics, demo_events(calendar, chosen, limit=events), chosen)
                if pool is not None
                else None
            )
            result = asyncio.run(
                run_demo(settings, db, params=chosen, calendar=calendar, limit_events=events)
            )
        backtested = pending.result() if pending is not None else None
        table = compare(result, backtested)
        backtest_trades = backtested[1] if backtested is not None else None
        path = report_demo(result, table, out, backtest_trades)
    except TradelibError as exc:
        fail(exc)
        return
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    print_summary(result, table, backtest_trades)
    typer.echo(f"\nreport: {path}")
    typer.echo(f"took {time.monotonic() - started:.1f} s; store {result.store_url}")
