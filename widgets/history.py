"""Trade and order history: filters (view, symbol, status, mode, date range) and paging.

The filters live in the widgets; a refresh only fills the table and the filter choices, and
never resets what the person picked (a symbol that disappeared stays selectable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from tradelib.domain import Mode
from widgets.activity import ORDER_STATUS_CHOICES, TRADE_STATUS_CHOICES
from widgets.model import HistoryFilter, HistoryPage, HistoryView
from widgets.render import render_history, render_pager, show

ALL = "all"
_SMALL = w.Layout(width="auto")


def _dropdown(description: str, options: list[str], width: str) -> w.Dropdown:
    return w.Dropdown(
        options=options,
        value=ALL,
        description=description,
        layout=w.Layout(width=width),
        style={"description_width": "initial"},
    )


class HistoryPanel:
    """Filters, pager and table of the history; calls `on_change` when a filter changes."""

    def __init__(self, on_change: Callable[[], None], page_size: int = 15) -> None:
        self._on_change = on_change
        self._page = 0
        self._syncing = False
        self.page_size = page_size
        self.view = w.ToggleButtons(
            options=[("Orders", HistoryView.ORDERS.value), ("Trades", HistoryView.TRADES.value)],
            value=HistoryView.ORDERS.value,
            style={"button_width": "64px"},
            layout=w.Layout(width="auto"),
        )
        self.symbol = _dropdown("Symbol", [ALL], "150px")
        self.status = _dropdown("Status", [ALL, *ORDER_STATUS_CHOICES], "170px")
        self.mode = _dropdown("Mode", [ALL, Mode.PAPER.value, Mode.LIVE.value], "120px")
        self.start = w.DatePicker(
            description="From",
            layout=w.Layout(width="170px"),
            style={"description_width": "initial"},
        )
        self.end = w.DatePicker(
            description="to", layout=w.Layout(width="150px"), style={"description_width": "initial"}
        )
        self.prev = w.Button(description="◀", tooltip="newer rows", layout=w.Layout(width="34px"))
        self.next = w.Button(description="▶", tooltip="older rows", layout=w.Layout(width="34px"))
        self.pager = w.HTML()
        self.table = w.HTML()
        for control in (self.view, self.symbol, self.status, self.mode, self.start, self.end):
            control.observe(self._filter_changed, names="value")
        self.prev.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(+1))
        filters = w.HBox(
            [self.view, self.symbol, self.status, self.mode],
            layout=w.Layout(flex_flow="row wrap", align_items="center"),
        )
        paging = w.HBox(
            [self.start, self.end, self.prev, self.next, self.pager],
            layout=w.Layout(flex_flow="row wrap", align_items="center"),
        )
        self.widget = w.VBox([filters, paging, self.table], layout=w.Layout(width="100%"))

    @property
    def filter(self) -> HistoryFilter:
        """What the widgets ask for now."""
        view = HistoryView(self.view.value)

        def chosen(control: w.Dropdown) -> Any:
            return None if control.value == ALL else control.value

        mode = chosen(self.mode)
        return HistoryFilter(
            view=view,
            symbol=chosen(self.symbol),
            status=chosen(self.status),
            mode=Mode(mode) if mode else None,
            start=self.start.value,
            end=self.end.value,
            page=self._page,
            page_size=self.page_size,
        )

    def _filter_changed(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        if change["owner"] is self.view:
            self._syncing = True
            try:
                choices = (
                    ORDER_STATUS_CHOICES if self.view.value == "orders" else TRADE_STATUS_CHOICES
                )
                self.status.options = [ALL, *choices]  # resets the status filter to "all"
            finally:
                self._syncing = False
        self._page = 0
        self._on_change()

    def _turn(self, step: int) -> None:
        self._page = max(0, self._page + step)
        self._on_change()

    def update(self, page: HistoryPage) -> None:
        """Show `page` (if it still matches the widgets' filters) and refresh the choices."""
        wanted = self.filter
        if (
            page.filter.view,
            page.filter.symbol,
            page.filter.status,
            page.filter.mode,
            page.filter.start,
            page.filter.end,
        ) != (wanted.view, wanted.symbol, wanted.status, wanted.mode, wanted.start, wanted.end):
            return  # a read started before the person changed a filter: the next one follows
        self._syncing = True
        try:
            chosen = self.symbol.value
            symbols = [ALL, *page.symbols]
            if chosen not in symbols:
                symbols.append(chosen)
            if list(self.symbol.options) != symbols:
                self.symbol.options = symbols  # resets the value: put the person's back
                self.symbol.value = chosen
            self._page = page.filter.page
        finally:
            self._syncing = False
        self.prev.disabled = page.filter.page <= 0
        self.next.disabled = page.filter.page + 1 >= page.pages
        show(self.pager, render_pager(page))
        show(self.table, render_history(page))
