"""End to end in a browser: `notebooks/live_dashboard.ipynb` in real JupyterLab, in headless
Chromium, watching a paper engine that trades on the Binance emulator in another process.

What is checked is what a person sees (the page) and what the exchange holds (the emulator's
own order list), not what the dashboard believes: the engine's position appears in the
table; with the engine hung, the emergency stop cancels its resting orders on the emulator;
the live toggle refuses a wrong TOTP code and changes nothing. Screenshots of each step are
kept in the folder the test prints (TRADELIB_ARTIFACTS, default ./artifacts/dashboard).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from lab_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    browser_missing,
    copy_notebook,
    free_port,
    hide_left_sidebar,
    run_all_cells,
    running_lab,
)

from tradelib.domain import Mode, OrderStatus
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.operations import mode_request
from tradelib.risk import KILL_CONTROL
from tradelib.secrets import (
    Credentials,
    SecretBox,
    generate_master_key,
    master_key_from_env,
    new_totp_secret,
    save_credentials,
)
from tradelib.store import Store, open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
try:
    from playwright.sync_api import expect
except ImportError:  # browser_missing() says so and the test skips
    expect = None

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "live_dashboard.ipynb"
ENGINE = Path(__file__).with_name("dashboard_engine.py")
ARTIFACTS = Path(os.environ.get("TRADELIB_ARTIFACTS", REPO / "artifacts")) / "dashboard"
LIMIT_S = 120.0  # safety nets against hangs, never timing assertions
UI_MS = 120_000


class Lines:
    """A subprocess's stdout, read on a thread, waited on line by line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, prefix: str, count: int = 1) -> list[str]:
        """Block until `count` lines starting with `prefix` were printed; return them."""
        deadline = time.monotonic() + LIMIT_S
        while len([s for s in self.seen if s.startswith(prefix)]) < count:
            try:
                self.seen.append(self._queue.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                tail = "\n".join(self.seen[-20:])
                raise AssertionError(
                    f"gave up waiting for {prefix!r}; last lines:\n{tail}"
                ) from None
        return [s for s in self.seen if s.startswith(prefix)]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _venue_orders(base_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base_url}/_emulator/orders", timeout=10) as answer:
        return list(json.loads(answer.read()))


def _open_on_venue(base_url: str) -> list[dict[str, Any]]:
    return [o for o in _venue_orders(base_url) if o["status"] in ("NEW", "PARTIALLY_FILLED")]


@pytest.fixture
def artifacts() -> Path:
    """The screenshot folder, emptied of an earlier run's pictures."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    print(f"\nscreenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Subprocesses the test starts; each is killed (by its pid) at the end."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in reversed(started):
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_dashboard_in_jupyterlab_follows_a_paper_engine_and_stops_it(
    pg_store_url: str,
    tmp_path: Path,
    artifacts: Path,
    processes: list[subprocess.Popen[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    master, totp_secret = generate_master_key(), new_totp_secret()
    key, secret = secrets.token_hex(16), secrets.token_hex(24)
    port = free_port()
    venue = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TRADELIB_STORE_URL": pg_store_url,
        "TRADELIB_MASTER_KEY": master,
        "TRADELIB_TOTP_SECRET": totp_secret,
        "TRADELIB_EXCHANGE__BASE_URL": venue,
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    monkeypatch.setenv("TRADELIB_MASTER_KEY", master)

    emulator = subprocess.Popen(
        [sys.executable, "-c", "from tradelib.cli import app; app()", "emulator",
         f"--port={port}", f"--api-key={key}", f"--api-secret={secret}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    processes.append(emulator)
    Lines(emulator).wait_for("Binance emulator listening")

    store = open_store(pg_store_url)
    box = SecretBox(master_key_from_env())
    save_credentials(store, box, Credentials("binance", "main", key, secret))

    engine = subprocess.Popen(
        [sys.executable, str(ENGINE), pg_store_url, venue], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    processes.append(engine)
    progress = Lines(engine)
    progress.wait_for("RESTING", count=2)
    progress.wait_for("WATCHING")
    assert len(_open_on_venue(venue)) == 2

    rig = Rig(store, engine, progress, venue, pyotp.TOTP(totp_secret), artifacts)
    root = tmp_path / "lab"
    # The emergency stop must cancel where the paper engine trades: the emulator.
    name = copy_notebook(NOTEBOOK, root, {"paper_venue_url": venue, "operator": "test-operator"})
    with (
        running_lab(root, env, tmp_path / "jupyterlab.log") as lab,
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
            _watch_the_paper_run(page, dash, rig)
            _emergency_stop(dash, rig)
            _live_toggle(dash, rig)
        except BaseException:
            page.screenshot(path=str(artifacts / "failure.png"))
            raise
        finally:
            browser.close()
    store.close()


@dataclass
class Rig:
    """What the browser steps check against: the store, the engine process, the venue."""

    store: Store
    engine: subprocess.Popen[str]
    progress: Lines
    venue: str
    totp: pyotp.TOTP
    artifacts: Path

    def shot(self, target: Any, name: str) -> None:
        """Save a screenshot of `target` (a page or a locator) as an artifact."""
        target.screenshot(path=str(self.artifacts / name))


def _watch_the_paper_run(page: Any, dash: Any, rig: Rig) -> None:
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
    rig.shot(dash, "1-paper-run.png")


def _emergency_stop(dash: Any, rig: Rig) -> None:
    """With the engine hung, one click and a confirmation empty the book on the emulator."""
    rig.engine.send_signal(signal.SIGUSR1)
    rig.progress.wait_for("FROZEN")
    before = _open_on_venue(rig.venue)
    assert len(before) == 2
    dash.get_by_role("button", name="■ EMERGENCY STOP").click()
    dash.get_by_role("button", name="CONFIRM STOP").click()
    expect(dash.get_by_text("2 order(s) cancelled")).to_be_visible()
    _until(lambda: not _open_on_venue(rig.venue), "the emulator to hold no open order")
    statuses = {o["clientOrderId"]: o["status"] for o in _venue_orders(rig.venue)}
    assert all(statuses[o["clientOrderId"]] == "CANCELED" for o in before)
    kill = rig.store.get_control(KILL_CONTROL) or {}
    assert kill.get("engaged") is True and kill.get("by") == "test-operator"
    open_statuses = [s for s in OrderStatus if not s.is_terminal]
    assert rig.store.list_orders(statuses=open_statuses, mode=Mode.PAPER) == []
    expect(dash.locator(".tl-killbar")).to_contain_text("KILL SWITCH ENGAGED")
    expect(dash.locator(".tl-badge", has_text="KILL SWITCH ON")).to_be_visible()
    rig.shot(dash, "2-emergency-stop.png")


def _wrong_code(totp: pyotp.TOTP) -> str:
    now = time.time()
    valid = {totp.at(now + step) for step in (-60, -30, 0, 30, 60)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


def _live_toggle(dash: Any, rig: Rig) -> None:
    """The terms, a wrong code (refused, nothing changes), then the right one."""
    controls = dash.locator(".tl-card", has_text="Controls")
    controls.get_by_placeholder("reason for the audit log (required)").fill(
        "browser test: small live capital after the paper run"
    )
    controls.get_by_role("button", name="Go LIVE…").click()
    expect(controls.get_by_text("GO LIVE: real money, these terms")).to_be_visible()
    expect(controls.get_by_text("$500.00 (live_capital_usd)")).to_be_visible()
    controls.get_by_label("I confirm: trade real money on these terms").check()
    controls.get_by_placeholder("TOTP code").fill(_wrong_code(rig.totp))
    controls.get_by_role("button", name="Confirm LIVE").click()
    expect(controls.locator(".tl-outcome .tl-result-bad", has_text="refused")).to_be_visible()
    assert mode_request(rig.store, "binance") is None
    assert len(rig.store.list_events(kind="go_live_refused")) == 1
    rig.shot(controls, "3-live-wrong-code.png")

    controls.get_by_placeholder("TOTP code").fill(rig.totp.now())
    controls.get_by_role("button", name="Confirm LIVE").click()
    if hasattr(CcxtExchange, "fetch_api_restrictions"):
        expect(controls.get_by_text("LIVE granted")).to_be_visible()
        request = mode_request(rig.store, "binance")
        assert request is not None and request.mode is Mode.LIVE
        assert request.by == "test-operator"
    else:
        # Until the security work (issue 13) brings the API-key check, going live fails
        # closed: the right code is refused too, for the key check, and nothing changes.
        _until(lambda: len(rig.store.list_events(kind="go_live_refused")) == 2, "the refusal")
        expect(controls.locator(".tl-outcome", has_text="key check failed")).to_be_visible()
        assert mode_request(rig.store, "binance") is None
    rig.shot(dash, "4-live-toggle.png")
