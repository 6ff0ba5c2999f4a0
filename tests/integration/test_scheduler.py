"""The scheduler and `run-notebook` with real papermill runs, real locks and real stores.

Test notebooks live in tests/fixtures/notebooks: `fails` raises in its third code cell, `waits`
writes a file when it starts and waits for a release file (event-driven, with a fail-safe),
`counts` appends a line per run. Waits are on events (files, run records); time limits are
fail-safes, and the one test about a time limit checks the outcome, not a duration.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from service_fixtures import LIMIT_S, wait_for

from tradelib.schedule.jobs import load_schedule
from tradelib.schedule.notebook import NotebookRun, run_notebook
from tradelib.schedule.scheduler import Scheduler
from tradelib.store import RunStatus, open_store

NOTEBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks"
CLI = [sys.executable, "-c", "from tradelib.cli import app; app()"]


def _alerts(store_url: str) -> list[str]:
    with open_store(store_url) as store:
        return [e.payload["message"] for e in store.list_events(kind="alert")
                if e.payload["kind"] == "scheduled_run"]  # fmt: skip


@pytest.mark.slow
def test_a_failing_run_is_recorded_with_its_cell_and_alerted(
    store_url: str, tmp_path: Path
) -> None:
    run = run_notebook(
        store_url, NOTEBOOKS / "fails.ipynb", {"reason": "bad calendar row 7"},
        output_dir=tmp_path / "runs", name="nightly",
    )  # fmt: skip
    assert run.status is RunStatus.FAILED
    assert run.output_path is not None and run.output_path.is_file()
    with open_store(store_url) as store:
        [record] = store.list_runs(name="nightly")
    assert record.status == "failed" and record.finished_at is not None
    assert record.error is not None
    assert 'raise ValueError(f"job failed: {reason}")' in record.error
    assert "ValueError: job failed: bad calendar row 7" in record.error
    assert record.error_cell is not None and f"In [{record.error_cell}]" in record.error
    assert record.output_path == str(run.output_path)
    assert record.parameters == {"reason": "bad calendar row 7"}
    assert record.triggered_by == "manual" and record.notebook == str(NOTEBOOKS / "fails.ipynb")
    [alert] = _alerts(store_url)
    assert f"run {record.id} of nightly failed" in alert and "bad calendar row 7" in alert


@pytest.mark.slow
def test_a_run_over_its_time_limit_is_stopped_recorded_and_alerted(
    duckdb_store_url: str, tmp_path: Path
) -> None:
    run = run_notebook(
        duckdb_store_url, NOTEBOOKS / "waits.ipynb",
        {"started_file": str(tmp_path / "started"), "release_file": str(tmp_path / "never")},
        output_dir=tmp_path / "runs", name="stuck", timeout_seconds=20,
    )  # fmt: skip
    assert run.status is RunStatus.TIMED_OUT
    assert run.error is not None and "exceeded its 20 s time limit" in run.error
    with open_store(duckdb_store_url) as store:
        [record] = store.list_runs(name="stuck")
    assert record.status == "timed_out" and record.timeout_seconds == 20
    [alert] = _alerts(duckdb_store_url)
    assert "stuck timed out" in alert


@pytest.mark.postgres
@pytest.mark.slow
def test_an_overlapping_run_is_refused_here_and_from_another_process(
    pg_store_url: str, tmp_path: Path
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    params = {"started_file": str(started), "release_file": str(release)}
    first: list[NotebookRun] = []
    worker = threading.Thread(target=lambda: first.append(run_notebook(
        pg_store_url, NOTEBOOKS / "waits.ipynb", params, output_dir=tmp_path, name="cycle",
    )))  # fmt: skip
    worker.start()
    try:
        wait_for(started.exists, "the first run to start")
        again = run_notebook(pg_store_url, NOTEBOOKS / "waits.ipynb", params,
                             output_dir=tmp_path, name="cycle")  # fmt: skip
        assert again.status is RunStatus.SKIPPED
        assert again.error and "job:cycle is already running: held by notebook run cycle" in (
            again.error
        )
        other = subprocess.run(
            [*CLI, "run-notebook", str(NOTEBOOKS / "waits.ipynb"), "--name", "cycle",
             "-p", "release_file", str(release), "--store", pg_store_url],
            capture_output=True, text=True, timeout=LIMIT_S, check=False,
        )  # fmt: skip
        assert other.returncode == 3, other.stdout + other.stderr
        assert "skipped" in other.stdout and "already running" in other.stdout
    finally:
        release.write_text("go")
        worker.join(LIMIT_S)
    assert [r.status for r in first] == [RunStatus.SUCCEEDED]
    with open_store(pg_store_url) as store:
        runs = store.list_runs(name="cycle")
    assert sorted(r.status for r in runs) == ["skipped", "skipped", "succeeded"]
    assert len(_alerts(pg_store_url)) == 2  # each refusal is alerted (warning)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=LIMIT_S,
                          check=False)  # fmt: skip


def _run_until(scheduler: Scheduler, done: Callable[[], bool]) -> None:
    """Run the scheduler in a thread until `done`, then stop it (it lets runs finish)."""
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    try:
        wait_for(done, "the scheduler's runs")
    finally:
        stop.set()
        thread.join(LIMIT_S)
    assert not thread.is_alive()


def _schedule(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "schedule.toml"
    path.write_text(f'output_dir = "runs"\n{body}')
    return path


@pytest.mark.slow
def test_the_scheduler_runs_a_fast_job_one_run_at_a_time(
    duckdb_store_url: str, tmp_path: Path
) -> None:
    counts = tmp_path / "count.txt"
    path = _schedule(tmp_path, f"""
