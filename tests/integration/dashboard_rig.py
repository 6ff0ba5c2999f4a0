"""The world the dashboard's end-to-end tests watch: the Binance emulator and a paper engine
(`dashboard_engine.py`), each in its own process, and what the emulator itself holds.

    rig = start_rig(store_url, tmp_path, processes)   # emulator, stored key, engine trading
    rig.freeze_engine()                               # the engine hangs (SIGUSR1)
    rig.open_on_venue()                               # the emulator's own open orders
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

from tradelib.secrets import (
    Credentials,
    SecretBox,
    generate_master_key,
    new_totp_secret,
    save_credentials,
)
from tradelib.store import open_store

ENGINE = Path(__file__).with_name("dashboard_engine.py")
LIMIT_S = 120.0  # safety nets against hangs, never timing assertions


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


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` (a safety net of LIMIT_S, not a timing assertion)."""
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Subprocesses a test starts; each is killed (by its pid) at the end."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in reversed(started):
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@dataclass
class Rig:
    """A running emulator and paper engine, and the environment they share."""

    store_url: str
    venue: str
    env: dict[str, str]
    totp: pyotp.TOTP
    engine: subprocess.Popen[str]
    progress: Lines

    def venue_orders(self) -> list[dict[str, Any]]:
        """Every order the emulator holds (its own view, not the store's)."""
        with urllib.request.urlopen(f"{self.venue}/_emulator/orders", timeout=10) as answer:
            return list(json.loads(answer.read()))

    def open_on_venue(self) -> list[dict[str, Any]]:
        """The emulator's open orders."""
        return [o for o in self.venue_orders() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    def freeze_engine(self) -> None:
        """Make the engine hang after its current cycle (no beat, no cycle) and wait for it."""
        self.engine.send_signal(signal.SIGUSR1)
        self.progress.wait_for("FROZEN")


def start_rig(
    store_url: str,
    tmp: Path,
    processes: list[subprocess.Popen[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> Rig:
    """Emulator, its API key stored encrypted in the store, and a paper engine trading on it.

    Returns once the engine holds positions and two resting bids, and trades at watching
    pace. The store is opened here only to save the key and closed again, so the engine is
    the process that holds a DuckDB file.
    """
    master, totp_secret = generate_master_key(), new_totp_secret()
    key, secret = secrets.token_hex(16), secrets.token_hex(24)
    port = free_port()
    venue = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TRADELIB_STORE_URL": store_url,
        "TRADELIB_MASTER_KEY": master,
        "TRADELIB_TOTP_SECRET": totp_secret,
        "TRADELIB_EXCHANGE__BASE_URL": venue,
        "XDG_STATE_HOME": str(tmp / "state"),
    }
    for name in ("TRADELIB_MASTER_KEY", "TRADELIB_TOTP_SECRET", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, env[name])
    emulator = subprocess.Popen(
        [sys.executable, "-c", "from tradelib.cli import app; app()", "emulator",
         f"--port={port}", f"--api-key={key}", f"--api-secret={secret}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    processes.append(emulator)
    Lines(emulator).wait_for("Binance emulator listening")
    from tradelib.secrets import master_key_from_env

    with open_store(store_url) as store:
        save_credentials(store, SecretBox(master_key_from_env()),
                         Credentials("binance", "main", key, secret))  # fmt: skip
    engine = subprocess.Popen(
        [sys.executable, str(ENGINE), store_url, venue], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    processes.append(engine)
    progress = Lines(engine)
    progress.wait_for("RESTING", count=2)
    progress.wait_for("WATCHING")
    rig = Rig(store_url, venue, env, pyotp.TOTP(totp_secret), engine, progress)
    assert len(rig.open_on_venue()) == 2
    return rig
