"""The demo's comparison table (paper vs backtest vs targets), console summary and HTML report."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import typer

from tradelib.engine.demo import START_CASH, DemoResult
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
    table = table.rename(columns={"value": "paper", "met": "paper meets"}).astype(object)
    if backtest is not None:
        metrics, _ = backtest
        table.insert(1, "backtest", pd.Series({m: metrics.get(m) for m in table.index}))
    # A count, not a target: nothing to compare it with, so its other cells stay empty.
    trades: dict[str, object] = {c: "" for c in table.columns}
    trades["paper"] = result.summary["trades"]
    if backtest is not None:
        trades["backtest"] = backtest[1]
    table.loc["trades"] = pd.Series(trades)
    return table.map(_cell)


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"  # no trades: no win rate, no Sharpe
    if isinstance(value, float):
        return round(value, 3)
    return value


def why_totals_differ(result: DemoResult, backtest_trades: int | None) -> list[str]:
    """Plain sentences on why the paper run and the vectorbt backtest do not match."""
    symbols = len({e.symbol for e in result.event_list}) or 1
    sleeve = float(START_CASH) / symbols
    lines = [
        f"Sizing: the backtest gives each of the {symbols} symbols its own sleeve of "
        f"{sleeve:,.0f} USDT and puts the whole sleeve into every trade; the paper engine "
        "trades one account and sizes each entry from its equity within the risk limits "
        "(at most 20 % per position, 30 % portfolio heat, 20 % kept in stablecoins).",
        "Fills: the backtest fills at the candle price plus a fixed slippage; paper orders walk "
        "a book built from the recorded candle (spread and depth from its range and volume), "
        "within the slippage band, so large orders pay more and some fill partly.",
        f"Safety: the paper engine refused {result.refused} entr"
        f"{'y' if result.refused == 1 else 'ies'} (risk checks or a tripped breaker) and its "
        f"breakers tripped {result.breaker_trips} time(s), each reset by the replay at the "
        "next event window; the backtest has no breakers.",
    ]
    if backtest_trades is not None and backtest_trades != result.summary["trades"]:
        lines.append(
            f"Trades: paper closed {result.summary['trades']}, the backtest {backtest_trades}; "
            "the difference comes from the refusals above and positions still open at the end."
        )
    return lines


def print_summary(
    result: DemoResult, table: pd.DataFrame, backtest_trades: int | None = None
) -> None:
    """Readable console summary."""
    typer.echo(
        f"paper run {result.run_id} ({result.exchange_id}): {result.events} unlock events, "
        f"{result.cycles} engine cycles, params {result.params.to_dict()}"
    )
    for key, value in result.summary.items():
        typer.echo(f"  {key:<20} {'n/a' if value is None else value}")
    typer.echo("")
    typer.echo(table.to_string())
    if "backtest" in table.columns:
        typer.echo("\nwhy paper and backtest differ:")
        for line in why_totals_differ(result, backtest_trades):
            typer.echo(f"  - {line}")


def report_path(result: DemoResult, out_dir: Path) -> Path:
    """A report file name no other store's or run's report has: store, run id, never reused."""
    identity = result.store_url or "unknown store"
    tag = hashlib.sha256(identity.encode()).hexdigest()[:8]
    stem = Path(identity.split("?")[0].rstrip("/")).stem or "store"
    base = f"demo-{re.sub(r'[^A-Za-z0-9_-]+', '-', stem)}-{tag}-run-{result.run_id}"
    path = out_dir / f"{base}.html"
    n = 2
    while path.exists():  # the same store recreated: its run ids start again
        path = out_dir / f"{base}-{n}.html"
        n += 1
    return path


def report_demo(
    result: DemoResult, table: pd.DataFrame, out_dir: Path, backtest_trades: int | None = None
) -> Path:
    """Write the HTML report for a demo run under a name of its own; returns its path."""
    path = report_path(result, out_dir)
    notes = [
        "Paper fills walk a synthetic book built from the recorded candle (spread and depth "
        "from its range and volume) and pay Binance's 0.1 % taker fee.",
        "The targets are reported, never tuned for: numbers are what the replay produced.",
        f"Parameters: {result.params.to_dict()}",
        f"Store: {result.store_url}, venue {result.exchange_id}",
    ]
    if "backtest" in table.columns:
        notes += [f"Why paper and backtest differ — {line}" for line in why_totals_differ(
            result, backtest_trades
        )]  # fmt: skip
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