[jobs.tick]
every = "1s"
notebook = "{NOTEBOOKS / 'counts.ipynb'}"
[jobs.tick.parameters]
count_file = "{counts}"
""")
    scheduler = Scheduler(load_schedule(path), duckdb_store_url)
    _run_until(scheduler, lambda: len([r for r in scheduler.runs
                                       if r.status is RunStatus.SUCCEEDED]) >= 2)  # fmt: skip
    with open_store(duckdb_store_url) as store:
        runs = sorted(store.list_runs(limit=1000, name="tick"), key=lambda r: r.started_at)
    done = [r for r in runs if r.status == "succeeded"]
    assert len(done) == len(counts.read_text().splitlines()) >= 2
    for earlier, later in itertools.pairwise(done):
        assert earlier.finished_at is not None and later.started_at >= earlier.finished_at
    for run in done:
        assert run.triggered_by == "schedule" and run.scheduled_for is not None
        assert run.output_path and Path(run.output_path).is_file()
        assert Path(run.output_path).is_relative_to(tmp_path / "runs" / "tick")
    # Fire times that came while a run was going are refused and recorded, never run twice.
    assert {r.error for r in runs if r.status == "skipped"} <= {
        "tick is already running in this scheduler (its previous run)"
    }
    assert all(r.status in ("succeeded", "skipped") for r in runs)


@pytest.mark.slow
def test_missed_runs_are_caught_up_once_and_dead_runs_marked_abandoned(
    duckdb_store_url: str, tmp_path: Path
) -> None:
    counts = tmp_path / "count.txt"
    # Once a year (1 January, 00:00 UTC): no regular time can fall inside the test.
    path = _schedule(tmp_path, f"""
[jobs.yearly]
cron = "0 0 1 1 *"
notebook = "{NOTEBOOKS / 'counts.ipynb'}"
parameters = {{ count_file = "{counts}" }}
""")
    latest = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC)
    with open_store(duckdb_store_url) as store:
        three_years_ago = latest.replace(year=latest.year - 3)
        last = store.start_run("yearly", {}, at=three_years_ago, scheduled_for=three_years_ago)
        store.finish_run(last, "succeeded")
        dead = store.start_run("yearly", {}, at=three_years_ago)  # its process died
    scheduler = Scheduler(load_schedule(path), duckdb_store_url)
    _run_until(scheduler, lambda: bool(scheduler.runs))
    with open_store(duckdb_store_url) as store:
        catch_up = store.list_runs(name="yearly", status="succeeded")
        abandoned = store.get_run(dead)
    caught = [r for r in catch_up if r.triggered_by == "catch-up"]
    assert len(caught) == 1  # three missed years, one run
    assert caught[0].scheduled_for == latest  # standing for the latest missed time
    assert abandoned is not None and abandoned.status == "abandoned"
    assert counts.read_text().splitlines() == ["run"] * len(
        [r for r in catch_up if r.id != last]
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_tradelib_schedule_runs_until_sigterm_and_runs_lists_it(
    pg_store_url: str, tmp_path: Path
) -> None:
    counts = tmp_path / "count.txt"
    path = _schedule(tmp_path, f"""
[jobs.tick]
every = "2s"
notebook = "{NOTEBOOKS / 'counts.ipynb'}"
timeout_seconds = 600
parameters = {{ count_file = "{counts}" }}
""")
    checked = _cli("schedule", str(path), "--check", "--store", pg_store_url)
    assert checked.returncode == 0 and "every 2 s" in checked.stdout
    proc = subprocess.Popen(
        [*CLI, "schedule", str(path), "--store", pg_store_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with open_store(pg_store_url) as store:
            wait_for(lambda: store.list_runs(name="tick", status="succeeded"), "a scheduled run")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=LIMIT_S)
    assert proc.returncode == 0, out
    assert "scheduler stopped" in out
    listed = _cli("runs", "--name", "tick", "--store", pg_store_url)
    assert listed.returncode == 0
    assert "succeeded" in listed.stdout and "schedule" in listed.stdout
    with open_store(pg_store_url) as store:
        assert store.list_runs(name="tick", status="running") == []  # SIGTERM waited for it


@pytest.mark.postgres
@pytest.mark.slow
def test_the_store_password_reaches_the_notebook_but_no_record(
    pg_store_url: str, tmp_path: Path
) -> None:
    # Trust auth ignores the password; what matters is where it could be written down.
    secret = "pw-never-printed-7f3a"
    url = pg_store_url.replace("postgres@", f"postgres:{secret}@", 1)
    run = run_notebook(url, NOTEBOOKS / "uses_store.ipynb", {"note": f"see {url}"},
                       output_dir=tmp_path, name="uses_store")  # fmt: skip
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.output_path is not None
    executed = run.output_path.read_text()
    assert f"running: uses_store #{run.run_id} on postgresql://postgres:***@" in executed
    with open_store(pg_store_url) as store:
        [record] = store.list_runs(name="uses_store")
        assert record.parameters == {"note": f"see {url.replace(secret, '***')}"}
        rows = [str(r) for r in store.list_runs(limit=100)] + [
            str(e.payload) for e in store.list_events(limit=1000)
        ]
    assert secret not in executed.replace(f"see {url}", "")  # only where the user put it
    assert not [r for r in rows if secret in r]
