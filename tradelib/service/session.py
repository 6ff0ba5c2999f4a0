"""One engine on one account, from taking its lock to writing "stopped".

Two loops share the engine. The cycle loop runs `Engine.run_once()` when a candle of the
strategy's timeframe closes by the market clock (woken early by the candle stream), and again
every few seconds while a symbol's newest candle has not arrived yet. The control tick
(`TICK_SECONDS`) re-reads the market clock, checks the run lock, enforces an engaged kill
switch, carries out commands, follows the paper/live switch, keeps the paper account in the
store and writes the heartbeat. Anything that sends or cancels orders holds `gate`, so a
cycle, a command and the kill enforcement never interleave on one order; the executor's guard
refuses new orders from the moment the switch is engaged, even mid-cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tradelib.config import Settings
from tradelib.domain import Mode, OrderStatus
from tradelib.engine.core import CycleReport, Engine
from tradelib.errors import LockLost, TradelibError
from tradelib.locks import RunLock, account_lock_name, acquire_lock
from tradelib.logs import get_logger
from tradelib.marketdata.events import CandleClosed, MarketEvent
from tradelib.marketdata.streamer import MarketDataStreamer
from tradelib.operations import mode_request
from tradelib.operations.steering import PauseState
from tradelib.operations.valuation import HEARTBEAT_KEY as VALUATION_KEY
from tradelib.risk.killswitch import KillSwitchState
from tradelib.service.clock import MarketClock
from tradelib.service.commands import execute_command
from tradelib.service.heartbeat import TICK_SECONDS, Heartbeat, wall_now
from tradelib.service.live import open_live
from tradelib.service.setup import StrategyConfig, build_strategy, wanted_symbols
from tradelib.service.venue import Venue, open_paper_venue
from tradelib.store import EngineState, Store
from tradelib.strategy.token_unlock import TokenUnlockStrategy

log = get_logger(__name__)

CANDLE_GRACE = timedelta(seconds=60)  # wall time to wait for a just-closed candle to show up
RETRY_SECONDS = 2.0
_OPEN = [s for s in OrderStatus if not s.is_terminal]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Why a session ended and what the service does next."""

    reason: str
    switch_to: Mode | None = None
    failed: bool = False


def take_account_lock(settings: Settings, mode: Mode, purpose: str = "tradelib run") -> RunLock:
    """The run lock of (mode, exchange): AlreadyRunning while another engine trades it."""
    exchange = settings.exchange.id
    return acquire_lock(
        settings.store_url, account_lock_name(mode, exchange),
        f"{purpose} --mode {mode.value} --exchange {exchange}",
    )  # fmt: skip


