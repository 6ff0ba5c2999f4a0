"""`tradelib run`: the long-running engine service of one exchange account.

    run_service(settings, StrategyConfig(), mode=Mode.PAPER)      # until SIGTERM / SIGINT

It runs one `EngineSession` at a time and moves between paper and live when asked:

* paper -> live: a go-live request with an unused grant (the dashboard's toggle, confirmed
  with TOTP) makes the service stop its paper engine cleanly and start the live one; if the
  live start is refused (key check, expired grant), it says why (critical alert, audited) and
  goes on trading paper, ignoring that request.
* live -> paper: new live entries stop at once; the exits of open live positions keep working
  and the service switches to paper once no live position or order is left (engage the kill
  switch with flatten to switch now). A live position is never left unmanaged by a switch.
  Paper positions stay in the store while live trades and are managed again back in paper.

Stopping (SIGTERM/SIGINT) finishes the cycle in flight — no order is left half-written —
then writes the heartbeat "stopped". A live engine that stops with positions open says so in
a critical alert: nobody manages them until it is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
from collections.abc import Callable
from datetime import datetime

from tradelib.alerts import Alert, AlertKind, AlertRouter, LogSink, Severity, StoreSink
from tradelib.config import Settings
from tradelib.domain import Mode
from tradelib.errors import AlreadyRunning, NeedsPerson, TradelibError
from tradelib.locks import RunLock
from tradelib.logs import get_logger
from tradelib.operations import mode_request
from tradelib.service.clock import MarketClock, market_clock
from tradelib.service.heartbeat import TICK_SECONDS, wall_now
from tradelib.service.session import EngineSession, Outcome, take_account_lock
from tradelib.service.setup import StrategyConfig
from tradelib.store import Store, open_store
from tradelib.webhooks import webhook_sinks

log = get_logger(__name__)

RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def service_actor() -> str:
    """Who the service acts as in commands, audits and claims: user, host and pid."""
    return f"tradelib-run:{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


class EngineService:
    """One account's engine, kept running (and switched between paper and live) until stopped."""

    def __init__(
        self,
        settings: Settings,
        config: StrategyConfig,
        *,
        mode: Mode,
        totp_code: str | None = None,
        tick: float = TICK_SECONDS,
        clock: MarketClock | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.mode = mode
        self.totp_code = totp_code
        self.tick = tick
        self.clock = clock
        self.actor = service_actor()
        self.exit_reason = ""

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Run until `stop` is set (or a session fails for good); returns the last outcome."""
        # The lock comes first: a second engine is refused with who holds the account, before
        # it touches the store (a DuckDB file would refuse it less helpfully).
        lock = take_account_lock(self.settings, self.mode)
        try:
            store = open_store(self.settings.store_url)
        except BaseException:
            lock.release()
            raise
        try:
            clock = self.clock
            if clock is None:
                clock = await asyncio.to_thread(market_clock, self.settings)
            return await self._sessions(store, clock, stop, lock)
        finally:
            store.close()

    async def _sessions(
        self, store: Store, clock: MarketClock, stop: asyncio.Event, lock: RunLock | None
    ) -> Outcome:
        mode, code = self.mode, self.totp_code
        ignored: set[datetime] = set()
        failures = 0
        switching_from: Mode | None = None
        while True:
            session = EngineSession(
                self.settings, store, self.config, mode, clock, self.actor, code,
                frozenset(ignored), self.tick, lock,
            )  # fmt: skip
            code, lock = None, None  # a TOTP code is good for one start only
            try:
                await session.open()
            except AlreadyRunning:
                raise
            except NeedsPerson as exc:
                if switching_from is None:
                    raise  # the person who started it must fix it (config, keys, TOTP)
                request = mode_request(store, self.settings.exchange.id)
                if request is not None:
                    ignored.add(request.at)
                self._alert(store, f"switch to {mode.value} refused, staying "
                                   f"{switching_from.value}: {exc}")  # fmt: skip
                mode, switching_from = switching_from, None
                continue
            except TradelibError as exc:  # the exchange or the store is down: try again
                wait = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
                failures += 1
                log.error("engine could not start; retrying", error=str(exc), seconds=wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    return Outcome(f"stopped while starting: {exc}", failed=True)
                continue
            failures = 0
            try:
                outcome = await session.run(stop)
            except BaseException as exc:  # a bug in the control tick: close down cleanly
                outcome = Outcome(f"engine failed: {exc!r}", failed=True)
                await session.close(outcome)
                raise
            await session.close(outcome)
            if mode is Mode.LIVE and session.engine is not None:
                held = session.engine.positions.positions()
                if held and outcome.switch_to is None:
                    self._alert(store, f"the live engine stopped ({outcome.reason}) with "
                                       f"{len(held)} open position(s): nobody manages their "
                                       "exits until it runs again")  # fmt: skip
            log.warning("engine stopped", mode=mode.value, reason=outcome.reason)
            if outcome.switch_to is None:
                return outcome
            switching_from, mode = mode, outcome.switch_to

    def _alert(self, store: Store, message: str) -> None:
        router = AlertRouter(
            [LogSink(), StoreSink(store.append_event), *webhook_sinks(self.settings.alerts)]
        )
        data = {"exchange": self.settings.exchange.id}
        router.emit(Alert(AlertKind.ENGINE, Severity.CRITICAL, message, wall_now(),
                          data=data))  # fmt: skip


def run_service(
    settings: Settings,
    config: StrategyConfig,
    *,
    mode: Mode,
    totp_code: str | None = None,
    tick: float = TICK_SECONDS,
) -> Outcome:
    """Run the service in this process until SIGTERM/SIGINT; returns how it ended."""

    async def main() -> Outcome:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopper(stop, sig))
        service = EngineService(settings, config, mode=mode, totp_code=totp_code, tick=tick)
        return await service.run(stop)

    return asyncio.run(main())


def _stopper(stop: asyncio.Event, sig: signal.Signals) -> Callable[[], None]:
    def handler() -> None:
        if stop.is_set():
            log.warning("already stopping: finishing the cycle in flight", signal=sig.name)
        else:
            log.warning("stopping: the cycle in flight finishes first", signal=sig.name)
        stop.set()

    return handler
