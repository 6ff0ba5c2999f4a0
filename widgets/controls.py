"""The dashboard's controls: paper/live, pause/resume, limits, close one position, cancel one
order, and the emergency stop.

Each button runs its `widgets.actions` call off the kernel's thread and shows the outcome in
words under the controls; the buttons stay disabled while an action runs so a double click
cannot send it twice. Who acts is the operator; why is the reason field, required for
everything except the emergency stop (stopping must stay one click and a confirmation).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as w

from tradelib.domain import Mode
from tradelib.errors import TradelibError
from tradelib.risk.overrides import ADJUSTABLE, plan_limit_change
from widgets.actions import Actions, LiveTerms, Outcome
from widgets.fmt import money, pct, price, qty
from widgets.model import OrderRow, PositionRow, Snapshot
from widgets.render import render_commands, show
from widgets.stop import StopReport

DEFAULT_STOP_REASON = "emergency stop from the dashboard"
NONE = "-"  # the dropdown value that stands for "nothing to pick"
Done = Callable[[Any, BaseException | None], None]
Runner = Callable[[Callable[[], Any], Done], None]


def _outcome_html(outcome: Outcome) -> str:
    tone = "tl-result-ok" if outcome.ok else "tl-result-bad"
    mark = "✓" if outcome.ok else "✗"
    return f'<div class="{tone}">{mark} {escape(outcome.message)}</div>'


def _button(text: str, style: str = "", width: str = "auto", tip: str = "") -> w.Button:
    return w.Button(
        description=text, button_style=style, tooltip=tip or text, layout=w.Layout(width=width)
    )


def _terms_html(terms: LiveTerms) -> str:
    limits = terms.limits
    rows = [
        ("Account", f"{terms.exchange}, API key “{terms.key_label}”"),
        ("Venue", terms.venue),
        ("Capital cap", f"${money(terms.capital_usd)} (live_capital_usd)"),
        ("Max position", pct(limits.max_position_pct, places=1) + " of the cap"),
        ("Portfolio heat", pct(limits.max_portfolio_heat_pct, places=1)),
        ("Daily loss limit", pct(limits.daily_loss_limit_pct, places=1)),
        (
            "Stop-loss / take-profit",
            f"{pct(limits.stop_loss_pct, places=1)} / {pct(limits.take_profit_pct, places=1)}",
        ),
        ("Open positions", str(limits.max_open_positions)),
        ("Stablecoin reserve", pct(limits.stablecoin_reserve_pct, places=0)),
    ]
    table = "".join(f"<tr><td>{escape(k)}</td><td><b>{escape(v)}</b></td></tr>" for k, v in rows)
    if terms.problems:
        check = "".join(f"<li>{escape(p)}</li>" for p in terms.problems)
        verdict = (
            '<div class="tl-result-bad">API key check FAILED — going live will be refused:'
            f"<ul>{check}</ul></div>"
        )
    else:
        verdict = (
            '<div class="tl-result-ok">API key check passed (no withdrawals, trading on, '
            "IP-restricted)</div>"
        )
    return (
        '<div class="tl-killbar" style="font-size:13px">GO LIVE: real money, these terms</div>'
        f'<table class="tl-kv">{table}</table>{verdict}'
    )


class ControlsPanel:
    """Mode toggle, pause, limits and the per-position / per-order overrides."""

    def __init__(
        self, actions: Actions, run: Runner, refresh: Callable[[], None], stale_after: float
    ) -> None:
        self.actions = actions
        self.run = run
        self.refresh = refresh
        self.stale_after = stale_after
        self.snapshot: Snapshot | None = None
        self._terms: LiveTerms | None = None
        self._busy = False

        self.reason = w.Text(
            placeholder="reason for the audit log (required)", layout=w.Layout(width="100%")
        )
        self.code = w.Password(placeholder="TOTP code", layout=w.Layout(width="120px"))
        self.result = w.HTML()
        self.result.add_class("tl-outcome")
        self.mode_label = w.HTML()
        self.go_live = _button(
            "Go LIVE…", "danger", tip="review the live terms, then confirm with a TOTP code"
        )
        self.go_paper = _button("Back to PAPER", "info", tip="stop trading live; no code needed")
        self.terms = w.HTML()
        self.confirm = w.Checkbox(
            description="I confirm: trade real money on these terms",
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.confirm_live = _button("Confirm LIVE", "danger", tip="uses the TOTP code above once")
        self.cancel_live = _button("Cancel")
        self.live_box = w.VBox(
            [self.terms, self.confirm, w.HBox([self.confirm_live, self.cancel_live])],
            layout=w.Layout(
                display="none", border="2px solid #c4161c", padding="6px", margin="4px 0"
            ),
        )
        self.pause = _button("Pause entries", "warning")
        self.pause_label = w.HTML()
        self.limit = w.Dropdown(options=sorted(ADJUSTABLE), layout=w.Layout(width="230px"))
        self.limit_value = w.Text(placeholder="new value", layout=w.Layout(width="90px"))
        self.limit_hint = w.HTML()
        self.apply_limit = _button("Set limit")
        self.position = w.Dropdown(options=[], layout=w.Layout(width="280px"))
        self.close = _button("Close position", "warning")
        self.order = w.Dropdown(options=[], layout=w.Layout(width="280px"))
        self.cancel = _button("Cancel order", "warning")
        self.commands = w.HTML()

        self.go_live.on_click(lambda _: self._review_live())
        self.cancel_live.on_click(lambda _: self._hide_live())
        self.confirm_live.on_click(lambda _: self._confirm_live())
        self.go_paper.on_click(lambda _: self._go_paper())
        self.pause.on_click(lambda _: self._toggle_pause())
        self.apply_limit.on_click(lambda _: self._change_limit())
        self.close.on_click(lambda _: self._close_position())
        self.cancel.on_click(lambda _: self._cancel_order())
        self.limit.observe(lambda _: self._limit_hint(), names="value")
        self.limit_value.observe(lambda _: self._limit_hint(), names="value")

        def row(*children: w.Widget) -> w.HBox:
            return w.HBox(
                list(children),
                layout=w.Layout(align_items="center", flex_flow="row wrap"),
            )

        self.widget = w.VBox(
            [
                w.HTML(
                    f'<div class="tl-h">Controls <span class="tl-sub">acting as '
                    f"<b>{escape(actions.operator)}</b></span></div>"
                ),
                row(self.reason),
                row(
                    w.HTML("Second factor"),
                    self.code,
                    w.HTML(
                        '<span class="tl-sub">for going live and loosening a '
                        "limit; each code works once</span>"
                    ),
                ),
                row(self.mode_label, self.go_live, self.go_paper),
                self.live_box,
                row(self.pause, self.pause_label),
                row(self.limit, self.limit_value, self.apply_limit, self.limit_hint),
                row(self.position, self.close),
                row(self.order, self.cancel),
                self.result,
                w.HTML('<div class="tl-h" style="margin-top:6px">Commands to the engine</div>'),
                self.commands,
            ],
            layout=w.Layout(width="100%"),
        )
        self._buttons = [
            self.go_live,
            self.go_paper,
            self.confirm_live,
            self.pause,
            self.apply_limit,
            self.close,
            self.cancel,
        ]

    # -- state from the snapshot ----------------------------------------------------------------

    def update(self, snapshot: Snapshot) -> None:
        """Show the account's mode, pause state, limits, positions and orders to act on."""
        self.snapshot = snapshot
        status = snapshot.status
        mode = status.account.mode
        live = mode is Mode.LIVE
        show(self.mode_label, f"Mode <b>{mode.value.upper()}</b>")
        self.go_live.layout.display = "none" if live else ""
        request = status.mode_request
        paper_possible = live or (request is not None and request.mode is Mode.LIVE)
        self.go_paper.layout.display = "" if paper_possible else "none"
        paused = status.pause.paused
        self.pause.description = "Resume entries" if paused else "Pause entries"
        self.pause.button_style = "success" if paused else "warning"
        show(
            self.pause_label,
            '<span class="tl-warn">entries paused</span>'
            if paused
            else '<span class="tl-sub">entries allowed</span>',
        )
        _set_options(
            self.limit,
            [(f"{name} = {getattr(status.limits, name)}", name) for name in sorted(ADJUSTABLE)],
        )
        _set_options(
            self.position,
            [
                (f"{p.symbol} {p.side.value} {qty(p.quantity)} · {p.strategy}", p.key)
                for p in snapshot.positions
            ]
            or [("no open position", NONE)],
        )
        _set_options(
            self.order,
            [
                (
                    f"{o.symbol} {o.side.value} {qty(o.quantity)} @ "
                    f"{price(o.price) if o.price else 'market'} · …{o.client_order_id[-6:]}",
                    o.client_order_id,
                )
                for o in snapshot.open_orders
            ]
            or [("no open order", NONE)],
        )
        show(self.commands, render_commands(snapshot.commands))
        self._limit_hint()

    def _limit_hint(self) -> None:
        if self.snapshot is None or not self.limit.value or not self.limit_value.value.strip():
            show(self.limit_hint, "")
            return
        try:
            plan = plan_limit_change(
                self.snapshot.status.limits, {self.limit.value: self.limit_value.value.strip()}
            )
        except TradelibError as exc:
            show(self.limit_hint, f'<span class="tl-down">{escape(str(exc))}</span>')
            return
        if not plan.changes:
            text = '<span class="tl-sub">no change</span>'
        elif plan.loosens:
            text = '<span class="tl-warn">loosens: needs the TOTP code</span>'
        else:
            text = '<span class="tl-up">tightens: no code needed</span>'
        show(self.limit_hint, text)

    # -- running actions ------------------------------------------------------------------------

    def _start(
        self,
        work: Callable[[], Outcome],
        after: Callable[[Outcome], None] | None = None,
        busy_text: str = "working…",
    ) -> None:
        if self._busy:
            return
        self._busy = True
        for button in self._buttons:
            button.disabled = True
        show(self.result, f'<span class="tl-sub">{escape(busy_text)}</span>')

        def done(outcome: Outcome | None, error: BaseException | None) -> None:
            self._busy = False
            for button in self._buttons:
                button.disabled = False
            if error is not None:
                outcome = Outcome(False, f"{type(error).__name__}: {error}")
            assert outcome is not None
            show(self.result, _outcome_html(outcome))
            if after is not None:
                after(outcome)
            self.refresh()

        self.run(work, done)

    def _mode(self) -> Mode:
        return self.snapshot.status.account.mode if self.snapshot else Mode.PAPER

    def _review_live(self) -> None:
        if self._busy:
            return
        self._busy = True
        show(self.result, '<span class="tl-sub">checking the API key with the exchange…</span>')

        def shown(terms: LiveTerms | None, error: BaseException | None) -> None:
            self._busy = False
            if error is not None or terms is None:
                show(
                    self.result,
                    _outcome_html(Outcome(False, f"cannot prepare going live: {error}")),
                )
                return
            self._terms = terms
            self.confirm.value = False
            warning = ""
            if self.snapshot is not None and self.snapshot.status.kill.engaged:
                warning = (
                    '<div class="tl-notice">The kill switch is engaged: a live engine sends no '
                    "order until someone releases it (`tradelib release`, TOTP).</div>"
                )
            show(self.terms, _terms_html(terms) + warning)
            show(self.result, "")
            self.live_box.layout.display = ""

        self.run(self.actions.live_terms, shown)

    def _hide_live(self) -> None:
        self.live_box.layout.display = "none"
        self._terms = None
        self.confirm.value = False

    def _confirm_live(self) -> None:
        terms = self._terms
        if terms is None:
            return
        code, reason, confirmed = self.code.value, self.reason.value, self.confirm.value
        self.code.value = ""  # a code works once; never leave it in the widget

        def after(outcome: Outcome) -> None:
            if outcome.ok:
                self._hide_live()

        self._start(
            lambda: self.actions.go_live(terms, confirmed, code, reason),
            after,
            "asking to go live…",
        )

    def _go_paper(self) -> None:
        reason = self.reason.value
        self._start(lambda: self.actions.go_paper(reason))

    def _toggle_pause(self) -> None:
        paused = bool(self.snapshot and self.snapshot.status.pause.paused)
        mode, reason = self._mode(), self.reason.value
        self._start(lambda: self.actions.set_paused(mode, not paused, reason))

    def _change_limit(self) -> None:
        mode, reason = self._mode(), self.reason.value
        name, value, code = self.limit.value, self.limit_value.value, self.code.value
        self.code.value = ""
        self._start(lambda: self.actions.change_limit(mode, name, value, reason, code))

    def _chosen_position(self) -> PositionRow | None:
        rows = self.snapshot.positions if self.snapshot else ()
        return next((p for p in rows if p.key == self.position.value), None)

    def _chosen_order(self) -> OrderRow | None:
        rows = self.snapshot.open_orders if self.snapshot else ()
        return next((o for o in rows if o.client_order_id == self.order.value), None)

    def _close_position(self) -> None:
        row, mode, reason = self._chosen_position(), self._mode(), self.reason.value
        if row is None:
            show(self.result, _outcome_html(Outcome(False, "pick an open position first")))
            return
        self._start(lambda: self.actions.close_position(mode, row, reason, self.stale_after))

    def _cancel_order(self) -> None:
        row, mode, reason = self._chosen_order(), self._mode(), self.reason.value
        if row is None:
            show(self.result, _outcome_html(Outcome(False, "pick an open order first")))
            return
        self._start(lambda: self.actions.cancel_order(mode, row, reason, self.stale_after))


