"""TokenUnlockParams: the strategy's knobs as a frozen, validated dataclass."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tradelib.config import RiskSettings
from tradelib.errors import ConfigError

_RISK = RiskSettings()
DIRECTIONS = ("short", "spot")


@dataclass(frozen=True, slots=True)
class TokenUnlockParams:
    """Parameters of TokenUnlockStrategy; percentages are written as 2 for 2 %.

    direction "short": sell short `days_before` days before the unlock, buy back `days_after`
    days after it (0 = at the unlock). Needs a perpetual/margin account.
    direction "spot": the spot-only variant a spot account can execute: buy the post-unlock
    dip `spot_entry_delay_hours` after the unlock, sell `days_after` days after the unlock.
    """

    days_before: float = 3.0
    days_after: float = 1.0
    direction: str = "short"
    min_unlock_pct: float = 0.0
    min_unlock_usd: float = 0.0
    spot_entry_delay_hours: float = 24.0
    stop_loss_pct: float = float(_RISK.stop_loss_pct)
    take_profit_pct: float = float(_RISK.take_profit_pct)
    trailing_activation_pct: float = float(_RISK.trailing_activation_pct)
    trailing_distance_pct: float = float(_RISK.trailing_distance_pct)
    min_quote_volume_24h: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "direction":
                if value not in DIRECTIONS:
                    raise ConfigError(f"direction = {value!r}: must be one of {DIRECTIONS}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name} = {value!r}: must be a number")
            if not math.isfinite(value):
                raise ConfigError(f"{f.name} = {value!r}: must be finite")
            object.__setattr__(self, f.name, float(value))
        self._check("days_before", 0, 30, low_open=self.direction == "short")
        self._check("days_after", 0, 30)
        self._check("min_unlock_pct", 0, 1000)
        self._check("min_unlock_usd", 0, 1e12)
        self._check("spot_entry_delay_hours", 0, 24 * 30)
        self._check("stop_loss_pct", 0, 100, low_open=True, high_open=True)
        self._check("take_profit_pct", 0, 1000, low_open=True)
        self._check("trailing_activation_pct", 0, 1000)
        self._check("trailing_distance_pct", 0, 100, low_open=True, high_open=True)
        self._check("min_quote_volume_24h", 0, 1e13)
        if self.direction == "spot" and self.days_after * 24 <= self.spot_entry_delay_hours:
            raise ConfigError(
                f"days_after = {self.days_after} (= {self.days_after * 24:g} h) must be later "
                f"than spot_entry_delay_hours = {self.spot_entry_delay_hours:g} for direction "
                "'spot': the exit has to come after the post-unlock entry"
            )

    def _check(
        self, name: str, low: float, high: float, low_open: bool = False, high_open: bool = False
    ) -> None:
        value = getattr(self, name)
        bad_low = value <= low if low_open else value < low
        bad_high = value >= high if high_open else value > high
        if bad_low or bad_high:
            lo = ">" if low_open else ">="
            hi = "<" if high_open else "<="
            raise ConfigError(f"{name} = {value:g}: allowed {lo} {low:g} and {hi} {high:g}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every parameter (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenUnlockParams:
        """Build from a dict, rejecting unknown keys with their names."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown TokenUnlockParams field(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**data)

    def save_json(self, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
        """Write {"strategy", "interface_version", "params", ...extra} as JSON; return the path."""
        from tradelib.strategy.base import INTERFACE_VERSION

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "strategy": "token_unlock",
            "interface_version": INTERFACE_VERSION,
            "params": self.to_dict(),
            **(extra or {}),
        }
        path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        return path

    @classmethod
    def load_json(cls, path: Path | str) -> TokenUnlockParams:
        """Read parameters written by save_json."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read strategy parameters from {path}: {exc}") from None
        if not isinstance(doc, dict) or "params" not in doc:
            raise ConfigError(f"{path} has no 'params' object; was it written by save_json?")
        return cls.from_dict(doc["params"])
