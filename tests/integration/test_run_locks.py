"""Run locks: PostgreSQL session advisory locks and OS file locks, across real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import PG_URL

from tradelib.errors import AlreadyRunning, LockLost
from tradelib.locks import account_lock_name, acquire_lock, job_lock_name

TRY_LOCK = """
import sys
from tradelib.errors import AlreadyRunning
from tradelib.locks import acquire_lock
try:
    acquire_lock(sys.argv[1], sys.argv[2], "the other machine").release()
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


@pytest.mark.postgres
def test_another_process_is_refused_with_the_holder_named(pg_store_url: str) -> None:
    name = account_lock_name("live", "binance")
    with acquire_lock(pg_store_url, name, "tradelib run --mode live"):
        refused = _other_process(pg_store_url, name)
        assert refused.returncode == 3, refused.stderr
        assert "engine:live:binance is already running: held by tradelib run --mode live" in (
            refused.stdout
        )
    assert _other_process(pg_store_url, name).returncode == 0


@pytest.mark.postgres
def test_locks_of_two_schemas_do_not_collide(pg_store_url: str) -> None:
    other = pg_store_url.rsplit("schema=", 1)[0] + "schema=tl_test_other_env"
    with acquire_lock(pg_store_url, "job:daily", "a"):
        assert _other_process(other, "job:daily").returncode == 0


@pytest.mark.postgres
def test_a_killed_session_is_a_lost_lock_that_another_process_may_take(
    pg_store_url: str,
) -> None:
    lock = acquire_lock(pg_store_url, "engine:paper:binance", "test holder")
    lock.check()
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'test holder%'"
        )
    with pytest.raises(LockLost, match="session ended"):
        lock.check()
    assert _other_process(pg_store_url, "engine:paper:binance").returncode == 0
    lock.release()
    with pytest.raises(AlreadyRunning), acquire_lock(pg_store_url, "engine:paper:binance", "x"):
        acquire_lock(pg_store_url, "engine:paper:binance", "y")


# -- DuckDB: OS file locks next to the store file ----------------------------------------


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
