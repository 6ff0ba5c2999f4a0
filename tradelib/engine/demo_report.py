"""The demo's comparison table (paper vs backtest vs targets), console summary and HTML report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from tradelib.engine.demo import DemoResult
from tradelib.engine.report import write_report
from tradelib.strategy.calendar import UnlockEvent
from tradelib.strategy.params import TokenUnlockParams


def backtest_metrics(
    events: list[UnlockEvent], params: TokenUnlockParams
) -> tuple[dict[str, float], int]:
    """The vectorbt backtest of the demo's events: metrics and trade count (picklable)."""
    from tradelib.backtest import backtest, load_candles

    candles = load_candles(sorted({e.symbol for e in events}))
    result = backtest(candles, events, params)
    return {str(k): float(v) for k, v in result.metrics.items()}, len(result.trades)


def compare(result: DemoResult, backtest: tuple[dict[str, float], int] | None) -> pd.DataFrame:
    """Paper metrics beside the backtest's (if given) and the seed targets (+0.51 % baseline)."""
    from tradelib.backtest import compare_to_targets

    table = compare_to_targets(result.summary).set_index("metric")
    table = table.rename(columns={"value": "paper", "met": "paper meets"})
    if backtest is not None:
        metrics, trades = backtest
        values = {m: metrics.get(m, float("nan")) for m in table.index}
        table.insert(1, "backtest", pd.Series(values))
        table.loc["trades", ["paper", "backtest"]] = [result.summary["trades"], trades]
    return table


def print_summary(result: DemoResult, table: pd.DataFrame) -> None:
    """Readable console summary."""
    typer.echo(
        f"paper run {result.run_id} ({result.exchange_id}): {result.events} unlock events, "
        f"{result.cycles} engine cycles, params {result.params.to_dict()}"
    )
    for key, value in result.summary.items():
        typer.echo(f"  {key:<20} {value}")
    typer.echo("")
    typer.echo(table.to_string())


def report_demo(result: DemoResult, table: pd.DataFrame, out_dir: Path) -> Path:
    """Write the HTML report for a demo run; returns its path."""
    path = out_dir / f"demo-run-{result.run_id}.html"
    notes = [
        "Paper fills walk a synthetic book built from the recorded candle (spread and depth "
        "from its range and volume) and pay Binance's 0.1 % taker fee.",
        "The targets are reported, never tuned for: numbers are what the replay produced.",
        f"Parameters: {result.params.to_dict()}",
    ]
    result.report_path = write_report(
        path,
        f"tradelib demo — token-unlock strategy, paper run {result.run_id}",
        result.summary,
        result.equity,
        result.trades,
        table,
        notes,
    )
    return path