class EngineSession:
    """Lock, venue, reconciled engine, streams and heartbeat of one (mode, exchange)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        config: StrategyConfig,
        mode: Mode,
        clock: MarketClock,
        actor: str,
        totp_code: str | None = None,
        ignored_grants: frozenset[datetime] = frozenset(),
        tick: float = TICK_SECONDS,
        lock: RunLock | None = None,
    ) -> None:
        self.settings = settings.model_copy(update={"mode": mode})
        self.store = store
        self.config = config
        self.mode = mode
        self.clock = clock
        self.actor = actor
        self.totp_code = totp_code
        self.ignored_grants = ignored_grants
        self.tick = tick
        self.exchange_id = settings.exchange.id
        self.gate = asyncio.Lock()
        self.wake = asyncio.Event()
        self.lock: RunLock | None = lock
        self.venue: Venue | None = None
        self.engine: Engine | None = None
        self.strategy: TokenUnlockStrategy | None = None
        self.heartbeat: Heartbeat | None = None
        self.outcome: Outcome | None = None
        self.stopping = False
        self.started_at = wall_now()
        self.last_report: CycleReport | None = None
        self._listed: set[str] = set()
        self._done_close: datetime | None = None
        self._pending_close: datetime | None = None
        self._first_try = wall_now()
        self._attempt = 0
        self._retry_at: datetime | None = None
        self._enforced: KillSwitchState | None = None
        self._enforce_retry: datetime | None = None
        self._balances: dict[str, Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._streamer: MarketDataStreamer | None = None
        self._streams = False
        self._last_error: tuple[str, datetime] | None = None

    # -- opening and closing ------------------------------------------------------------------

    async def open(self, purpose: str = "tradelib run", streams: bool = True) -> None:
        """Take the account's lock, open the venue, build and reconcile the engine; with
        `streams`, follow the order stream and the candle stream until closed."""
        if self.lock is None:
            self.lock = take_account_lock(self.settings, self.mode, purpose)
        strategy_id = self.config.strategy_id or TokenUnlockStrategy.name
        self.heartbeat = Heartbeat(self.store, self.mode, self.exchange_id, strategy_id)
        self.heartbeat.detail.update(clock=self.clock.describe(), lock=self.lock.holder,
                                     strategy_config=self.config.to_dict())  # fmt: skip
        try:
            self._beat(EngineState.STARTING)
            await self._open_engine(streams)
        except BaseException as exc:
            await self._release(EngineState.FAILED, f"could not start: {exc}")
            raise

    async def cycle_once(self) -> CycleReport:
        """One full cycle now (a scheduled notebook's cycle), then the control work after it."""
        async with self.gate:
            await self._cycle()
        await self._tick()
        assert self.last_report is not None
        return self.last_report

    async def _open_engine(self, streams: bool) -> None:
        assert self.lock is not None
        if self.mode is Mode.LIVE:
            start = await open_live(self.settings, self.store, totp_code=self.totp_code,
                                    actor=self.actor, now=wall_now())  # fmt: skip
            self.venue = start.venue
            self.settings = self.settings.model_copy(
                update={"live_capital_usd": start.capital_usd}
            )
        else:
            self.venue = open_paper_venue(self.settings, self.store, self.clock.now)
        markets = await self.venue.exchange.load_markets()
        quote = self.settings.quote_currency
        self._listed = {s for s, m in markets.items() if m.quote == quote}
        self.strategy = strategy = build_strategy(self.config, {m.base for m in markets.values()})
        held = {p.symbol for p in self.store.list_positions(self.mode, exchange=self.exchange_id)}
        symbols = wanted_symbols(strategy, self.clock.now(), quote, self._listed, held,
                                 self.config.lead_bars)  # fmt: skip
        self.engine = Engine(self.settings, self.store, self.venue.exchange, strategy,
                             symbols=symbols, clock=self.clock.now)  # fmt: skip
        assert self.heartbeat is not None
        capital = str(self.settings.live_capital_usd) if self.mode is Mode.LIVE else None
        self.heartbeat.strategy = strategy.strategy_id
        self.heartbeat.detail["live_capital_usd"] = capital
        self._beat(EngineState.STARTING)
        try:
            await self.engine.start()  # reconcile: on failure trading stays halted, cycles retry
        except TradelibError as exc:
            log.error("engine start failed: trading halted until reconciliation succeeds",
                      error=str(exc))  # fmt: skip
            self.heartbeat.detail["halted"] = str(exc)
        if streams:
            self._tasks.append(asyncio.create_task(self._follow(), name="order stream"))
            self._restart_streamer()
        self._streams = streams
        log.info("engine running", mode=self.mode.value, exchange=self.exchange_id,
                 symbols=symbols, clock=self.clock.describe())  # fmt: skip

    async def close(self, outcome: Outcome) -> None:
        """Finish the cycle in flight, stop the streams, persist, beat 'stopped', unlock."""
        self.stopping = True
        self.wake.set()
        async with self.gate:  # nothing that sends or cancels is in flight any more
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._streamer is not None:
                await self._streamer.stop()
            if self.engine is not None:
                with contextlib.suppress(TradelibError):
                    await self._persist_balances(force=True)
                with contextlib.suppress(TradelibError):
                    self.store.save_execution_state(replace(self.engine.state, is_running=False))
        state = EngineState.FAILED if outcome.failed else EngineState.STOPPED
        await self._release(state, outcome.reason)

    async def _release(self, state: EngineState, why: str) -> None:
        if self.heartbeat is not None:
            held = len(self.engine.positions.positions()) if self.engine else 0
            with contextlib.suppress(TradelibError):
                self._beat(state, stopped_because=why, open_positions=held)
        if self.venue is not None:
            await self.venue.close()
        if self.lock is not None:
            self.lock.release()

    # -- the two loops ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Cycle and tick until `stop` is set or the session must end; returns why."""
        cycles = asyncio.create_task(self._cycles(), name="cycles")
        try:
            while self.outcome is None:
                if cycles.done():  # a bug in a cycle: stop this engine (fail closed), say why
                    error = cycles.exception()
                    log.error("engine cycle crashed", error=repr(error), exc_info=error)
                    self.outcome = Outcome(f"engine cycle crashed: {error!r}", failed=True)
                    break
                await self._tick()
                if stop.is_set() and self.outcome is None:
                    self.outcome = Outcome("stop requested (SIGTERM/SIGINT)")
                if self.outcome is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.tick)
        finally:
            self.stopping = True
            self.wake.set()
            with contextlib.suppress(Exception):
                await cycles
        return self.outcome

    async def _cycles(self) -> None:
        while not self.stopping:
            if self._cycle_due():
                async with self.gate:
                    if not self.stopping:
                        await self._cycle()
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.tick)

    def _latest_close(self, now: datetime) -> datetime:
        assert self.engine is not None
        bar = self.engine.candles.bar
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + ((now - epoch) // bar) * bar

    def _cycle_due(self) -> bool:
        if self.engine is None:
            return False
        latest = self._latest_close(self.clock.now())
        if self._done_close is not None and latest <= self._done_close:
            return False
        if latest == self._pending_close and self._retry_at is not None:
            return wall_now() >= self._retry_at  # this close is being retried: wait for it
        return True

    async def _cycle(self) -> None:
        engine = self.engine
        assert engine is not None and self.heartbeat is not None
        now = self.clock.now()
        close = self._latest_close(now)
        self._refresh_symbols(now)
        try:
            report = await engine.run_once()
        except TradelibError as exc:  # the store failed under the engine: say so, try again
            self._error("cycle failed", exc)
            self._retry_at = wall_now() + timedelta(seconds=RETRY_SECONDS)
            return
        self.last_report = report
        self.heartbeat.cycled()
        if self._pending_close != close:
            self._pending_close, self._first_try, self._attempt = close, wall_now(), 0
        before = close - engine.candles.bar
        missing = [s for s in engine.symbols if engine.candles.last_update.get(s, before) < close]
        # A cycle the exchange cut short is tried again (backing off) until the next candle;
        # a candle the exchange has not published yet is waited for, within CANDLE_GRACE.
        failed = report.halted is not None and not engine.control.kill_state().engaged
        waiting = report.halted is None and missing and wall_now() - self._first_try < CANDLE_GRACE
        if failed or waiting:
            self._attempt += 1
            delay = min(RETRY_SECONDS * 2 ** min(self._attempt - 1, 4), 30.0)
            self._retry_at = wall_now() + timedelta(seconds=delay)
        else:
            self._done_close, self._retry_at = close, None
        if report.orders or report.exits:
            await self._persist_balances(force=True)
        self._beat(EngineState.RUNNING)

    # -- the control tick ---------------------------------------------------------------------

    async def _tick(self) -> None:
        try:
            await asyncio.to_thread(self.clock.sync)
            assert self.lock is not None
            await asyncio.to_thread(self.lock.check)
        except LockLost as exc:
            log.error("run lock lost: stopping this engine at once", error=str(exc))
            self.outcome = Outcome(str(exc), failed=True)
            return
        if self.engine is None:
            return
        try:
            await self._enforce_kill()
            await self._commands()
            self._follow_mode_switch()
            self.engine.flush_events()
            await self._persist_balances()
            self._beat(EngineState.RUNNING)
        except TradelibError as exc:
            self._error("control tick failed", exc)

    async def _enforce_kill(self) -> None:
        engine = self.engine
        assert engine is not None
        state = engine.control.kill_state()
        if not state.engaged:
            self._enforced = None
            return
        retry = self._enforce_retry is not None and wall_now() >= self._enforce_retry
        if state == self._enforced and not retry:
            return
        async with self.gate:
            actions = await engine.enforce_kill_switch()
        engine.flush_events()
        failed = any("-> FAILED" in a.reason for a in actions)
        self._enforced = state
        self._enforce_retry = wall_now() + timedelta(seconds=5) if failed else None
        log.warning("kill switch enforced by the engine", actions=len(actions), failed=failed)

    async def _commands(self) -> None:
        engine = self.engine
        assert engine is not None
        if self.stopping:
            return
        for command in self.store.claim_commands(self.mode, self.exchange_id, self.actor,
                                                 wall_now()):  # fmt: skip
            async with self.gate:
                await execute_command(engine, command, self.actor, wall_now())

    def _follow_mode_switch(self) -> None:
        engine = self.engine
        assert engine is not None and self.heartbeat is not None
        request = mode_request(self.store, self.exchange_id)
        if request is None:
            return
        self.heartbeat.detail["mode_requested"] = request.mode.value
        if (
            self.mode is Mode.PAPER
            and request.grant_usable(wall_now())
            and request.at not in self.ignored_grants
        ):
            self.outcome = Outcome(f"going live: confirmed by {request.by}", Mode.LIVE)
        elif self.mode is Mode.LIVE and request.mode is Mode.PAPER and request.at > self.started_at:
            open_orders = self.store.list_orders(statuses=_OPEN, mode=self.mode,
                                                 exchange=self.exchange_id)  # fmt: skip
            held = engine.positions.positions()
            if not held and not open_orders:
                self.outcome = Outcome(f"back to paper: asked by {request.by}", Mode.PAPER)
                return
            why = (f"back to paper asked by {request.by}: no new live entries; the exits of "
                   f"{len(held)} open live position(s) keep working, then the engine switches "
                   "(flatten with the kill switch to switch now)")  # fmt: skip
            engine.hold = PauseState(True, request.at, request.by, why)
            self.heartbeat.detail["winding_down"] = why

    # -- helpers ------------------------------------------------------------------------------

    def _refresh_symbols(self, now: datetime) -> None:
        engine = self.engine
        assert engine is not None and self.strategy is not None
        held = {p.symbol for p in engine.positions.positions()}
        held |= {o.symbol for o in self.store.list_orders(statuses=_OPEN, mode=self.mode,
                                                          exchange=self.exchange_id)}  # fmt: skip
        symbols = wanted_symbols(self.strategy, now, self.settings.quote_currency, self._listed,
                                 held, self.config.lead_bars)  # fmt: skip
        if symbols != engine.symbols:
            log.info("symbols followed", symbols=symbols)
            engine.symbols[:] = symbols
            engine.candles.symbols = list(symbols)
            if self._streams:
                self._restart_streamer()

    def _restart_streamer(self) -> None:
        engine, venue = self.engine, self.venue
        assert engine is not None and venue is not None
        old, self._streamer = self._streamer, None
        if old is not None:
            self._tasks.append(asyncio.create_task(old.stop(), name="old candle stream"))
        if not engine.symbols:
            return
        # The candle stream only wakes the cycle early; the engine judges staleness itself.
        streamer = MarketDataStreamer(
            venue.market, engine.symbols, (engine.strategy.timeframe,), trades=False,
            order_book=False, stale_after=engine.candles.bar * 2, clock=self.clock.now,
        )  # fmt: skip
        streamer.add_callback(self._on_market_event)
        self._streamer = streamer
        self._tasks.append(asyncio.create_task(streamer.start(), name="candle stream"))

    def _on_market_event(self, event: MarketEvent) -> None:
        if isinstance(event, CandleClosed):
            self.wake.set()  # the cycle loop decides whether a cycle is due

    async def _follow(self) -> None:
        """The exchange's order stream, restarted after any failure (reconnects inside)."""
        engine = self.engine
        assert engine is not None
        delay = 1.0
        while True:
            try:
                await engine.executor.follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error("order stream failed; restarting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _persist_balances(self, force: bool = False) -> None:
        """Keep the store's balances current (paper: the store is the paper account)."""
        engine = self.engine
        assert engine is not None
        if self.mode is Mode.LIVE and not force:
            return
        balances = await engine.exchange.fetch_balances()
        if force or balances != self._balances:
            await engine.reconciler.sync_balances()
            self._balances = balances

    def _beat(self, state: EngineState, **extra: Any) -> None:
        engine, heartbeat = self.engine, self.heartbeat
        assert heartbeat is not None
        detail: dict[str, Any] = dict(extra)
        if engine is not None:
            report = self.last_report
            kill = engine.control.kill_state()
            detail.update(
                market_time=self.clock.now().isoformat(),
                symbols=list(engine.symbols),
                paused=engine.paused.paused,
                paused_reason=engine.paused.reason,
                kill_switch=kill.engaged,
                open_positions=len(engine.positions.positions()),
                open_orders=len(engine.open_orders()),
                halted=report.halted if report else heartbeat.detail.get("halted"),
                last_report=report.as_json() if report else None,
            )
            if engine.valuation is not None:  # what the dashboard values the account with
                detail[VALUATION_KEY] = engine.valuation.to_detail()
        heartbeat.beat(state, **detail)

    def _error(self, what: str, exc: BaseException) -> None:
        """Log an error once a minute per distinct message (a tick runs twice a second)."""
        text = f"{type(exc).__name__}: {exc}"
        now = wall_now()
        last = self._last_error
        if last is None or last[0] != text or now - last[1] > timedelta(minutes=1):
            log.error(what, error=text)
            self._last_error = (text, now)
