"""tradelib.domain.market_math: exact times, timeframes, steps and ticks, symbols."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.domain import (
    from_ms,
    is_multiple,
    pandas_freq,
    parse_candle_file,
    require_utc,
    round_down,
    round_nearest,
    round_up,
    split_symbol,
    timeframe_delta,
    timeframe_ms,
    to_ms,
)
from tradelib.errors import DataError

D = Decimal
TICK = D("0.0001")


def test_ms_conversion_is_exact_where_a_float_timestamp_is_not() -> None:
    # A float timestamp * 1000 lands just below .149 here and truncates to ...148.
    at = datetime(2004, 7, 23, 7, 7, 45, 149_000, tzinfo=UTC)
    assert int(at.timestamp() * 1000) == 1_090_566_465_148  # why floats are not used
    assert to_ms(at) == 1_090_566_465_149
    assert from_ms(1_090_566_465_149) == at
    # Sub-millisecond parts are floored, the way an exchange truncates them.
    assert to_ms(datetime(2024, 3, 16, 0, 0, 0, 999, tzinfo=UTC)) == 1_710_547_200_000


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_ms_round_trip(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms


def test_ms_outside_the_calendar_is_a_data_error() -> None:
    with pytest.raises(DataError, match="outside the years 1 to 9999"):
        from_ms(10**16)


def test_times_must_be_aware_and_come_back_in_utc() -> None:
    with pytest.raises(DataError, match="candle time must be a timezone-aware"):
        to_ms(datetime(2024, 3, 16), "candle time")
    plus_two = datetime(2024, 3, 16, 2, tzinfo=timezone(timedelta(hours=2)))
    assert require_utc(plus_two, "t") == datetime(2024, 3, 16, tzinfo=UTC)
    assert to_ms(plus_two) == to_ms(datetime(2024, 3, 16, tzinfo=UTC))


def test_timeframes() -> None:
    assert timeframe_ms("1s") == 1_000
    assert timeframe_ms("15m") == 900_000
    assert timeframe_ms("4h") == 14_400_000
    assert timeframe_ms("1w") == 604_800_000
    assert timeframe_delta("1d") == timedelta(days=1)
    assert pandas_freq("1m") == "1min" and pandas_freq("4h") == "4h" and pandas_freq("1d") == "1D"
    for bad in ("", "m", "1M", "1y", "-1m", "1.5h", " 1m", "0h"):
        with pytest.raises(DataError, match="timeframe"):
            timeframe_ms(bad)
    with pytest.raises(DataError, match="Monday-aligned"):
        pandas_freq("1w")


def test_rounding_to_steps_and_ticks() -> None:
    assert round_down(D("12.39"), D("0.1")) == D("12.3")
    assert round_down(D("0.09"), D("0.1")) == D("0.0")
    assert round_up(D("0.54561"), TICK) == D("0.5457")
    assert round_down(D("0.54567"), TICK) == D("0.5456")
    assert round_nearest(D("0.54567"), TICK) == D("0.5457")
    assert round_nearest(D("0.54565"), TICK) == D("0.5456")  # ties to even
    assert round_up(D("0.5456"), TICK) == D("0.5456")
    # On the step's exponent: what is sent to an exchange reads "1200.0", never "1.2E+3".
    assert str(round_down(D("1.2E+3"), D("0.1"))) == "1200.0"
    assert round_down(D("7.77"), None) == D("7.77") and round_up(D("7.77"), D(0)) == D("7.77")
    assert is_multiple(D("1.25"), D("0.05")) and not is_multiple(D("1.26"), D("0.05"))


@settings(max_examples=200, deadline=None)
@given(price=st.decimals(min_value=D("0.00001"), max_value=D("100000"), places=6))
def test_property_rounded_price_is_on_the_tick_and_brackets_the_price(price: Decimal) -> None:
    down, up, near = round_down(price, TICK), round_up(price, TICK), round_nearest(price, TICK)
    assert is_multiple(down, TICK) and is_multiple(up, TICK) and is_multiple(near, TICK)
    assert down <= price <= up and up - down <= TICK
    assert near in (down, up) and abs(near - price) <= TICK / 2


def test_symbols() -> None:
    assert split_symbol("ARB/USDT") == ("ARB", "USDT")
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")
    for bad in ("ARBUSDT", "ARB/", "/USDT", "A/B/C"):
        with pytest.raises(DataError, match="BASE/QUOTE"):
            split_symbol(bad)
    assert parse_candle_file("ARB_USDT-1h") == ("ARB/USDT", "1h")
    for bad in ("ARBUSDT-1h", "ARB_USDT-1x", "ARB_USDT", "_USDT-1h"):
        with pytest.raises(DataError):
            parse_candle_file(bad)
