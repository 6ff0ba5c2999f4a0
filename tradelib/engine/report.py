"""Self-contained HTML report of a paper run (plots work offline: plotly.js is embedded)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{cells}</table>"


def equity_figure(equity: pd.Series, title: str) -> go.Figure:
    """Equity and drawdown, one above the other."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3])
    figure.add_trace(go.Scatter(x=equity.index, y=equity.values, name="equity (USD)"), 1, 1)
    if len(equity):
        drawdown = (equity / equity.cummax() - 1) * 100
        figure.add_trace(
            go.Scatter(x=drawdown.index, y=drawdown.values, name="drawdown %", fill="tozeroy"),
            2,
            1,
        )
    figure.update_layout(title=title, height=600, margin={"t": 60, "b": 30})
    return figure


def write_report(
    path: Path,
    title: str,
    summary: dict[str, Any],
    equity: pd.Series,
    trades: pd.DataFrame,
    comparison: pd.DataFrame | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write one HTML file with the summary, the equity/drawdown plot and the trade list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = equity_figure(equity, title).to_html(full_html=False, include_plotlyjs=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        _table(summary),
    ]
    if comparison is not None:
        parts += ["<h2>Against the targets and the backtest</h2>", comparison.to_html()]
    parts += ["<h2>Equity</h2>", figure, "<h2>Trades</h2>", trades.to_html(index=False)]
    if notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
