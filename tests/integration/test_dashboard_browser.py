"""End to end in a browser: `notebooks/live_dashboard.ipynb` in real JupyterLab, in headless
Chromium, watching a paper engine that trades on the Binance emulator in another process.

What is checked is what a person sees (the page) and what the exchange holds (the emulator's
own order list), not what the dashboard believes: the engine's position appears in the
table; with the engine hung, the emergency stop cancels its resting orders on the emulator;
the live toggle refuses a wrong TOTP code and changes nothing, and takes the right one
once. Screenshots of each step are kept in the folder the test prints (TRADELIB_ARTIFACTS,
default ./artifacts/dashboard).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from dashboard_rig import Rig, processes, start_rig, until  # noqa: F401  (fixture)
from lab_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    browser_missing,
    copy_notebook,
    hide_left_sidebar,
    run_all_cells,
    running_lab,
)

from tradelib.control import KILL_CONTROL
from tradelib.domain import Mode, OrderStatus
from tradelib.operations import mode_request
from tradelib.store import Store, open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
try:
    from playwright.sync_api import expect
except ImportError:  # browser_missing() says so and the test skips
    expect = None

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "live_dashboard.ipynb"
ARTIFACTS = Path(os.environ.get("TRADELIB_ARTIFACTS", REPO / "artifacts")) / "dashboard"
UI_MS = 120_000


@pytest.fixture
def artifacts() -> Path:
    """The screenshot folder, emptied of an earlier run's pictures."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    print(f"\nscreenshots: {ARTIFACTS}")
    return ARTIFACTS


def test_dashboard_in_jupyterlab_follows_a_paper_engine_and_stops_it(
    pg_store_url: str,
    tmp_path: Path,
    artifacts: Path,
    processes: list[subprocess.Popen[Any]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    rig = start_rig(pg_store_url, tmp_path, processes, monkeypatch)
    store = open_store(pg_store_url)
    steps = Steps(rig, store, artifacts)
    root = tmp_path / "lab"
    # The emergency stop must cancel where the paper engine trades: the emulator.
    params = {"paper_venue_url": rig.venue, "operator": "test-operator"}
    name = copy_notebook(NOTEBOOK, root, params)
    with (
        running_lab(root, rig.env, tmp_path / "jupyterlab.log") as lab,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1720, "height": 2150})
        page.set_default_timeout(UI_MS)
        expect.set_options(timeout=UI_MS)
        try:
            page.goto(lab.link(name))
            run_all_cells(page)
            dash = page.locator(".tl-dash")
            _watch_the_paper_run(page, dash, steps)
            _emergency_stop(dash, steps)
            _live_toggle(dash, steps)
        except BaseException:
            page.screenshot(path=str(artifacts / "failure.png"))
            raise
        finally:
            browser.close()
    store.close()


class Steps:
    """What the browser steps check against: the rig, the store, where the shots go."""

    def __init__(self, rig: Rig, store: Store, artifacts: Path) -> None:
        self.rig, self.store, self.artifacts = rig, store, artifacts

    def shot(self, target: Any, name: str) -> None:
        """Save a screenshot of `target` (a page or a locator) as an artifact."""
        target.screenshot(path=str(self.artifacts / name))


def _watch_the_paper_run(page: Any, dash: Any, steps: Steps) -> None:
    """The engine's positions, from the other process, in the table; real numbers around."""
    dash.wait_for()
    expect(dash.locator('tr[data-symbol="ARB/USDT"]')).to_be_visible()
    expect(dash.locator('tr[data-symbol="OP/USDT"]')).to_be_visible()
    expect(dash.locator(".tl-badge", has_text="ENGINE ALIVE")).to_be_visible()
    expect(dash.locator(".tl-mode-paper")).to_contain_text("PAPER")
    expect(dash.locator('[data-metric="equity"] .tl-value')).not_to_have_text("—")
    expect(dash.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_visible()
    hide_left_sidebar(page)
    dash.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # cosmetic: the chart draws its newest points before the shot
    steps.shot(dash, "1-paper-run.png")


def _emergency_stop(dash: Any, steps: Steps) -> None:
    """With the engine hung, one click and a confirmation empty the book on the emulator."""
    steps.rig.freeze_engine()
    before = steps.rig.open_on_venue()
    assert len(before) == 2
    dash.get_by_role("button", name="■ EMERGENCY STOP").click()
    dash.get_by_role("button", name="CONFIRM STOP").click()
    expect(dash.get_by_text("2 order(s) cancelled")).to_be_visible()
    until(lambda: not steps.rig.open_on_venue(), "the emulator to hold no open order")
    statuses = {o["clientOrderId"]: o["status"] for o in steps.rig.venue_orders()}
    assert all(statuses[o["clientOrderId"]] == "CANCELED" for o in before)
    kill = steps.store.get_control(KILL_CONTROL) or {}
    assert kill.get("engaged") is True and kill.get("by") == "test-operator"
    open_statuses = [s for s in OrderStatus if not s.is_terminal]
    assert steps.store.list_orders(statuses=open_statuses, mode=Mode.PAPER) == []
    expect(dash.locator(".tl-killbar")).to_contain_text("KILL SWITCH ENGAGED")
    expect(dash.locator(".tl-badge", has_text="KILL SWITCH ON")).to_be_visible()
    steps.shot(dash, "2-emergency-stop.png")


def _wrong_code(totp: pyotp.TOTP) -> str:
    now = time.time()
    valid = {totp.at(now + step) for step in (-60, -30, 0, 30, 60)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


def _live_toggle(dash: Any, steps: Steps) -> None:
    """The terms, a wrong code (refused, nothing changes), then the right one."""
    controls = dash.locator(".tl-card", has_text="Controls")
    controls.get_by_placeholder("reason for the audit log (required)").fill(
        "browser test: small live capital after the paper run"
    )
    controls.get_by_role("button", name="Go LIVE…").click()
    expect(controls.get_by_text("GO LIVE: real money, these terms")).to_be_visible()
    expect(controls.get_by_text("$500.00 (live_capital_usd)")).to_be_visible()
    controls.get_by_label("I confirm: trade real money on these terms").check()
    controls.get_by_placeholder("TOTP code").fill(_wrong_code(steps.rig.totp))
    controls.get_by_role("button", name="Confirm LIVE").click()
    expect(controls.locator(".tl-outcome .tl-result-bad", has_text="refused")).to_be_visible()
    assert mode_request(steps.store, "binance") is None
    assert len(steps.store.list_events(kind="go_live_refused")) == 1
    steps.shot(controls, "3-live-wrong-code.png")

    code = steps.rig.totp.now()
    controls.get_by_placeholder("TOTP code").fill(code)
    controls.get_by_role("button", name="Confirm LIVE").click()
    expect(controls.get_by_text("LIVE granted")).to_be_visible()
    request = mode_request(steps.store, "binance")
    assert request is not None and request.mode is Mode.LIVE
    assert request.by == "test-operator" and request.capital_usd == 500
    expect(dash.locator(".tl-badge", has_text="LIVE REQUESTED")).to_be_visible()
    # The code is spent: the same one cannot loosen a limit a moment later.
    controls.get_by_placeholder("TOTP code").fill(code)
    controls.locator("select").first.select_option(label="max_position_pct = 20")
    controls.get_by_placeholder("new value").fill("30")
    controls.get_by_role("button", name="Set limit").click()
    expect(controls.locator(".tl-outcome .tl-result-bad", has_text="already used")).to_be_visible()
    steps.shot(dash, "4-live-toggle.png")
