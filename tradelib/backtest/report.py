"""Notebook helpers: equity/drawdown figure, the interactive re-run panel, send-to-paper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tradelib.backtest.metrics import compare_to_targets, drawdown_series
from tradelib.backtest.run import BacktestResult, backtest
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent
from tradelib.strategy.params import TokenUnlockParams


def equity_figure(equity: pd.Series, title: str = "Equity and drawdown") -> Any:
    """Plotly figure: equity on top, drawdown (%) below."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3])
    fig.add_scatter(x=equity.index, y=equity.values, name="equity", row=1, col=1)
    dd = drawdown_series(equity)
    fig.add_scatter(x=dd.index, y=dd.values, name="drawdown %", fill="tozeroy", row=2, col=1)
    fig.update_layout(title=title, height=500, margin={"l": 40, "r": 20, "t": 50, "b": 30})
    return fig


def send_to_paper(
    params: TokenUnlockParams, path: Path | str, note: str = "", metrics: Mapping | None = None
) -> Path:
    """Save `params` as the strategy's configuration for the paper engine (JSON at `path`)."""
    extra: dict[str, Any] = {"note": note}
    if metrics is not None:
        extra["metrics"] = {k: (None if pd.isna(v) else float(v)) for k, v in metrics.items()}
    return params.save_json(path, extra)


def interactive_panel(
    candles: Mapping[str, pd.DataFrame],
    calendar: UnlockCalendar | Sequence[UnlockEvent],
    base: TokenUnlockParams,
    params_out: Path | str,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> Any:
    """Sliders that re-run one backtest (~0.1 s once compiled) and a send-to-paper button."""
    import ipywidgets as w
    import plotly.graph_objects as go

    sliders = {
        "days_before": w.FloatSlider(value=base.days_before, min=0.5, max=7, step=0.5),
        "days_after": w.FloatSlider(value=base.days_after, min=0, max=7, step=0.5),
        "stop_loss_pct": w.FloatSlider(value=base.stop_loss_pct, min=0.5, max=10, step=0.5),
        "take_profit_pct": w.FloatSlider(value=base.take_profit_pct, min=1, max=30, step=1),
        "trailing_activation_pct": w.FloatSlider(
            value=base.trailing_activation_pct, min=0, max=20, step=0.5
        ),
        "trailing_distance_pct": w.FloatSlider(
            value=base.trailing_distance_pct, min=0.5, max=10, step=0.5
        ),
        "min_unlock_pct": w.FloatSlider(value=base.min_unlock_pct, min=0, max=20, step=0.5),
    }
    for name, slider in sliders.items():
        slider.description = name
        slider.continuous_update = False
        slider.style = {"description_width": "160px"}
        slider.layout = w.Layout(width="480px")
    figure = go.FigureWidget(equity_figure(pd.Series([1.0], index=[pd.Timestamp.now("UTC")])))
    table = w.Output()
    status = w.HTML()
    state: dict[str, Any] = {}

    def current() -> TokenUnlockParams:
        values = {k: s.value for k, s in sliders.items()}
        return TokenUnlockParams.from_dict({**base.to_dict(), **values})

    def rerun(_: Any = None) -> None:
        try:
            params = current()
            result: BacktestResult = backtest(candles, calendar, params, start=start, end=end)
        except Exception as exc:  # shown to the analyst instead of a dead widget
            status.value = f"<b style='color:#b00'>{exc}</b>"
            return
        state["params"], state["result"] = params, result
        dd = result.drawdown
        with figure.batch_update():
            figure.data[0].x, figure.data[0].y = result.equity.index, result.equity.values
            figure.data[1].x, figure.data[1].y = dd.index, dd.values
        table.clear_output()
        with table:
            from IPython.display import display

            display(compare_to_targets(result.metrics))
        status.value = f"{int(result.metrics['n_trades'])} trades"

    def send(_: Any) -> None:
        if "params" in state:
            path = send_to_paper(
                state["params"], params_out, "interactive panel", state["result"].metrics
            )
            status.value = f"saved to {path}"

    for slider in sliders.values():
        slider.observe(rerun, names="value")
    button = w.Button(description="Send these parameters to paper", button_style="warning")
    button.on_click(send)
    rerun()
    return w.VBox([*sliders.values(), button, status, figure, table])
