"""TokenUnlockStrategy on real candles: timing, filters, lookahead guard, live adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradelib.domain import Side, SignalKind
from tradelib.errors import ConfigError, DataError
from tradelib.strategy import (
    INTERFACE_VERSION,
    SIGNAL_FIELDS,
    TokenUnlockParams,
    TokenUnlockStrategy,
    load_calendar,
)
from tradelib.strategy.base import normalize_candles

DATA = "data/candles/1h/{}_USDT-1h.feather"
CALENDAR = load_calendar()


def _candles(symbol: str) -> pd.DataFrame:
    return normalize_candles(symbol, pd.read_feather(DATA.format(symbol)))


ARB = _candles("ARB")
APT = _candles("APT")
# A slice with several unlocks each, short enough to keep the property test quick.
ARB_2024 = ARB.loc["2024-02-20":"2024-06-01"]
APT_2023 = APT.loc["2023-08-20":"2023-12-31"]


def test_interface_version_and_columns() -> None:
    strategy = TokenUnlockStrategy(calendar=CALENDAR)
    assert strategy.INTERFACE_VERSION == INTERFACE_VERSION == 1
    out = strategy.signals({"ARB": ARB_2024}, CALENDAR, strategy.params)
    assert list(out.columns.get_level_values("field")) == list(SIGNAL_FIELDS)
    assert out.index.equals(ARB_2024.index)
    assert all(str(dtype) == "bool" for dtype in out.dtypes)


def test_short_enters_days_before_and_exits_days_after_the_unlock() -> None:
    params = TokenUnlockParams(days_before=3, days_after=1)
    out = TokenUnlockStrategy(params, CALENDAR).signals({"ARB": ARB_2024}, CALENDAR, params)["ARB"]
    entries = out.index[out["enter_short"]]
    exits = out.index[out["exit_short"]]
    # The candle opened 23:00 closes at 00:00, three days before 2024-03-16T00:00Z.
    assert pd.Timestamp("2024-03-12 23:00", tz="UTC") in entries
    assert pd.Timestamp("2024-03-16 23:00", tz="UTC") in exits
    assert len(entries) == len(exits) == 3  # ARB 2024-03-16, 04-16, 05-16
    assert not out["enter_long"].any() and not out["exit_long"].any()


def test_spot_buys_after_the_unlock_and_sells_later() -> None:
    params = TokenUnlockParams(direction="spot", spot_entry_delay_hours=12, days_after=3)
    out = TokenUnlockStrategy(params, CALENDAR).signals({"ARB": ARB_2024}, CALENDAR, params)["ARB"]
    assert pd.Timestamp("2024-03-16 11:00", tz="UTC") in out.index[out["enter_long"]]
    assert pd.Timestamp("2024-03-18 23:00", tz="UTC") in out.index[out["exit_long"]]
    assert not out["enter_short"].any()


def test_min_unlock_pct_keeps_only_big_stated_unlocks() -> None:
    params = TokenUnlockParams(min_unlock_pct=10)
    out = TokenUnlockStrategy(params, CALENDAR).signals({"ARB": ARB_2024}, CALENDAR, params)["ARB"]
    # Only the 2024-03-16 cliff (77 % of circulating) is >= 10 %; April states 3.5 %, May none.
    assert list(out.index[out["enter_short"]]) == [pd.Timestamp("2024-03-12 23:00", tz="UTC")]


def test_min_liquidity_can_veto_an_entry() -> None:
    quote_24h = (ARB_2024["close"] * ARB_2024["volume"]).rolling("24h").sum()
    at_entry = quote_24h.loc["2024-03-12 23:00"]
    params = TokenUnlockParams(min_quote_volume_24h=float(at_entry) * 1.01)
    out = TokenUnlockStrategy(params, CALENDAR).signals({"ARB": ARB_2024}, CALENDAR, params)["ARB"]
    assert pd.Timestamp("2024-03-12 23:00", tz="UTC") not in out.index[out["enter_short"]]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"days_before": 0}, "days_before"),
        ({"days_after": -1}, "days_after"),
        ({"direction": "long"}, "direction"),
        ({"stop_loss_pct": 0}, "stop_loss_pct"),
        ({"trailing_distance_pct": 100}, "trailing_distance_pct"),
        ({"min_unlock_pct": float("nan")}, "min_unlock_pct"),
        ({"direction": "spot", "days_after": 1, "spot_entry_delay_hours": 24}, "days_after"),
    ],
)
def test_bad_params_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TokenUnlockParams(**changes)


def test_params_defaults_come_from_risk_settings_and_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    params = TokenUnlockParams()
    assert (params.stop_loss_pct, params.take_profit_pct) == (2.0, 5.0)
    assert (params.trailing_activation_pct, params.trailing_distance_pct) == (3.0, 2.0)
    path = params.save_json(tmp_path / "p.json")
    assert TokenUnlockParams.load_json(path) == params
    with pytest.raises(ConfigError, match="unknown"):
        TokenUnlockParams.from_dict({"days_befor": 2})


def test_naive_candles_are_rejected() -> None:
    naive = ARB_2024.reset_index()
    naive["date"] = naive["date"].dt.tz_localize(None)
    with pytest.raises(DataError, match="timezone-aware"):
        TokenUnlockStrategy(calendar=CALENDAR).signals(
            {"ARB": naive}, CALENDAR, TokenUnlockParams()
        )


PARAMS = [
    TokenUnlockParams(),
    TokenUnlockParams(days_before=1.5, days_after=0),
    TokenUnlockParams(direction="spot", spot_entry_delay_hours=6, days_after=2),
    TokenUnlockParams(min_quote_volume_24h=5e6),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=1, max_value=len(APT_2023)),
    which=st.sampled_from(range(len(PARAMS))),
    symbol=st.sampled_from(["ARB", "APT"]),
)
def test_no_lookahead_truncated_signals_match_full_signals(
    cut: int, which: int, symbol: str
) -> None:
    frame = ARB_2024 if symbol == "ARB" else APT_2023
    cut = min(cut, len(frame))
    params = PARAMS[which]
    strategy = TokenUnlockStrategy(params, CALENDAR)
    full = strategy.signals({symbol: frame}, CALENDAR, params)
    part = strategy.signals({symbol: frame.iloc[:cut]}, CALENDAR, params)
    pd.testing.assert_frame_equal(part, full.iloc[:cut])


def test_live_adapter_emits_exactly_the_backtest_signals() -> None:
    frame = ARB.loc["2024-03-08":"2024-03-20"]
    params = TokenUnlockParams(days_before=2, days_after=1)
    strategy = TokenUnlockStrategy(params, CALENDAR, strategy_id="tu-test")
    table = strategy.signals({"ARB": frame}, CALENDAR, params)["ARB"]
    expected = [(t, f) for t in table.index for f in SIGNAL_FIELDS if table.at[t, f]]
    seen = []
    for k in range(1, len(frame) + 1):
        now = (frame.index[k - 1] + pd.Timedelta(hours=1)).to_pydatetime()
        for signal in strategy.on_candle("ARB/USDT", frame.iloc[:k], now):
            seen.append((pd.Timestamp(signal.meta["bar_open"]), signal.meta["field"]))
            assert signal.at == now
    assert seen == expected
    assert [f for _, f in seen] == ["enter_short", "exit_short"]


def test_timer_exits_when_candles_stall_and_candle_does_not_repeat_it() -> None:
    frame = ARB.loc["2024-03-10":"2024-03-20"]
    params = TokenUnlockParams(days_before=2, days_after=1)
    strategy = TokenUnlockStrategy(params, CALENDAR)
    stalled = frame.loc[:"2024-03-16 20:00"]  # the exit is due when 2024-03-17 00:00 passes
    entries = []
    for k in range(1, len(stalled) + 1):
        now = (stalled.index[k - 1] + pd.Timedelta(hours=1)).to_pydatetime()
        entries += strategy.on_candle("ARB", stalled.iloc[:k], now)
    assert [(s.kind, s.side) for s in entries] == [(SignalKind.ENTRY, Side.SELL)]
    assert strategy.on_timer(datetime(2024, 3, 16, 23, 30, tzinfo=UTC)) == []
    exits = strategy.on_timer(datetime(2024, 3, 17, 0, 5, tzinfo=UTC))
    assert [(s.kind, s.side, s.symbol) for s in exits] == [(SignalKind.EXIT, Side.BUY, "ARB")]
    assert "2024-03-16" in exits[0].reason
    later = frame.loc[:"2024-03-17 00:00"]
    assert strategy.on_candle("ARB", later, datetime(2024, 3, 17, 1, tzinfo=UTC)) == []


def test_a_restarted_strategy_still_emits_the_exit() -> None:
    frame = ARB.loc["2024-03-10":"2024-03-20"]
    params = TokenUnlockParams(days_before=2, days_after=1)
    fresh = TokenUnlockStrategy(params, CALENDAR)  # e.g. the engine restarted mid-trade
    upto = frame.loc[:"2024-03-16 23:00"]
    signals = fresh.on_candle("ARB", upto, datetime(2024, 3, 17, tzinfo=UTC))
    assert [(s.kind, s.side) for s in signals] == [(SignalKind.EXIT, Side.BUY)]
