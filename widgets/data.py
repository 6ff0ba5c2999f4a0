"""The dashboard's queries: one `Reading` of an exchange account from the store.

This is the only module of the dashboard that reads the store. It runs on a worker thread
(never the kernel's). Each tick it reads the engines' heartbeats (one small query, which
also proves the store answers) and the store's change token, and reads the rest again only
when the token or a heartbeat moved, the account's mode changed or the person changed the
history filters; the snapshot itself is made by `widgets.snapshot` (pure).
"""

from __future__ import annotations

from datetime import datetime

from tradelib.config import RiskSettings, Settings
from tradelib.control import BREAKERS_CONTROL, KILL_CONTROL
from tradelib.domain import Mode, Position
from tradelib.errors import ConfigError
from tradelib.operations import effective_limits, limits_key, mode_request, pause_state
from tradelib.orders.reconcile import halt_reason
from tradelib.risk import BreakerState, KillSwitchState
from tradelib.store import HeartbeatRecord, Store
from widgets.activity import FEED_KINDS, OPEN_STATUSES, history_page
from widgets.model import HistoryFilter, HistoryPage, HistoryView, Snapshot
from widgets.snapshot import (
    DEFAULT_STALE_AFTER,
    Reading,
    SampleBook,
    build,
    choose_mode,
    engines,
)


class DashboardSource:
    """Reads snapshots of one exchange account (its mode follows the running engine)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        exchange: str | None = None,
        mode: Mode | None = None,
        strategy: str | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
    ) -> None:
        self.store = store
        self.settings = settings
        self.exchange = exchange or settings.exchange.id
        self.fixed_mode = mode
        self.strategy = strategy
        self.stale_after = stale_after
        self.reads = 0  # full passes over the store, for the curious (and the tests)
        self._last: Reading | None = None

    def read(self, wanted: HistoryFilter, samples: SampleBook, now: datetime) -> Snapshot:
        """The account at `now` (wall clock) and the wanted history page."""
        token = self.store.change_token()
        # One small query every tick, whatever the token says: a store that stopped
        # answering must show as unreachable even while nobody writes to it.
        beats = self._beats()
        last = self._last
        fresh = last is not None and last.token == token and last.beats == beats
        views = engines(beats, now, self.stale_after)
        mode = self.fixed_mode or choose_mode(views, self.settings.mode)
        if not (fresh and last is not None and last.mode is mode and last.wanted == wanted):
            last = self._last = self._read(token, mode, wanted, beats)
        return build(last, views, self.settings, self.strategy, samples, now)

    def invalidate(self) -> None:
        """Read the store again next time (after a change of our own, whose notification
        another process's token may not have seen yet)."""
        self._last = None

    def _beats(self) -> tuple[HeartbeatRecord, ...]:
        return tuple(b for b in self.store.list_heartbeats() if b.exchange == self.exchange)

    def _read(
        self, token: int, mode: Mode, wanted: HistoryFilter, beats: tuple[HeartbeatRecord, ...]
    ) -> Reading:
        store, exchange = self.store, self.exchange
        self.reads += 1
        beat = next((b for b in beats if b.mode is mode), None)
        strategy = self.strategy or (beat.strategy if beat else None)
        limits, notes = self._limits(mode)
        kill = store.get_control(KILL_CONTROL)
        breakers = store.get_control(f"{BREAKERS_CONTROL}:{mode.value}:{exchange}")
        overrides = (store.get_control(limits_key(mode, exchange)) or {}).get("overrides")
        return Reading(
            token=token,
            exchange=exchange,
            mode=mode,
            wanted=wanted,
            beats=beats,
            kill=KillSwitchState.from_dict(kill) if kill else KillSwitchState(),
            trips=BreakerState.from_dict(breakers).trips if breakers else (),
            halt=halt_reason(store),
            pause=pause_state(store, mode, exchange),
            request=mode_request(store, exchange),
            limits=limits,
            overrides=tuple(sorted((overrides or {}).items())),
            records=tuple(store.list_position_records(mode, exchange=exchange)),
            state=store.load_execution_state(strategy, mode) if strategy else None,
            stored_balances={
                a: (b.free, b.locked) for a, b in store.list_balances(mode, exchange).items()
            },
            cycles=tuple(
                e
                for e in store.list_events(kind="cycle", limit=500)
                if e.payload.get("exchange", exchange) == exchange
                and e.payload.get("mode", mode.value) == mode.value
            ),
            events=(
                *store.list_events(kind="alert", limit=60),
                *(e for e in store.list_events(limit=300) if e.kind in FEED_KINDS),
            ),
            open_orders=tuple(store.list_orders(OPEN_STATUSES, mode=mode, exchange=exchange)),
            commands=tuple(store.list_commands(mode, exchange, limit=8)),
            history=self._history(wanted),
            notes=notes,
        )

    def _limits(self, mode: Mode) -> tuple[RiskSettings, tuple[str, ...]]:
        try:
            return effective_limits(self.store, self.settings.risk, mode, self.exchange), ()
        except ConfigError as exc:
            note = f"stored limit overrides are invalid, showing settings: {exc}"
            return self.settings.risk, (note,)

    def _history(self, wanted: HistoryFilter) -> HistoryPage:
        store = self.store
        if wanted.view is HistoryView.ORDERS:
            orders = store.list_orders(mode=wanted.mode, exchange=self.exchange)
            return history_page(orders, (), wanted)
        modes = [wanted.mode] if wanted.mode else [Mode.PAPER, Mode.LIVE]
        closed: list[Position] = []
        for mode in modes:
            closed.extend(
                p
                for p in store.list_positions(mode, include_closed=True, exchange=self.exchange)
                if p.closed_at is not None
            )
        return history_page((), closed, wanted)