def _set_options(control: w.Dropdown, options: list[tuple[str, str]]) -> None:
    """Replace a dropdown's options only when they changed, keeping the person's choice."""
    if [tuple(o) for o in control.options] == options:
        return
    chosen = control.value
    values = [value for _, value in options]
    control.options = options  # clears the selection
    control.value = chosen if chosen in values else (values[0] if values else None)


class EmergencyStop:
    """One red button; a confirmation (with optional flatten) engages the kill switch."""

    def __init__(
        self,
        actions: Actions,
        run_detached: Runner,
        refresh: Callable[[], None],
        mode: Callable[[], Mode],
    ) -> None:
        self.actions = actions
        self.run_detached = run_detached
        self.refresh = refresh
        self.mode = mode
        self.button = w.Button(
            description="■ EMERGENCY STOP",
            button_style="danger",
            tooltip="kill switch: cancel every open order (confirm next)",
            layout=w.Layout(width="240px", height="48px"),
        )
        self.button.add_class("tl-stop")
        self.flatten = w.Checkbox(
            description="also close every position (flatten)",
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.confirm = w.Button(
            description="CONFIRM STOP", button_style="danger", layout=w.Layout(width="140px")
        )
        self.confirm.add_class("tl-stop")
        self.cancel = w.Button(description="Cancel", layout=w.Layout(width="80px"))
        self.why = w.Text(value=DEFAULT_STOP_REASON, layout=w.Layout(width="100%"))
        self.result = w.HTML()
        self.box = w.VBox(
            [
                w.HTML(
                    "<b>Stop every engine on this store now?</b> Every open order is cancelled; "
                    "new orders are refused until someone releases the switch with a TOTP code."
                ),
                self.flatten,
                self.why,
                w.HBox([self.confirm, self.cancel]),
            ],
            layout=w.Layout(display="none", border="2px solid #c4161c", padding="6px"),
        )
        self.button.on_click(lambda _: self._ask())
        self.cancel.on_click(lambda _: self._close())
        self.confirm.on_click(lambda _: self._stop())
        self.widget = w.VBox(
            [self.button, self.box, self.result],
            layout=w.Layout(align_items="flex-end", width="300px", min_width="300px"),
        )

    def _ask(self) -> None:
        self.box.layout.display = ""

    def _close(self) -> None:
        self.box.layout.display = "none"
        self.flatten.value = False

    def _stop(self) -> None:
        flatten, mode, why = self.flatten.value, self.mode(), self.why.value
        self.confirm.disabled = True
        self._close()
        show(self.result, '<span class="tl-result-bad">ENGAGING the kill switch…</span>')

        def done(report: StopReport | None, error: BaseException | None) -> None:
            self.confirm.disabled = False
            text = report.summary() if report is not None else f"emergency stop failed: {error}"
            ok = report is not None and report.error is None and not report.failed
            show(self.result, _outcome_html(Outcome(ok, text)))
            self.refresh()

        self.run_detached(lambda: self.actions.emergency_stop(mode, flatten, why), done)
        self.refresh()
