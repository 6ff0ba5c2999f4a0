"""The production notebooks under papermill, against the emulator in another process.

The trading-cycle notebook runs twice through `run_notebook` (the scheduler's path: lock, run
record): the first run buys on the test event's unlock candle, the second — three candles
later on the emulator's clock — sells, on the same paper account carried by the store. The
daily-report notebook then reports that day and raises the seed's daily alerts.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import nbformat
import pytest
from service_fixtures import EmulatorProcess, heartbeat, strategy_files

from tradelib.domain import Mode, OrderStatus, Side
from tradelib.schedule.notebook import run_notebook
from tradelib.store import EngineState, RunStatus, open_store

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "notebooks" / "production"
CYCLE = PRODUCTION / "trading_cycle.ipynb"
REPORT = PRODUCTION / "daily_report.ipynb"


@pytest.mark.parametrize("notebook", [CYCLE, REPORT], ids=lambda p: p.name)
def test_production_notebooks_are_committed_clean_with_parameters(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb.cells if c.cell_type == "code")  # fmt: skip
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "store_url" in tagged[0].source


def test_every_notebook_is_executed_by_a_papermill_test() -> None:
    tests = "".join(p.read_text() for p in (ROOT / "tests" / "integration").glob("test_*.py"))
    notebooks = sorted((ROOT / "notebooks").rglob("*.ipynb"))
    assert CYCLE in notebooks and REPORT in notebooks
    missing = [
        str(nb.relative_to(ROOT)) for nb in notebooks
        if ".ipynb_checkpoints" not in nb.parts and f'"{nb.name}"' not in tests
    ]  # fmt: skip
    assert missing == [], f"notebooks no test executes with papermill: {missing}"


def _outputs(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return json.dumps([c.get("outputs", []) for c in cells])


@pytest.mark.slow
def test_scheduled_cycles_trade_paper_and_the_daily_report_alerts(
    duckdb_store_url: str, tmp_path: Path
) -> None:
    emulator = EmulatorProcess(tmp_path)
    emulator.start()
    params, calendar = strategy_files(tmp_path)
    cycle = {
        "mode": "paper",
        "base_url": emulator.url,
        "strategy": {"params_file": str(params), "calendar_file": str(calendar)},
    }
    try:
        emulator.advance()  # the unlock candle has closed
        first = run_notebook(duckdb_store_url, CYCLE, cycle, output_dir=tmp_path / "runs",
                             name="trading_cycle", triggered_by="schedule")  # fmt: skip
        assert first.status is RunStatus.SUCCEEDED, first.error
        assert first.output_path is not None and "1 orders" in _outputs(first.output_path)
        emulator.advance(3)  # the exit candle has closed
        second = run_notebook(duckdb_store_url, CYCLE, cycle, output_dir=tmp_path / "runs",
                              name="trading_cycle", triggered_by="schedule")  # fmt: skip
        assert second.status is RunStatus.SUCCEEDED, second.error
        report = run_notebook(
            duckdb_store_url, REPORT,
            {"base_url": emulator.url, "day": "2024-08-01"},
            output_dir=tmp_path / "runs", name="daily_report",
        )  # fmt: skip
        assert report.status is RunStatus.SUCCEEDED, report.error
    finally:
        emulator.stop()
    with open_store(duckdb_store_url) as store:
        orders = store.list_orders(mode=Mode.PAPER, exchange="binance")
        assert [(o.side, o.status) for o in orders] == [
            (Side.BUY, OrderStatus.FILLED), (Side.SELL, OrderStatus.FILLED)
        ]  # fmt: skip
        [closed] = store.list_positions(Mode.PAPER, include_closed=True, exchange="binance")
        usdt = store.list_balances(Mode.PAPER, exchange="binance")["USDT"].total
        assert usdt == Decimal(10_000) + closed.realized_pnl  # one account over two processes
        beat = heartbeat(store)
        assert beat is not None and beat.state is EngineState.STOPPED and beat.cycles == 1
        assert beat.detail["stopped_because"] == "one cycle done (scheduled notebook)"
        runs = store.list_runs(name="trading_cycle")
        assert [r.status for r in runs] == ["succeeded", "succeeded"]
        assert "store_url" not in runs[0].parameters  # it travels in the environment
        alerts = [e.payload for e in store.list_events(kind="alert")]
    kinds = {a["kind"] for a in alerts}
    assert {"daily_summary", "low_win_rate"} <= kinds  # one trade, a loss: 0 % < 35 %
    [summary] = [a["message"] for a in alerts if a["kind"] == "daily_summary"]
    assert summary.startswith("2024-08-01: P&L") and "1 trades" in summary
    shown = _outputs(report.output_path)  # type: ignore[arg-type]
    assert "application/vnd.plotly.v1+json" in shown and "low_win_rate" in shown


@pytest.mark.slow
def test_a_cycle_that_cannot_reach_the_exchange_fails_its_run(
    duckdb_store_url: str, tmp_path: Path
) -> None:
    from service_fixtures import free_port

    params, calendar = strategy_files(tmp_path)
    run = run_notebook(
        duckdb_store_url, CYCLE,
        {"base_url": f"http://127.0.0.1:{free_port()}",
         "strategy": {"params_file": str(params), "calendar_file": str(calendar)}},
        output_dir=tmp_path / "runs", name="trading_cycle",
    )  # fmt: skip
    assert run.status is RunStatus.FAILED
    assert run.error is not None and "ExchangeUnavailable" in run.error
    with open_store(duckdb_store_url) as store:
        assert store.list_orders() == []
        [alert] = [e.payload for e in store.list_events(kind="alert")]
    assert "trading_cycle failed" in alert["message"]
