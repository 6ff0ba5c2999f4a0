"""The JupyterLab dashboard: live positions, P&L, history, balances, status and controls.

`Dashboard` is the one object a notebook displays; `widgets.data` reads the store into plain
values (`widgets.model`), `widgets.aggregate` computes them, `widgets.render` and the views
draw them, `widgets.actions` is what each control does.
"""

from widgets.dashboard import Dashboard

__all__ = ["Dashboard"]
