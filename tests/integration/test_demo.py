"""`tradelib demo` as a user meets it: the kill switch, zero trades, report names, its log.

The replays here are short (two unlock events) and run on real recorded candles into real
stores; the vectorbt backtest is left out (its numba compile is not what is tested here).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from store_snapshot import snapshot
from typer.testing import CliRunner

from tradelib.cli import app
from tradelib.config import load_settings
from tradelib.control import RiskControl
from tradelib.engine.demo import DEMO_PARAMS, DemoResult, run_demo, summarise
from tradelib.engine.demo_report import (
    compare,
    print_summary,
    report_demo,
    report_path,
    why_totals_differ,
)
from tradelib.errors import KillSwitchEngaged
from tradelib.logs import configure_logging
from tradelib.store import Store, open_store

runner = CliRunner()
BACKTEST = ({"total_return_pct": 0.44, "sharpe": 0.09, "win_rate_pct": 43.2}, 3)


def _engage_kill(store: Store) -> None:
    settings = load_settings(store_url=store.url)
    control = RiskControl(
        store, settings, mode=settings.mode, exchange_id="binance",
        clock=lambda: datetime.now(UTC),
    )  # fmt: skip
    control.engage_kill("desk", "exchange incident")


def test_demo_while_the_kill_switch_is_engaged_says_so_and_runs_nothing(store_url: str) -> None:
    with open_store(store_url) as db:
        _engage_kill(db)
    before = snapshot(store_url)
    result = runner.invoke(app, ["demo", "--store", store_url, "--events", "1"])
    assert result.exit_code == 2, result.output
    assert "the kill switch is engaged" in result.output
    assert "by desk: exchange incident" in result.output
    assert 'tradelib release --reason "<why it is safe>" --code <TOTP code>' in result.output
    assert "Traceback" not in result.output and "TypeError" not in result.output
    assert snapshot(store_url) == before  # no run row, no order, no event


def test_run_demo_refuses_too_when_called_from_a_notebook(store: Store) -> None:
    import asyncio

    _engage_kill(store)
    settings = load_settings(store_url=store.url)
    with pytest.raises(KillSwitchEngaged, match="the kill switch is engaged"):
        asyncio.run(run_demo(settings, store, limit_events=1))
    assert store.list_runs(name="demo") == []


def _empty_result(run_id: int = 1, store_url: str = "duckdb:////tmp/a/tradelib.duckdb") -> Any:
    trades = pd.DataFrame(columns=["symbol", "side", "entry_time", "entry_price", "exit_time",
                                   "realized_pnl", "fees"])  # fmt: skip
    equity = pd.Series(dtype="float64", name="equity")
    return DemoResult(
        run_id=run_id, exchange_id=f"replay-{run_id}", params=DEMO_PARAMS, events=0, cycles=0,
        trades=trades, equity=equity, summary=summarise(trades, equity), store_url=store_url,
    )  # fmt: skip


def test_the_report_survives_zero_trades(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _empty_result()
    assert result.summary["sharpe"] is None and result.summary["win_rate_pct"] is None
    for backtest in (None, BACKTEST):
        table = compare(result, backtest)
        assert not table.isna().any().any()  # no NaN cell anywhere, the trades row included
        assert table.loc["sharpe", "paper"] == "n/a"
        assert table.loc["trades", "paper"] == 0
        print_summary(result, table, backtest[1] if backtest else None)
        path = report_demo(result, table, tmp_path, backtest[1] if backtest else None)
        assert "Summary" in path.read_text()
    assert "n/a" in capsys.readouterr().out


def test_reports_of_different_stores_and_recreated_stores_never_overwrite(tmp_path: Path) -> None:
    table = compare(_empty_result(), None)
    first = report_demo(_empty_result(1, "duckdb:////tmp/a/tradelib.duckdb"), table, tmp_path)
    other = report_demo(_empty_result(1, "duckdb:////tmp/b/tradelib.duckdb"), table, tmp_path)
    pg = report_demo(
        _empty_result(1, "postgresql://bob:***@db:5432/prod?schema=paper"), table, tmp_path
    )
    again = report_demo(_empty_result(1, "duckdb:////tmp/a/tradelib.duckdb"), table, tmp_path)
    assert len({first, other, pg, again}) == 4
    assert re.fullmatch(r"demo-tradelib-[0-9a-f]{8}-run-1\.html", first.name)
    assert again.name == first.name.replace(".html", "-2.html")
    assert "***" not in pg.name and "bob" not in pg.name
    assert report_path(_empty_result(1, "duckdb:////tmp/a/tradelib.duckdb"), tmp_path) == (
        tmp_path / first.name.replace(".html", "-3.html")
    )


async def test_a_replay_logs_its_expected_breaker_trips_as_info(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("pretty", "INFO")
    settings = load_settings(store_url=store.url)
    risk = settings.risk.model_copy(update={"max_consecutive_losses": 1})
    settings = settings.model_copy(update={"risk": risk})  # the first losing trade trips
    result = await run_demo(settings, store, limit_events=2)
    err = capsys.readouterr().err
    assert result.breaker_trips >= 1, "the replay should have tripped a breaker"
    assert "breaker event in the replay (expected)" in err
    assert not [line for line in err.splitlines() if "[error" in line], err
    table = compare(result, BACKTEST)
    assert table.loc["trades", "paper"] == result.summary["trades"]
    assert table.loc["trades", "backtest"] == 3
    assert list(table.loc["trades", ["comparison", "target", "paper meets", "source"]]) == [""] * 4
    print_summary(result, table, BACKTEST[1])
    out = capsys.readouterr().out
    assert "why paper and backtest differ:" in out
    assert f"breakers tripped {result.breaker_trips} time(s)" in out
    assert "own sleeve of" in out
    closed = replace(result, summary={**result.summary, "trades": 9})
    assert any("Trades: paper closed 9, the backtest 3" in s for s in why_totals_differ(closed, 3))
