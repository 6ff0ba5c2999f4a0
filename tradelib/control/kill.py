"""`kill()` / `kill_async()`: engage and enforce the kill switch from anywhere.

Usable from a notebook cell, a thread, the CLI or the dashboard while an engine (or a stuck
strategy) runs elsewhere: it opens its OWN store handle and its OWN exchange connection and
never waits for the engine's event loop. The switch is engaged (persisted) first, so even if
the exchange cannot be reached every process's guard already refuses new entries.

The exchange: live mode uses the API key pair "main" of `settings.exchange.id` from the
secrets store (TRADELIB_MASTER_KEY decrypts it). Paper mode has no remote venue — the paper
exchange of a running engine lives in that engine's process (which enforces the switch on its
next cycle); this function builds a PaperExchange on the replay data seeded from the store's
paper state (balances, and enough of each position's base asset to close it), so it can cancel
the store's paper orders and flatten the store's paper positions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import UTC, datetime

from tradelib.config import Settings, load_settings
from tradelib.control.enforce import enforce_kill
from tradelib.control.risk_control import RiskControl
from tradelib.domain import Mode, OrderStatus
from tradelib.exchange.base import Exchange
from tradelib.exchange.factory import open_exchange, open_paper_exchange
from tradelib.logs import get_logger
from tradelib.orders.executor import OrderExecutor
from tradelib.position.exits import ExitRules
from tradelib.position.manager import PositionManager
from tradelib.risk.killswitch import KillAction
from tradelib.secrets import SecretBox, load_credentials, load_master_key
from tradelib.store import Store, open_store
from tradelib.store.records import Liveness

log = get_logger(__name__)

KEY_LABEL = "main"


def _now() -> datetime:
    return datetime.now(UTC)


def open_kill_exchange(settings: Settings, store: Store) -> Exchange:
    """A fresh exchange connection for enforcing the switch (see the module docstring)."""
    if settings.mode is Mode.LIVE:
        creds = load_credentials(
            store, SecretBox(load_master_key()), settings.exchange.id, KEY_LABEL
        )
        return open_exchange(settings, api_key=creds.api_key, api_secret=creds.api_secret)
    return open_paper_exchange(settings, store)


def paper_engine_alive(store: Store, settings: Settings) -> bool:
    """True while an engine (`tradelib run`) beats for this paper account: the paper venue
    lives in its process, so only it can cancel or flatten there."""
    beat = store.get_heartbeat(Mode.PAPER, settings.exchange.id)
    stale_after = float(beat.detail.get("stale_after_seconds", 10)) if beat else 0.0
    return beat is not None and beat.liveness(_now(), stale_after) is Liveness.ALIVE


def _paper_work(store: Store, settings: Settings, flatten: bool) -> bool:
    """True when the store holds paper orders to cancel or (flatten) paper positions to close."""
    venue = settings.exchange.id
    live = [s for s in OrderStatus if not s.is_terminal]
    if store.list_orders(statuses=live, mode=Mode.PAPER, exchange=venue):
        return True
    return flatten and bool(store.list_positions(Mode.PAPER, exchange=venue))


async def kill_async(
    *,
    flatten: bool = False,
    reason: str = "manual kill",
    by: str = "api",
    settings: Settings | None = None,
    store_url: str | None = None,
    exchange: Exchange | None = None,
) -> list[KillAction]:
    """Engage the kill switch and enforce it now; returns every action with its outcome.

    `exchange`, if given, must belong to the running event loop and is not closed; otherwise
    one is opened (and closed) here with `open_kill_exchange`.
    """
    settings = settings or load_settings()
    store = open_store(store_url or settings.store_url)
    owned: Exchange | None = None
    try:
        exchange_id = settings.exchange.id
        control = RiskControl(
            store, settings, mode=settings.mode, exchange_id=exchange_id, clock=_now, actor=by
        )
        control.engage_kill(by, reason, flatten)
        paper = settings.mode is Mode.PAPER
        if exchange is None and paper and not _paper_work(store, settings, flatten):
            return []  # a fresh paper venue holds nothing: no orders, no positions to act on
        if exchange is None and paper and paper_engine_alive(store, settings):
            return []  # the running engine holds the paper venue: it enforces within 2 s
        if exchange is None:
            exchange = owned = open_kill_exchange(settings, store)
        positions = PositionManager(
            store,
            mode=settings.mode,
            exchange_id=exchange_id,
            exit_rules=ExitRules.from_settings(settings.risk),
            clock=_now,
        )
        held = positions.rebuild()
        executor = OrderExecutor(
            store,
            exchange,
            exchange_id=exchange_id,
            mode=settings.mode,
            clock=_now,
            on_fill=positions.on_fill,
            guard=control.guard,
        )
        return await enforce_kill(control, executor, exchange, held, ())
    finally:
        if owned is not None:
            await owned.close()
        store.close()


def kill(
    *,
    flatten: bool = False,
    reason: str = "manual kill",
    by: str = "api",
    settings: Settings | None = None,
    store_url: str | None = None,
    exchange: Exchange | None = None,
) -> list[KillAction]:
    """Synchronous `kill_async`: works in a plain thread and inside a notebook's running loop.

    Inside a running event loop (a Jupyter cell) it runs on a worker thread with its own loop,
    so it never waits for that loop; pass no `exchange` there (one bound to another loop
    cannot be used from the worker's loop).
    """

    def run() -> list[KillAction]:
        return asyncio.run(
            kill_async(
                flatten=flatten,
                reason=reason,
                by=by,
                settings=settings,
                store_url=store_url,
                exchange=exchange,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tradelib-kill") as pool:
        return pool.submit(run).result()
