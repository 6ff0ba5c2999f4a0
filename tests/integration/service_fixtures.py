"""Helpers for tests that run `tradelib run` and the emulator as real processes.

The emulator runs in its own process on a fixed free port, so a test can stop it and start it
again where it was (an exchange restart), drive its replay clock through its admin API, and cut
its WebSockets. The service is the real `tradelib run` command in a subprocess. A test calendar
puts an ARB unlock at the emulator's clock and the parameters make the spot variant enter on the
first candle closing at the unlock and leave three candles later, so the real strategy trades
on the first advance — no test-only strategy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tradelib.store import HeartbeatRecord, Store, open_store

EMULATOR_START = datetime.fromisoformat("2024-08-01T00:00:00+00:00")
UNLOCK = EMULATOR_START + timedelta(hours=1)  # the entry candle closes at the first advance
EXIT = UNLOCK + timedelta(hours=3)  # days_after = 0.125
CLI = [sys.executable, "-c", "from tradelib.cli import app; app()"]
LIMIT_S = 180.0  # fail-safe against hangs, never a timing assertion
T = TypeVar("T")

CALENDAR = (
    "token,symbol,unlock_time_utc,amount_tokens,pct_circulating,pct_basis,category,"
    "usd_value_approx,source_url,confidence,notes\n"
    f"Arbitrum,ARB,{UNLOCK:%Y-%m-%dT%H:%M:%SZ},92650000,2.87,circulating,mixed,70000000,"
    "https://example.test/arb-unlock,high,test event at the emulator's clock\n"
)
PARAMS = {
    "strategy": "token_unlock",
    "interface_version": 1,
    "params": {"direction": "spot", "spot_entry_delay_hours": 0, "days_after": 0.125},
}


def strategy_files(folder: Path) -> tuple[Path, Path]:
    """(params.json, calendar.csv) of the test event."""
    params, calendar = folder / "params.json", folder / "calendar.csv"
    params.write_text(json.dumps(PARAMS))
    calendar.write_text(CALENDAR)
    return params, calendar


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(probe: Callable[[], T | None], what: str, limit_s: float = LIMIT_S) -> T:
    """Poll `probe` until it returns something truthy (a fail-safe bound, not a timing)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class EmulatorProcess:
    """`tradelib emulator` in a subprocess on a fixed port; restartable."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key, self.secret = "emulator-test-key", "emulator-test-secret"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, at: datetime = EMULATOR_START) -> None:
        """Start it with its replay clock at `at`; return when it answers."""
        self.starts += 1
        log = (self.folder / f"emulator-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [*CLI, "emulator", "--port", str(self.port), "--start", at.isoformat(),
             "--api-key", self.key, "--api-secret", self.secret, "--balance", "USDT=10000"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._answers, "the emulator to answer")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the emulator exited with {self.proc.returncode}")
        try:
            self.admin("state", method="GET")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after a fail-safe wait)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def admin(self, action: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        """Call /_emulator/<action> and return its JSON answer."""
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            f"{self.url}/_emulator/{action}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def now(self) -> datetime:
        """The replay clock."""
        return datetime.fromisoformat(self.admin("state", method="GET")["now"])

    def advance(self, steps: int = 1) -> datetime:
        """Advance the replay clock by `steps` hours; returns the new time."""
        return datetime.fromisoformat(self.admin("advance", {"steps": steps})["now"])


def service_env(emulator: EmulatorProcess, folder: Path, **extra: str) -> dict[str, str]:
    """Environment of a `tradelib run` against the emulator. The state directory stays this
    process's: both write the store's audit log, which needs the same audit key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELIB_")}
    env.update(TRADELIB_EXCHANGE__BASE_URL=emulator.url, TRADELIB_LOG_FORMAT="json", **extra)
    return env


def start_service(
    store_url: str, folder: Path, env: dict[str, str], *args: str, log_name: str = "service"
) -> subprocess.Popen[bytes]:
    """`tradelib run --mode paper` (or `args`) with the test strategy, logging into `folder`."""
    params, calendar = strategy_files(folder)
    log = (folder / f"{log_name}.log").open("ab")
    return subprocess.Popen(
        [*CLI, "run", "--params", str(params), "--calendar", str(calendar), "--store", store_url,
         *(args or ("--mode", "paper"))],
        stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def open_as_client(store_url: str, service: subprocess.Popen[bytes]) -> Store:
    """Open the store the way another process would while the service runs.

    On DuckDB the service must hold the file (a dashboard or `tradelib kill` reaches it through
    the service's socket): whoever opens a file first holds it, so a handle this process
    happened to open first is closed again until the service has taken the file over.
    """
    if not store_url.startswith("duckdb"):
        return open_store(store_url)

    def served() -> Store | None:
        assert service.poll() is None, "the service exited"
        store = open_store(store_url)
        if getattr(store, "owner_pid", None) == service.pid:
            return store
        store.close()
        return None

    return wait_for(served, "the service to hold the DuckDB file")


def stop_service(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM and wait (fail-safe bound); returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise AssertionError("the service did not stop on SIGTERM") from None


def heartbeat(store: Store, mode: str = "paper") -> HeartbeatRecord | None:
    """The account's heartbeat as the store holds it now."""
    return store.get_heartbeat(mode, "binance")


def cycled_at(store: Store, market_time: datetime, mode: str = "paper") -> bool:
    """True once the service finished a cycle at (or after) `market_time`."""
    beat = heartbeat(store, mode)
    if beat is None or not beat.detail.get("last_report"):
        return False
    return datetime.fromisoformat(beat.detail["last_report"]["at"]) >= market_time
