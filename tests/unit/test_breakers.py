"""Circuit breakers: trip exactly at their thresholds, stay tripped until a person resets them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelib.config import RiskSettings
from tradelib.errors import DataError
from tradelib.risk import (
    ApiError,
    Breaker,
    BreakerState,
    EventKind,
    ExchangeBan,
    MarketDataAge,
    PortfolioObservation,
    TradeClosed,
    reset,
    update,
)

T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
RISK = RiskSettings()
money = st.decimals(min_value=Decimal(100), max_value=Decimal(1_000_000), places=2)


def feed(state: BreakerState, observations: list, start: datetime = T0) -> BreakerState:
    for i, obs in enumerate(observations):
        state, _ = update(state, obs, start + timedelta(seconds=i), RISK)
    return state


@settings(max_examples=200, deadline=None)
@given(start=money, loss_pct=st.decimals(min_value=0, max_value=10, places=4))
def test_daily_loss_trips_exactly_at_the_limit_and_alerts_at_80_percent(
    start: Decimal, loss_pct: Decimal
) -> None:
    pnl = -start * loss_pct / 100
    state, events = update(BreakerState(), PortfolioObservation(start + pnl, pnl, start), T0)
    kinds = {(e.kind, e.breaker) for e in events}
    assert state.is_tripped(Breaker.DAILY_LOSS) == (loss_pct >= 5)
    assert ((EventKind.ALERT, Breaker.DAILY_LOSS) in kinds) == (loss_pct >= 4)
    assert ((EventKind.TRIPPED, Breaker.DAILY_LOSS) in kinds) == (loss_pct >= 5)


def test_daily_loss_boundary_and_reason_numbers() -> None:
    state, events = update(
        BreakerState(), PortfolioObservation(Decimal(950), Decimal(-50), Decimal(1000)), T0
    )
    assert state.is_tripped(Breaker.DAILY_LOSS)
    assert "-50.00" in state.tripped[Breaker.DAILY_LOSS].reason
    assert "1000.00" in state.tripped[Breaker.DAILY_LOSS].reason
    just_above, _ = update(
        BreakerState(),
        PortfolioObservation(Decimal("950.01"), Decimal("-49.99"), Decimal(1000)),
        T0,
    )
    assert not just_above.is_tripped(Breaker.DAILY_LOSS)
    # The alert is sent once per UTC day, then again the next day.
    state, events = update(
        BreakerState(), PortfolioObservation(Decimal(960), Decimal(-40), Decimal(1000)), T0
    )
    assert [e.kind for e in events] == [EventKind.ALERT]
    state, events = update(
        state, PortfolioObservation(Decimal(959), Decimal(-41), Decimal(1000)), T0
    )
    assert events == []
    state, events = update(
        state,
        PortfolioObservation(Decimal(959), Decimal(-41), Decimal(1000)),
        T0 + timedelta(days=1),
    )
    assert [e.kind for e in events] == [EventKind.ALERT]


observation_st = st.one_of(
    st.builds(
        PortfolioObservation,
        equity=money,
        daily_pnl=st.decimals(min_value=-1000, max_value=1000, places=2),
        day_start_equity=money,
    ),
    st.builds(TradeClosed, pnl=st.decimals(min_value=-100, max_value=100, places=2)),
    st.builds(ApiError, message=st.just("HTTP 503")),
)


@settings(max_examples=200, deadline=None)
@given(
    breaker_obs=st.sampled_from(
        [
            PortfolioObservation(Decimal(900), Decimal(-100), Decimal(1000)),
            ExchangeBan("418 I'm a teapot", 120),
            MarketDataAge("ARB/USDT", T0 - timedelta(seconds=121)),
        ]
    ),
    later=st.lists(observation_st, max_size=20),
    days=st.integers(min_value=0, max_value=3),
)
def test_tripped_breakers_stay_tripped_until_reset(
    breaker_obs: object, later: list, days: int
) -> None:
    state, events = update(BreakerState(), breaker_obs, T0, RISK)  # type: ignore[arg-type]
    tripped = {e.breaker for e in events if e.kind is EventKind.TRIPPED}
    assert tripped
    # Good news, new UTC days: nothing resets a breaker by itself.
    state = feed(state, later, T0 + timedelta(days=days))
    for breaker in tripped:
        assert state.is_tripped(breaker)
    for breaker in tripped:
        state, events = reset(state, breaker, "ops", T0 + timedelta(days=days), "checked")
        assert [e.kind for e in events] == [EventKind.RESET]
        assert not state.is_tripped(breaker)


@settings(max_examples=200, deadline=None)
@given(pnls=st.lists(st.decimals(min_value=-50, max_value=50, places=2), max_size=30))
def test_consecutive_losses_trip_at_exactly_three(pnls: list[Decimal]) -> None:
    state = BreakerState()
    run = 0
    expected = False
    for i, pnl in enumerate(pnls):
        state, _ = update(state, TradeClosed(pnl, "ARB/USDT"), T0 + timedelta(minutes=i))
        run = run + 1 if pnl < 0 else 0
        expected = expected or run >= RISK.max_consecutive_losses
        assert state.is_tripped(Breaker.CONSECUTIVE_LOSSES) == expected


@settings(max_examples=200, deadline=None)
@given(peak=money, drop_pct=st.decimals(min_value=0, max_value=30, places=4))
def test_drawdown_trips_at_ten_percent_from_peak(peak: Decimal, drop_pct: Decimal) -> None:
    equity = peak * (1 - drop_pct / 100)
    state = feed(
        BreakerState(),
        [
            PortfolioObservation(peak, Decimal(0), Decimal(0)),
            PortfolioObservation(equity, Decimal(0), Decimal(0)),
        ],
    )
    assert state.is_tripped(Breaker.DRAWDOWN) == (drop_pct >= 10)


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=15))
def test_api_errors_trip_at_five_within_the_window(gaps: list[int]) -> None:
    state = BreakerState()
    times: list[datetime] = []
    now = T0
    expected = False
    for gap in gaps:
        now = now + timedelta(seconds=gap)
        times.append(now)
        state, _ = update(state, ApiError("HTTP 502"), now)
        window = [t for t in times if now - t <= timedelta(seconds=RISK.api_error_window_seconds)]
        expected = expected or len(window) >= RISK.max_api_errors
        assert state.is_tripped(Breaker.API_ERRORS) == expected


@pytest.mark.parametrize(("age", "trips"), [(119, False), (120, False), (121, True)])
def test_stale_data_trips_when_older_than_the_bound(age: int, trips: bool) -> None:
    state, events = update(
        BreakerState(), MarketDataAge("ARB/USDT", T0 - timedelta(seconds=age)), T0
    )
    assert state.is_tripped(Breaker.STALE_DATA) == trips
    if trips:
        assert "121s old" in events[0].message


def test_exchange_ban_trips_immediately_with_its_duration() -> None:
    state, events = update(BreakerState(), ExchangeBan("banned", 7200), T0)
    assert state.is_tripped(Breaker.EXCHANGE_BAN)
    assert "7200s" in events[0].message
    state, again = update(state, ExchangeBan("banned", 7200), T0)
    assert again == []  # one trip, one event


def test_reset_of_daily_loss_accepts_the_loss_so_far_then_trips_on_a_further_limit() -> None:
    start = Decimal(1000)
    state, _ = update(BreakerState(), PortfolioObservation(Decimal(940), Decimal(-60), start), T0)
    state, events = reset(state, Breaker.DAILY_LOSS, "ops", T0, "reviewed the unlock trade")
    assert "reviewed" in events[0].message and "-60.00" in events[0].message
    state, _ = update(state, PortfolioObservation(Decimal(920), Decimal(-80), start), T0)
    assert not state.is_tripped(Breaker.DAILY_LOSS)
    state, _ = update(state, PortfolioObservation(Decimal(890), Decimal(-110), start), T0)
    assert state.is_tripped(Breaker.DAILY_LOSS)


def test_reset_of_drawdown_moves_the_peak_to_current_equity() -> None:
    state = feed(
        BreakerState(),
        [
            PortfolioObservation(Decimal(1000), Decimal(0), Decimal(0)),
            PortfolioObservation(Decimal(890), Decimal(0), Decimal(0)),
        ],
    )
    assert state.is_tripped(Breaker.DRAWDOWN)
    state, _ = reset(state, Breaker.DRAWDOWN, "ops", T0, "strategy reviewed")
    state, _ = update(state, PortfolioObservation(Decimal(880), Decimal(0), Decimal(0)), T0)
    assert not state.is_tripped(Breaker.DRAWDOWN)
    assert state.peak_equity == Decimal(890)


def test_reset_needs_who_and_why_and_ignores_untripped() -> None:
    with pytest.raises(DataError):
        reset(BreakerState(), Breaker.DRAWDOWN, "", T0, "x")
    state, events = reset(BreakerState(), Breaker.DRAWDOWN, "ops", T0, "nothing")
    assert events == [] and state == BreakerState(day=T0.date())


@settings(max_examples=100, deadline=None)
@given(observations=st.lists(observation_st, max_size=15))
def test_state_round_trips_through_json(observations: list) -> None:
    state = feed(BreakerState(), observations)
    restored = BreakerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state


@pytest.mark.parametrize(
    ("observation", "field"),
    [
        (PortfolioObservation(Decimal("NaN"), Decimal(0), Decimal(1000)), "equity"),
        (PortfolioObservation(Decimal(1000), Decimal("sNaN"), Decimal(1000)), "daily_pnl"),
        (PortfolioObservation(Decimal(1000), Decimal(0), Decimal("Infinity")), "day_start_equity"),
        (PortfolioObservation(1000.5, Decimal(0), Decimal(1000)), "equity"),  # type: ignore[arg-type]
        (TradeClosed(Decimal("NaN"), "ARB/USDT"), "pnl"),
    ],
)
def test_a_non_finite_observation_is_a_clear_error(observation: object, field: str) -> None:
    tripped, _ = update(BreakerState(), TradeClosed(Decimal(-1)), T0)
    with pytest.raises(DataError) as err:
        update(tripped, observation, T0)  # type: ignore[arg-type]
    text = str(err.value)
    assert f"{type(observation).__name__}.{field} is" in text
    assert "not a finite Decimal" in text and "breakers were left unchanged" in text


def test_market_data_stamped_in_the_future_trips_the_stale_data_breaker() -> None:
    ahead = MarketDataAge("ARB/USDT", T0 + timedelta(minutes=10))
    state, events = update(BreakerState(), ahead, T0, RISK)
    assert state.is_tripped(Breaker.STALE_DATA)
    assert "stamped 600s in the future" in events[0].message
    within_skew = MarketDataAge("ARB/USDT", T0 + timedelta(seconds=4))
    assert not update(BreakerState(), within_skew, T0, RISK)[0].any_tripped
