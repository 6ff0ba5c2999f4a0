"""What a long-running engine trades: the symbols of open event windows and its holdings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tradelib.errors import ConfigError
from tradelib.service.setup import StrategyConfig, next_event_window, wanted_symbols
from tradelib.strategy.calendar import UnlockCalendar, UnlockEvent
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy

UNLOCK = datetime(2024, 8, 1, 1, tzinfo=UTC)
PARAMS = TokenUnlockParams(direction="spot", spot_entry_delay_hours=0, days_after=0.125)


def _strategy() -> TokenUnlockStrategy:
    event = UnlockEvent(
        token="Arbitrum", symbol="ARB", unlock_time=UNLOCK, amount_tokens=Decimal(1),
        pct_circulating=Decimal("2.87"), pct_basis="circulating", category="mixed",
        usd_value_approx=None, source_url="https://example.test/arb", confidence="high",
        notes="",
    )  # fmt: skip
    return TokenUnlockStrategy(PARAMS, UnlockCalendar([event], {"ARB", "OP"}))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (UNLOCK - timedelta(hours=3), []),  # before the lead
        (UNLOCK - timedelta(hours=2), ["ARB/USDT"]),  # two candles of lead
        (UNLOCK + timedelta(hours=3), ["ARB/USDT"]),  # the exit candle
        (UNLOCK + timedelta(hours=4), ["ARB/USDT"]),  # one bar after the exit
        (UNLOCK + timedelta(hours=5), []),
    ],
)
def test_a_symbol_is_followed_around_its_event(at: datetime, expected: list[str]) -> None:
    listed = {"ARB/USDT", "OP/USDT"}
    assert wanted_symbols(_strategy(), at, "USDT", listed) == expected


def test_holdings_are_always_followed_and_unlisted_symbols_never() -> None:
    late = UNLOCK + timedelta(days=3)
    assert wanted_symbols(_strategy(), late, "USDT", {"ARB/USDT"}, held={"OP/USDT"}) == ["OP/USDT"]
    assert wanted_symbols(_strategy(), UNLOCK, "USDT", {"OP/USDT"}) == []


def test_next_window() -> None:
    assert next_event_window(_strategy(), UNLOCK - timedelta(days=1)) == UNLOCK - timedelta(hours=2)
    assert next_event_window(_strategy(), UNLOCK) is None


def test_strategy_config_from_notebook_parameters(tmp_path: Path) -> None:
    config = StrategyConfig.from_mapping({"params_file": str(tmp_path / "p.json"), "lead_bars": 1})
    assert config.params_file == tmp_path / "p.json" and config.lead_bars == 1
    assert StrategyConfig.from_mapping(None) == StrategyConfig()
    with pytest.raises(ConfigError, match="unknown strategy setting"):
        StrategyConfig.from_mapping({"param_file": "x"})
    with pytest.raises(ConfigError, match="lead_bars"):
        StrategyConfig.from_mapping({"lead_bars": -1})
