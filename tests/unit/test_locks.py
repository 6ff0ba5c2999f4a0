"""Run locks on DuckDB stores: an OS file lock that another process really cannot take."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tradelib.errors import AlreadyRunning, LockLost
from tradelib.locks import account_lock_name, acquire_lock, job_lock_name

TRY_LOCK = """
import sys
from tradelib.errors import AlreadyRunning
from tradelib.locks import acquire_lock
try:
    acquire_lock(sys.argv[1], sys.argv[2], "the other process").release()
except AlreadyRunning as exc:
    print(exc)
    sys.exit(3)
print("taken")
"""


def _other_process(url: str, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, url, name], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_a_held_file_lock_refuses_another_process_and_names_the_holder(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'store.duckdb'}"
    name = account_lock_name("paper", "binance")
    with acquire_lock(url, name, "tradelib run --mode paper"):
        refused = _other_process(url, name)
        assert refused.returncode == 3, refused.stderr
        assert "engine:paper:binance is already running" in refused.stdout
        assert "tradelib run --mode paper" in refused.stdout  # who holds it
        assert _other_process(url, account_lock_name("live", "binance")).returncode == 0
    assert _other_process(url, name).returncode == 0  # released: free again


def test_the_same_process_cannot_take_a_lock_twice(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'store.duckdb'}"
    lock = acquire_lock(url, job_lock_name("daily"), "first")
    with pytest.raises(AlreadyRunning, match="job:daily is already running: held by first"):
        acquire_lock(url, job_lock_name("daily"), "second")
    lock.release()
    acquire_lock(url, job_lock_name("daily"), "third").release()


def test_a_removed_lock_file_is_a_lost_lock(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'store.duckdb'}"
    lock = acquire_lock(url, "engine:paper:binance", "test")
    lock.check()
    [path] = (tmp_path / "store.duckdb.locks").glob("*.lock")
    path.unlink()  # now another process could create and take a new file
    with pytest.raises(LockLost, match="removed or replaced"):
        lock.check()
    lock.release()
    with pytest.raises(LockLost):
        lock.check()


def test_memory_stores_lock_inside_the_process() -> None:
    url = "duckdb:///:memory:"
    with acquire_lock(url, "engine:paper:x", "a"), pytest.raises(AlreadyRunning):
        acquire_lock(url, "engine:paper:x", "b")
    acquire_lock(url, "engine:paper:x", "c").release()
