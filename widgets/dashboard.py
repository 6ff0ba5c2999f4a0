"""`Dashboard`: the live view and the controls of one exchange account, in one notebook cell.

    from widgets import Dashboard
    Dashboard()                                  # the configured store and exchange
    Dashboard(store="postgresql://…", operator="alice")

It follows the store once a second on a worker thread (engines in other processes show up
through their heartbeats and the rows they write), redraws only what changed, says so when
the store cannot be reached and recovers when it can.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from tradelib.config import Settings, load_settings
from tradelib.domain import Mode
from tradelib.errors import ConfigError, StoreError
from tradelib.store import Store, open_store, redact_url
from widgets.actions import Actions, operator_name
from widgets.charts import PnlChart
from widgets.controls import ControlsPanel, EmergencyStop
from widgets.data import DashboardSource
from widgets.fmt import money
from widgets.follow import Follower, run_detached
from widgets.history import HistoryPanel
from widgets.model import HistoryFilter, Snapshot
from widgets.render import (
    Connection,
    render_alerts,
    render_balances,
    render_kill_bar,
    render_metrics,
    render_positions,
    render_problems,
    render_status,
    show,
)
from widgets.snapshot import DEFAULT_STALE_AFTER, SampleBook
from widgets.style import CSS
from widgets.venue import VenueFactory, stored_key_venue

if TYPE_CHECKING:
    from tradelib.engine import Engine

_OPEN: dict[tuple[str, str], Dashboard] = {}
_OPEN_GUARD = threading.Lock()


def _card(title: str, *children: w.Widget, flex: str = "1 1 auto") -> w.VBox:
    box = w.VBox(
        [w.HTML(f'<div class="tl-h">{title}</div>'), *children],
        layout=w.Layout(flex=flex, min_width="0", margin="0"),
    )
    box.add_class("tl-card")
    return box


class Dashboard:
    """Positions, P&L, metrics, history, balances, status, alerts and controls of an account.

    `store`: a store URL (or None for the configured one) — or an open `Store` whose URL is
    the configured one; the emergency stop opens its own handle from the URL. `engine`: an
    engine running in this kernel (its settings, exchange, mode and strategy are followed).
    `mode`: follow this mode instead of the running engine's. `paper_venue_url`: a
    Binance-compatible venue the paper account trades on (the local emulator, a testnet):
    the emergency stop cancels there with the stored key "main" (default: tradelib's paper
    kill). `live_venue`: the connection the go-live key check uses (default: the stored key
    "main" at the configured venue). `operator`: who acts (default: the OS user).
    """

    def __init__(
        self,
        store: Store | str | None = None,
        engine: Engine | None = None,
        *,
        settings: Settings | None = None,
        exchange: str | None = None,
        mode: Mode | str | None = None,
        strategy: str | None = None,
        operator: str | None = None,
        interval: float = 1.0,
        stale_after: float = DEFAULT_STALE_AFTER,
        paper_venue_url: str | None = None,
        live_venue: VenueFactory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        start: bool = True,
    ) -> None:
        self.settings = engine.settings if engine is not None else settings or load_settings()
        self._store: Store | None = None
        if isinstance(store, Store):
            if store.url != redact_url(self.settings.store_url):
                raise ConfigError(
                    f"Dashboard(store=<{store.url}>): the emergency stop opens its own handle "
                    "from the store URL, and the settings name "
                    f"{redact_url(self.settings.store_url)}; "
                    "pass the URL (Dashboard(store='…')) or settings with store_url set to it"
                )
            self._store, url = store, self.settings.store_url
        else:
            url = store or self.settings.store_url
        self.store_url = url
        self.exchange = (
            engine.exchange_id if engine is not None else exchange or self.settings.exchange.id
        )
        self.mode = Mode(mode) if mode else (engine.mode if engine is not None else None)
        self.strategy = engine.strategy.strategy_id if engine is not None else strategy
        self.stale_after = stale_after
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.connection = Connection(ok=False, error="connecting…")
        self._owns_store = self._store is None
        self._source: DashboardSource | None = None
        self._samples = SampleBook()
        self._store_lock = threading.Lock()
        self._first = asyncio.Event()
        self._acted = False
        self.actions = Actions(
            self._require_store,
            url,
            self.settings,
            exchange=self.exchange,
            operator=operator_name(operator),
            live_venue=live_venue or stored_key_venue(self._require_store, self.settings),
            stop_venues=(
                {Mode.PAPER: stored_key_venue(self._require_store, self.settings, paper_venue_url)}
                if paper_venue_url
                else {}
            ),
        )
        self.follower: Follower[Snapshot] = Follower(self._read, self._apply, self._fail, interval)
        self._build()
        if start:
            self._register()
            self.follower.start()

    # -- the store ------------------------------------------------------------------------------

    def _require_store(self) -> Store:
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.store_url)
            return self._store

    def _read(self) -> Snapshot:
        store = self._require_store()
        if self._source is None:
            self._source = DashboardSource(
                store,
                self.settings,
                exchange=self.exchange,
                mode=self.mode,
                strategy=self.strategy,
                stale_after=self.stale_after,
            )
        if self._acted:
            self._acted = False
            self._source.invalidate()
        return self._source.read(self._wanted, self._samples, self.clock())

    # -- layout ---------------------------------------------------------------------------------

    def _build(self) -> None:
        self._status = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self._kill = w.HTML()
        self._problems = w.HTML()
        self._metrics = w.HTML()
        self._positions = w.HTML()
        self._balances = w.HTML()
        self._alerts = w.HTML()
        self.chart = PnlChart()
        self.history = HistoryPanel(self._history_changed)
        self.sections: dict[str, w.HTML] = {
            "status": self._status, "kill": self._kill, "problems": self._problems,
            "metrics": self._metrics, "positions": self._positions, "balances": self._balances,
            "alerts": self._alerts, "history": self.history.table,
        }  # fmt: skip
        self._wanted: HistoryFilter = self.history.filter
        self.controls = ControlsPanel(
            self.actions, self.follower.submit, self._after_action, self.stale_after
        )
        self.sections["commands"] = self.controls.commands
        self.stop = EmergencyStop(self.actions, run_detached, self._after_action, self._mode)
        header = w.HBox([self._status, self.stop.widget], layout=w.Layout(align_items="flex-start"))
        left = w.VBox(
            [
                _card("P&amp;L", self.chart.figure),
                _card("Trade and order history", self.history.widget),
            ],
            layout=w.Layout(flex="3 1 0", min_width="0"),
        )
        right = w.VBox(
            [
                _card("Balances", self._balances),
                self._controls_card(),
                _card("Alerts and actions", self._alerts),
            ],
            layout=w.Layout(flex="2 1 0", min_width="0"),
        )
        self.widget = w.VBox(
            [
                w.HTML(CSS),
                header,
                self._kill,
                self._problems,
                self._metrics,
                _card("Open positions", self._positions),
                w.HBox([left, right], layout=w.Layout(width="100%")),
            ],
            layout=w.Layout(width="100%", padding="4px 0 0 0"),
        )
        self.widget.add_class("tl-dash")
        self.widget.add_class("tl-frame-paper")
        show(self._status, render_status_placeholder(self.exchange, self.connection))

    def _controls_card(self) -> w.VBox:
        box = w.VBox([self.controls.widget], layout=w.Layout(min_width="0"))
        box.add_class("tl-card")
        return box

    def _mode(self) -> Mode:
        if self.snapshot is not None:
            return self.snapshot.status.account.mode
        return self.mode or self.settings.mode

    def _after_action(self) -> None:
        self._acted = True  # our own write: read everything, whatever the token says
        self.follower.poke()

    def _history_changed(self) -> None:
        self._wanted = self.history.filter
        self.follower.poke()

    # -- updates --------------------------------------------------------------------------------

    def _apply(self, snapshot: Snapshot) -> None:
        self._first.set()
        previous = self.snapshot
        self.snapshot = snapshot
        self.connection = Connection(ok=True, refreshed_at=snapshot.at)
        status = snapshot.status
        live = status.account.mode is Mode.LIVE
        if previous is None or previous.status.account.mode is not status.account.mode:
            self.widget.remove_class("tl-frame-live" if not live else "tl-frame-paper")
            self.widget.add_class("tl-frame-live" if live else "tl-frame-paper")
        show(self._status, render_status(status, snapshot.at, self.connection))
        show(self._kill, render_kill_bar(status))
        show(self._problems, render_problems(self.connection, snapshot.notes))
        show(self._metrics, render_metrics(snapshot.metrics))
        show(self._positions, render_positions(snapshot.positions, self.settings.quote_currency))
        show(self._balances, render_balances(snapshot.balances))
        show(self._alerts, render_alerts(snapshot.alerts))
        self.chart.update(snapshot.pnl)
        self.history.update(snapshot.history)
        self.controls.update(snapshot)

    def _fail(self, error: BaseException) -> None:
        self._first.set()
        now = self.clock()
        since = self.connection.failing_since if not self.connection.ok else None
        self.connection = Connection(
            ok=False,
            refreshed_at=self.snapshot.at if self.snapshot else None,
            error=_describe(error),
            failing_since=since or now,
        )
        if self.snapshot is not None:
            show(self._status, render_status(self.snapshot.status, now, self.connection))
            show(self._problems, render_problems(self.connection, self.snapshot.notes))
        else:
            show(self._status, render_status_placeholder(self.exchange, self.connection))
            show(self._problems, render_problems(self.connection, ()))

    # -- public ---------------------------------------------------------------------------------

    def refresh(self) -> Snapshot | None:
        """Read the store now on this thread and redraw (tests, scripts); the last snapshot."""
        self.follower.read_once()
        return self.snapshot

    async def ready(self, timeout: float = 60.0) -> str:
        """Wait (without blocking the kernel) for the first read; return `summary()`."""
        await asyncio.wait_for(self._first.wait(), timeout)
        return self.summary()

    def summary(self) -> str:
        """One line of plain text: mode, engine, kill switch, positions, equity, store."""
        snap = self.snapshot
        if snap is None:
            return (
                f"dashboard on {redact_url(self.store_url)}: no data yet ({self.connection.error})"
            )
        status = snap.status
        engine = status.engine.liveness.value if status.engine else "none"
        equity = snap.valuation.equity_usd if snap.valuation else None
        kill = "ENGAGED" if status.kill.engaged else "off"
        return (
            f"{status.account.mode.value.upper()} {status.account.exchange}: engine {engine}, "
            f"kill switch {kill}, {len(snap.positions)} open position(s), "
            f"{len(snap.open_orders)} open order(s), equity ${money(equity)}, "
            f"store {redact_url(self.store_url)} {'ok' if self.connection.ok else 'UNREACHABLE'}"
        )

    def close(self) -> None:
        """Stop following the store and close the store this dashboard opened."""
        self.follower.stop()
        with _OPEN_GUARD:
            key = (redact_url(self.store_url), self.exchange)
            if _OPEN.get(key) is self:
                del _OPEN[key]
        if self._owns_store and self._store is not None:
            self._store.close()
            self._store = None

    def _register(self) -> None:
        # Re-running the notebook cell makes a new dashboard: the old one stops following.
        key = (redact_url(self.store_url), self.exchange)
        with _OPEN_GUARD:
            old = _OPEN.get(key)
            _OPEN[key] = self
        if old is not None and old is not self:
            old.follower.stop()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<Dashboard {self.summary()}>"


def _describe(error: BaseException) -> str:
    if isinstance(error, StoreError | ConfigError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def render_status_placeholder(exchange: str, connection: Connection) -> str:
    """The status line before the first successful read."""
    text = "connecting to the store…" if connection.error == "connecting…" else "store unreachable"
    return (
        f'<div class="tl-status"><div class="tl-badge tl-idle"><b>{exchange}</b>'
        f'<span class="tl-sub">{text}</span></div></div>'
    )
