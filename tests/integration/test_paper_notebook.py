"""papermill runs the production paper notebook with a real kernel, store and engine."""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest

from tradelib.store import open_store

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "paper_replay.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


@pytest.mark.slow
def test_papermill_runs_the_paper_job(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 'paper.duckdb'}"
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={
            "events": 3,
            "store_url": store_url,
            "run_backtest": False,
            "report_dir": str(tmp_path / "reports"),
        },
        kernel_name="python3",
        cwd=str(tmp_path),
    )
    executed = json.loads(out.read_text())
    text = json.dumps(executed)
    assert "3 events" in text
    assert list((tmp_path / "reports").glob("demo-*-run-*.html"))
    with open_store(store_url) as store:
        [run] = store.list_runs(name="demo")
        assert run.status == "succeeded"
        assert store.list_orders()  # the engine traded into this store
