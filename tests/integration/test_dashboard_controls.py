"""The dashboard's buttons, clicked in Python: what reaches the store, what is refused, and
that a click while an action runs sends nothing twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest

from tradelib.config import Settings
from tradelib.domain import Mode
from tradelib.operations import effective_limits, mode_request, pause_state
from tradelib.secrets import TOTP_SECRET_ENV
from tradelib.store import EngineState, HeartbeatRecord, Store, open_store
from widgets import Dashboard


@pytest.fixture
def dash(store_url: str) -> Iterator[Dashboard]:
    """A dashboard (not following: the test refreshes) whose actions run at once."""
    board = Dashboard(store_url, settings=Settings(store_url=store_url), operator="ann",
                      start=False)  # fmt: skip
    board.controls.run = lambda work, done: done(work(), None)
    board.refresh()
    yield board
    board.close()


@pytest.fixture
def store(store_url: str, dash: Dashboard) -> Iterator[Store]:
    """The dashboard's own store handle (DuckDB allows one per process and file)."""
    yield dash.actions.store


def _click(dash: Dashboard, button: Any) -> str:
    button.click()
    dash.refresh()
    return str(dash.controls.result.value)


def test_pause_needs_a_reason_then_toggles(dash: Dashboard, store: Store) -> None:
    controls = dash.controls
    assert "why" in _click(dash, controls.pause)
    assert store.list_controls() == []  # refused: nothing written
    controls.reason.value = "FOMC"
    assert "entries paused" in _click(dash, controls.pause)
    assert pause_state(store, Mode.PAPER, "binance").by == "ann"
    assert controls.pause.description == "Resume entries"
    assert "ENTRIES PAUSED" in dash.sections["status"].value
    assert "entries resumed" in _click(dash, controls.pause)
    assert not pause_state(store, Mode.PAPER, "binance").paused


def test_a_limit_is_loosened_only_with_a_code_and_the_code_is_cleared(
    dash: Dashboard, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    controls = dash.controls
    controls.reason.value = "bigger bets after review"
    controls.limit.value = "max_position_pct"
    controls.limit_value.value = "25"
    assert "needs the TOTP code" in controls.limit_hint.value
    assert "TOTP" in _click(dash, controls.apply_limit)
    limits = effective_limits(store, Settings().risk, Mode.PAPER, "binance")
    assert limits.max_position_pct == 20
    controls.code.value = pyotp.TOTP(secret).now()
    assert "20 → 25" in _click(dash, controls.apply_limit)
    assert controls.code.value == ""  # a used code is not left in the widget
    assert effective_limits(store, Settings().risk, Mode.PAPER, "binance").max_position_pct == 25
    assert "max_position_pct = 25" in str(controls.limit.options)


def test_close_and_cancel_are_refused_without_an_engine(dash: Dashboard, store: Store) -> None:
    controls = dash.controls
    controls.reason.value = "manual exit"
    assert "pick an open position" in _click(dash, controls.close)
    assert "pick an open order" in _click(dash, controls.cancel)
    assert store.list_commands() == []


def test_a_second_click_while_an_action_runs_sends_nothing(dash: Dashboard, store: Store) -> None:
    pending: list[Callable[[], None]] = []

    def later(work: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        pending.append(lambda: done(work(), None))

    dash.controls.run = later
    dash.controls.reason.value = "news"
    dash.controls.pause.click()
    dash.controls.pause.click()  # the button is disabled and the panel busy: ignored
    assert dash.controls.pause.disabled
    assert len(pending) == 1
    pending[0]()
    assert not dash.controls.pause.disabled
    events = [e for e in store.list_events() if e.kind == "strategy_paused"]
    assert len(events) == 1


def test_going_live_shows_the_terms_and_refuses_without_the_key_check(
    dash: Dashboard, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    controls = dash.controls
    controls.go_live.click()
    assert controls.live_box.layout.display == ""
    assert "GO LIVE" in controls.terms.value and "$500.00" in controls.terms.value
    assert "API key check FAILED" in controls.terms.value  # no key stored here
    controls.reason.value = "ready"
    controls.code.value = pyotp.TOTP(secret).now()
    assert "confirmation" in _click(dash, controls.confirm_live)  # the tick is missing
    controls.confirm.value = True
    controls.code.value = pyotp.TOTP(secret).now()
    assert "going live refused" in _click(dash, controls.confirm_live)
    assert mode_request(store, "binance") is None
    assert controls.live_box.layout.display == ""  # still open: the person reads why


def test_the_dashboard_follows_the_live_engine_and_frames_itself_in_red(
    store_url: str,
) -> None:
    now = datetime.now(UTC)
    with open_store(store_url) as store:
        store.beat(HeartbeatRecord(
            mode=Mode.LIVE, exchange="binance", strategy="unlock", state=EngineState.RUNNING,
            pid=1, host="h", started_at=now, beat_at=now, last_cycle_at=now,
        ))  # fmt: skip
    board = Dashboard(store_url, settings=Settings(store_url=store_url), start=False,
                      clock=lambda: now)  # fmt: skip
    try:
        board.refresh()
        assert "tl-frame-live" in board.widget._dom_classes
        assert "REAL MONEY" in board.sections["status"].value
        assert board.controls.go_live.layout.display == "none"
        assert board.controls.go_paper.layout.display == ""
    finally:
        board.close()
