"""The real-time P&L chart: equity above, daily P&L against the daily loss limit below.

A plotly `FigureWidget` (anywidget-based in plotly >= 6, rendered by JupyterLab 4 through the
anywidget extension): its traces are updated in place, in one batch, and only when the
series changed, so the chart never flickers and keeps the person's zoom.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from widgets.model import PnlView

UP = "#1a7f37"
DOWN = "#cf222e"
AMBER = "#bf8700"
EQUITY = "#0b5cad"


def _floats(values: list[Decimal]) -> list[float]:
    return [float(v) for v in values]


class PnlChart:
    """Equity and daily P&L with the loss-limit and alert lines, redrawn only on change."""

    def __init__(self, height: int = 380) -> None:
        base = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            row_heights=[0.58, 0.42],
            vertical_spacing=0.07,
            subplot_titles=("Equity (USD)", "Daily P&L vs daily loss limit (USD)"),
        )
        self.figure = go.FigureWidget(base)
        fig = self.figure
        # (row, name, style, hover): the order is the order of `figure.data` in `update`.
        traces = (
            (1, "equity", {"line": {"color": EQUITY, "width": 2}}, "%{x}<br>$%{y:,.2f}"),
            (2, "daily P&L", {"fill": "tozeroy", "line": {"color": UP, "width": 1.5}},
             "%{x}<br>%{y:+,.2f}"),
            (2, "loss limit", {"line": {"color": DOWN, "width": 2, "dash": "dash"}},
             "limit %{y:,.2f}"),
            (2, "alert level", {"line": {"color": AMBER, "width": 1, "dash": "dot"}},
             "alert %{y:,.2f}"),
        )  # fmt: skip
        for row, name, style, hover in traces:
            trace = go.Scatter(name=name, mode="lines", x=[], y=[],
                               hovertemplate=f"{hover}<extra></extra>", **style)  # fmt: skip
            fig.add_trace(trace, row=row, col=1)
        fig.update_layout(
            height=height,
            margin={"l": 60, "r": 12, "t": 28, "b": 28},
            template="plotly_white",
            showlegend=True,
            uirevision="keep",
            legend={
                "orientation": "h",
                "x": 1,
                "xanchor": "right",
                "y": 1.12,
                "font": {"size": 10},
            },
            font={"size": 11},
            hovermode="x unified",
        )
        fig.update_yaxes(tickformat=",.2f", row=1, col=1)
        fig.update_yaxes(tickformat="+,.2f", zeroline=True, row=2, col=1)
        for annotation in fig.layout.annotations:
            annotation.font = {"size": 11}
            annotation.x = 0
            annotation.xanchor = "left"
        self._shown: object = None

    def update(self, view: PnlView) -> bool:
        """Redraw from `view` if its data changed; True when it did."""
        key = (view.points, view.loss_limit_usd, view.alert_level_usd)
        if key == self._shown:
            return False
        self._shown = key
        times: list[datetime] = [p.at for p in view.points]
        daily = [p for p in view.points if p.daily_pnl is not None]
        span = [times[0], times[-1]] if times else []
        latest = daily[-1].daily_pnl if daily else None
        colour = DOWN if latest is not None and latest < 0 else UP
        with self.figure.batch_update():
            equity, pnl, limit, alert = self.figure.data
            equity.x, equity.y = times, _floats([p.equity for p in view.points])
            pnl.x = [p.at for p in daily]
            pnl.y = _floats([p.daily_pnl for p in daily if p.daily_pnl is not None])
            pnl.line.color = colour
            pnl.fillcolor = (
                f"rgba({int(colour[1:3], 16)},{int(colour[3:5], 16)},{int(colour[5:7], 16)},0.18)"
            )
            if view.loss_limit_usd is not None and span:
                limit.x, limit.y = span, [float(view.loss_limit_usd)] * 2
                limit.name = f"loss limit {view.loss_limit_usd:,.2f}"
            else:
                limit.x, limit.y = [], []
            if view.alert_level_usd is not None and span:
                alert.x, alert.y = span, [float(view.alert_level_usd)] * 2
            else:
                alert.x, alert.y = [], []
        return True
