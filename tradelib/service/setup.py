"""What a long-running engine (or one scheduled cycle) trades: strategy, parameters, symbols.

The strategy configuration is the same for `tradelib run`, the trading-cycle notebook and the
scheduler: parameters saved by the research notebook ("send to paper"), the unlock calendar
(bundled, or a file of one's own), an optional strategy id. Symbols follow the calendar: an
engine watches a symbol from shortly before an eligible event's entry until its exit, plus
whatever it still holds, so an hourly cycle fetches candles only for what can trade.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tradelib.domain import require_utc
from tradelib.errors import ConfigError
from tradelib.strategy.calendar import UnlockCalendar, load_calendar
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy, eligible_events, entry_exit_times

# The spot variant: what a spot account can execute (the demo's parameters).
DEFAULT_PARAMS = TokenUnlockParams(direction="spot", days_after=4.0)
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    """Which parameters and calendar an engine trades; every field has a sensible default."""

    params_file: Path | None = None
    calendar_file: Path | None = None
    strategy_id: str | None = None
    lead_bars: int = 2  # watch a symbol this many candles before its entry can come

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> StrategyConfig:
        """From a notebook parameter / schedule entry: {"params_file", "calendar_file", ...}."""
        values = dict(values or {})
        known = {"params_file", "calendar_file", "strategy_id", "lead_bars"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown strategy setting(s) {unknown}; known: {sorted(known)}")
        files = ("params_file", "calendar_file")
        paths = {k: Path(values[k]) if values.get(k) else None for k in files}
        lead = values.get("lead_bars", 2)
        if isinstance(lead, bool) or not isinstance(lead, int) or not 0 <= lead <= 24 * 7:
            raise ConfigError(f"lead_bars = {lead!r}: a whole number of candles from 0 to 168")
        return cls(paths["params_file"], paths["calendar_file"], values.get("strategy_id"), lead)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (heartbeat detail, run records)."""
        return {
            "params_file": str(self.params_file) if self.params_file else None,
            "calendar_file": str(self.calendar_file) if self.calendar_file else None,
            "strategy_id": self.strategy_id,
            "lead_bars": self.lead_bars,
        }


def build_strategy(config: StrategyConfig, listed_bases: Iterable[str]) -> TokenUnlockStrategy:
    """The strategy of `config`, its calendar validated against the exchange's listed assets."""
    params = TokenUnlockParams.load_json(config.params_file) if config.params_file else None
    calendar = load_calendar(config.calendar_file, known_symbols=listed_bases)
    return TokenUnlockStrategy(params or DEFAULT_PARAMS, calendar, config.strategy_id)


def wanted_symbols(
    strategy: TokenUnlockStrategy,
    now: datetime,
    quote: str,
    listed: Iterable[str],
    held: Iterable[str] = (),
    lead_bars: int = 2,
) -> list[str]:
    """Symbols the engine must follow at `now`: open event windows plus what it holds."""
    now = require_utc(now, "now")
    bar = strategy.bar.to_pytimedelta()
    listed_set = set(listed)
    wanted = set(held)
    calendar: UnlockCalendar = strategy.calendar
    for event in eligible_events(list(calendar.events), strategy.params):
        entry_ns, _, exit_ns = entry_exit_times(event, strategy.params)
        start = _at(entry_ns) - bar * lead_bars
        end = _at(exit_ns) + bar
        symbol = f"{event.symbol}/{quote}"
        if start <= now <= end and symbol in listed_set:
            wanted.add(symbol)
    return sorted(wanted)


def next_event_window(
    strategy: TokenUnlockStrategy, now: datetime, lead_bars: int = 2
) -> datetime | None:
    """When the next eligible event's window opens (None: no event ahead)."""
    now = require_utc(now, "now")
    bar = strategy.bar.to_pytimedelta()
    starts = [
        _at(entry_exit_times(e, strategy.params)[0]) - bar * lead_bars
        for e in eligible_events(list(strategy.calendar.events), strategy.params)
    ]
    ahead = [s for s in starts if s > now]
    return min(ahead) if ahead else None


def _at(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
