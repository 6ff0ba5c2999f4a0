"""Helpers of the store-sharing tests: the owner process, client scripts, event-sized waits.

Imported by test_store_share.py and test_store_share_faults.py; the `owner` fixture (an
`Owner` on a fresh file) is in conftest.py.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tradelib.store import RemoteStore, Store, open_store
from tradelib.store import share_wire as wire
from tradelib.store.duckdb_store import _path_from_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FAIL_SAFE_S = 120.0  # against hangs only; nothing here measures time


class Owner:
    """share_owner.py in a subprocess: holds and serves the file, answers commands."""

    def __init__(self, url: str, idle_limit: float | None = None):
        self.url = url
        args = [sys.executable, str(HERE / "share_owner.py"), url]
        if idle_limit is not None:
            args.append(str(idle_limit))
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.answer()
        assert ready == f"ready {self.proc.pid}", ready
        self.pid = self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(">> "):
                self._answers.put(line[3:].rstrip("\n"))
        self._answers.put(None)

    def answer(self) -> str:
        """The next answer line (fails when the owner died without one)."""
        line = self._answers.get(timeout=FAIL_SAFE_S)
        assert line is not None, f"the owner exited with {self.proc.wait(FAIL_SAFE_S)}"
        return line

    def ask(self, command: str) -> str:
        """Send one command and return its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def wait_for_orders(self, n: int) -> int:
        """Ask until the engine has written at least `n` orders; return how many it has."""
        while True:
            written = int(self.ask("count").split()[0])
            if written >= n:
                return written
            threading.Event().wait(0.05)

    def exit(self) -> None:
        """Close the store and end the process."""
        assert self.ask("exit") == "closed"
        assert self.proc.wait(FAIL_SAFE_S) == 0

    def kill(self, tidy: bool = True) -> None:
        """SIGKILL: no close, no atexit, the socket file stays behind (removed if `tidy`)."""
        self.proc.kill()
        self.proc.wait(FAIL_SAFE_S)
        path = wire.socket_path(_path_from_url(self.url))
        if tidy and os.path.exists(path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)  # someone took over the file meanwhile: leave it
                except ConnectionRefusedError:
                    os.unlink(path)


def client_script(body: str) -> list[str]:
    prelude = (
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from share_owner import order\n"
        "from tradelib.store import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "print(type(store).__name__, flush=True)\n"
    )
    return [sys.executable, "-c", prelude + body]


def remote(url: str, owner: Owner) -> RemoteStore:
    store = open_store(url)
    assert isinstance(store, RemoteStore), store
    assert store.owner_pid == owner.pid
    return store


def token_other_than(store: Store, token: int) -> int:
    """The store's change token once it differs from `token` (PostgreSQL delivers a moment late)."""
    return int(wait_until(lambda: store.change_token() != token and store.change_token()))


def wait_until(check: Any) -> Any:
    """Poll `check()` until it returns something truthy (a fail-safe bounds the wait)."""
    deadline = datetime.now(UTC) + timedelta(seconds=FAIL_SAFE_S)
    while not (result := check()):
        assert datetime.now(UTC) < deadline, "condition never became true"
        threading.Event().wait(0.02)
    return result
