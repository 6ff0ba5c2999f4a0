"""Drive the paper engine through recorded history, window by window around unlock events.

Hours with nothing to decide are skipped: the clock jumps to a little before each event's entry
time and steps one candle at a time until the event's exit time has passed and no position or
order is left, so a replay over two years of events takes seconds, not hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tradelib.domain import Mode
from tradelib.engine.core import CycleReport, Engine
from tradelib.errors import ConfigError
from tradelib.exchange.paper import PaperExchange
from tradelib.strategy.calendar import UnlockEvent
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import entry_exit_times

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of history the engine must see candle by candle."""

    start: datetime
    end: datetime
    symbols: tuple[str, ...]


def event_windows(
    events: Sequence[UnlockEvent], params: TokenUnlockParams, bar: timedelta, warmup: int = 2
) -> list[Window]:
    """Merged windows from `warmup` bars before each entry to one bar after each exit."""
    raw: list[Window] = []
    for event in events:
        entry_ns, _, exit_ns = entry_exit_times(event, params)
        start = _floor(datetime.fromtimestamp(entry_ns / _NS, tz=UTC), bar) - bar * warmup
        end = datetime.fromtimestamp(exit_ns / _NS, tz=UTC) + bar
        raw.append(Window(start, end, (f"{event.symbol}/USDT",)))
    raw.sort(key=lambda w: w.start)
    merged: list[Window] = []
    for window in raw:
        if merged and window.start <= merged[-1].end:
            last = merged[-1]
            symbols = tuple(sorted(set(last.symbols) | set(window.symbols)))
            merged[-1] = Window(last.start, max(last.end, window.end), symbols)
        else:
            merged.append(window)
    return merged


async def replay_windows(
    engine: Engine,
    exchange: PaperExchange,
    windows: Sequence[Window],
    max_overrun: int = 24 * 14,
    reset_breakers: bool = False,
) -> list[CycleReport]:
    """Run the engine through every window; positions still open at a window's end are
    followed (up to `max_overrun` more bars) until their exits fill.

    With `reset_breakers` (paper research replays only), breakers tripped in one window are
    reset — audited, by "replay" — before the next, so every event is traded and the run shows
    the strategy rather than the first three losses; the resets are counted in the events.
    """
    reports: list[CycleReport] = []
    bar = engine.candles.bar
    for window in windows:
        if exchange.source.now() < window.start:
            await exchange.advance_to(window.start)
        if reset_breakers:
            _reset_tripped(engine, window)
        engine.symbols[:] = sorted(set(window.symbols) | _held(engine))
        engine.candles.symbols = list(engine.symbols)
        overrun = 0
        while True:
            reports.append(await engine.run_once())
            now = exchange.source.now()
            busy = _held(engine) or _open_orders(engine)
            if now >= window.end and (not busy or overrun >= max_overrun):
                break
            if now >= window.end:
                overrun += 1
            await exchange.advance_to(now + bar)
    return reports


def _floor(when: datetime, bar: timedelta) -> datetime:
    """`when` rounded down to a candle boundary, so cycles run when candles close."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((when - epoch) // bar) * bar


def _reset_tripped(engine: Engine, window: Window) -> None:
    if engine.mode is not Mode.PAPER:
        raise ConfigError("breakers are reset by a replay only in paper mode")
    for trip in engine.control.breaker_state().trips:
        engine.control.reset_breaker(
            trip.breaker, "replay", f"new event window from {window.start.isoformat()}", None
        )


def _held(engine: Engine) -> set[str]:
    return {p.symbol for p in engine.positions.positions()}


def _open_orders(engine: Engine) -> bool:
    return bool(engine.open_orders())
