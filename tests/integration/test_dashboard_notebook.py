"""papermill runs `notebooks/live_dashboard.ipynb` with a real kernel on a seeded store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import papermill as pm
import pytest

from tradelib.domain import Mode, Position, Side, StrategyId
from tradelib.operations.valuation import HEARTBEAT_KEY, AccountValuation
from tradelib.store import EngineState, HeartbeatRecord, open_store

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "live_dashboard.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_notebook_is_committed_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in cells if c["cell_type"] == "code")  # fmt: skip
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


@pytest.mark.slow
def test_papermill_opens_the_dashboard_on_the_configured_store(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 'dash.duckdb'}"
    now = datetime.now(UTC)
    with open_store(store_url) as store:
        store.ensure_strategy("unlock", {})
        store.upsert_position(Position(
            strategy_id=StrategyId("unlock"), exchange="binance", symbol="ARB/USDT",
            side=Side.BUY, quantity=Decimal(1000), average_entry=Decimal("0.6"), opened_at=now,
            mode=Mode.PAPER,
        ), current_price=Decimal("0.61"), at=now)  # fmt: skip
        valuation = AccountValuation(
            at=now, equity_usd=Decimal("10010.25"), cash_usd=Decimal(9400),
            stablecoin_usd=Decimal(9400), unrealised_usd=Decimal(10), daily_pnl_usd=Decimal(3),
            day_start_equity_usd=Decimal(10007), peak_equity_usd=Decimal(10011),
        )  # fmt: skip
        store.beat(HeartbeatRecord(
            mode=Mode.PAPER, exchange="binance", strategy="unlock", state=EngineState.RUNNING,
            pid=1, host="h", started_at=now - timedelta(minutes=1), beat_at=now,
            last_cycle_at=now, detail={HEARTBEAT_KEY: valuation.to_detail(), "beat_every_s": 120},
        ))  # fmt: skip
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK), str(out),
        parameters={"store_url": store_url, "operator": "papermill"},
        kernel_name="python3", cwd=str(tmp_path),
    )  # fmt: skip
    cells = json.loads(out.read_text())["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs), "the dashboard widget"
    printed = "".join("".join(o.get("text", "")) for o in outputs if o.get("name") == "stdout")
    assert "PAPER binance: engine alive, kill switch off, 1 open position(s)" in printed
    assert "equity $10,010.25" in printed and "ok" in printed
