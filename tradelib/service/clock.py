"""The engine service's clock: the wall clock, or the local emulator's replay clock.

An engine must judge candles, staleness and the calendar by the market's time. Against a real
exchange that is the wall clock. In an offline rehearsal against the local Binance emulator
(`tradelib emulator`, `exchange.base_url` pointing at it) the market is a replay of recorded
days whose clock moves when the emulator is advanced: the service follows it, re-reading it on
every control tick, and lets wall time run on from the last reading in between — so if the
emulator stops answering, the clock still moves and the data turns stale, as it would live.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from tradelib.config import Settings
from tradelib.domain import require_utc
from tradelib.logs import get_logger

log = get_logger(__name__)

_PROBE_TIMEOUT_S = 2.0


class MarketClock:
    """The wall clock; `sync()` is a no-op."""

    kind = "system"

    def now(self) -> datetime:
        """The market's time now (aware UTC)."""
        return datetime.now(UTC)

    def sync(self) -> bool:
        """Re-read the market's clock; False when it could not be read (kept running)."""
        return True

    def describe(self) -> str:
        """One line for logs and the heartbeat."""
        return "system clock"


class EmulatorClock(MarketClock):
    """The replay clock of a local emulator at `base_url` (GET /_emulator/state)."""

    kind = "emulator"

    def __init__(self, base_url: str, at: datetime) -> None:
        self.base_url = base_url.rstrip("/")
        self._at = at
        self._read_at = time.monotonic()

    def now(self) -> datetime:
        """The replay time last read, plus the wall time since then."""
        return self._at + timedelta(seconds=time.monotonic() - self._read_at)

    def sync(self) -> bool:
        """Read the emulator's replay clock again; False (clock keeps running) if it is down."""
        at = read_emulator_clock(self.base_url)
        if at is None:
            return False
        self._at, self._read_at = at, time.monotonic()
        return True

    def describe(self) -> str:
        """One line for logs and the heartbeat."""
        return f"emulator replay clock of {self.base_url}"


def read_emulator_clock(base_url: str) -> datetime | None:
    """The replay time of the emulator at `base_url`, or None if it is not one (or is down)."""
    url = f"{base_url.rstrip('/')}/_emulator/state"
    try:
        with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_S) as answer:
            state = json.loads(answer.read())
        return require_utc(datetime.fromisoformat(state["now"]), "emulator clock")
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError):
        return None


def market_clock(settings: Settings) -> MarketClock:
    """The emulator's clock when `exchange.base_url` is a tradelib emulator, else the system's."""
    base_url = settings.exchange.base_url
    if base_url:
        at = read_emulator_clock(base_url)
        if at is not None:
            log.warning("market clock follows the emulator's replay clock", url=base_url, now=at)
            return EmulatorClock(base_url, at)
    return MarketClock()
