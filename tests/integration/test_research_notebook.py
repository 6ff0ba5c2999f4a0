"""The research notebook runs end to end under papermill on a real kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tradelib.strategy import TokenUnlockParams

papermill = pytest.importorskip("papermill")
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "research_token_unlock.ipynb"
GRID = {"days_before": [1, 3], "days_after": [0, 1], "stop_loss_pct": [2, 4]}


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1


@pytest.mark.slow
def test_papermill_run_writes_params_and_oos_table(tmp_path: Path) -> None:
    params_out = tmp_path / "paper" / "token_unlock.json"
    oos_out = tmp_path / "oos.csv"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        parameters={
            "params_out": str(params_out),
            "oos_out": str(oos_out),
            "grid": GRID,
            "fold_starts": ["2024-01-01", "2024-07-01"],
            "interactive": False,
        },
        kernel_name="python3",
        cwd=str(NOTEBOOK.parent.parent),
    )
    doc = json.loads(params_out.read_text())
    assert doc["strategy"] == "token_unlock" and doc["interface_version"] == 1
    chosen = TokenUnlockParams.load_json(params_out)
    for name, values in GRID.items():
        assert getattr(chosen, name) in values
    assert "test_start" not in doc["metrics"]  # test metrics of the chosen set, numbers only
    assert set(doc["metrics"]) >= {"total_return_pct", "max_drawdown_pct", "sharpe", "n_trades"}

    oos = pd.read_csv(oos_out)
    for column in (
        "fold",
        "train_events",
        "test_events",
        "test_total_return_pct",
        "test_monthly_return_pct",
        "test_max_drawdown_pct",
        "test_win_rate_pct",
        "test_sharpe",
        "test_n_trades",
    ):
        assert column in oos.columns, column
    assert list(oos["fold"]) == ["fold1", "fold2", "all test folds (chained)"]
    assert (oos["test_n_trades"].iloc[:2] >= 0).all()

    nb = nbformat.read(executed, as_version=4)
    shown = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "monthly_return_pct" in shown and "phase-1 backtest" in shown
    assert json.dumps(chosen.to_dict(), indent=2) in shown
