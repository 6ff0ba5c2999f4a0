"""Schedule files and the missed-run policy (pure: no scheduler thread, no notebook)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tradelib.errors import ConfigError
from tradelib.schedule.jobs import load_schedule, parse_duration
from tradelib.schedule.scheduler import latest_fire_time, missed_run

NOTEBOOK = "nb.ipynb"


def _write(tmp_path: Path, text: str, suffix: str = ".toml") -> Path:
    (tmp_path / NOTEBOOK).write_text("{}")
    path = tmp_path / f"schedule{suffix}"
    path.write_text(text)
    return path


def test_a_toml_schedule_is_read_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, f"""
output_dir = "out"
[jobs.trading_cycle]
cron = "0 * * * *"
notebook = "{NOTEBOOK}"
timeout_seconds = "10m"
[jobs.trading_cycle.parameters]
mode = "paper"
strategy = {{ params_file = "p.json" }}
[jobs.report]
every = "15m"
notebook = "{NOTEBOOK}"
catch_up = "skip"
""")
    schedule = load_schedule(path)
    cycle, report = schedule.jobs
    assert schedule.output_dir == tmp_path / "out"
    assert cycle.notebook == tmp_path / NOTEBOOK
    assert cycle.timeout_seconds == 600
    assert cycle.parameters == {"mode": "paper", "strategy": {"params_file": "p.json"}}
    assert report.every == timedelta(minutes=15) and report.catch_up == "skip"
    at = datetime(2024, 8, 1, 10, 20, tzinfo=UTC)
    assert cycle.trigger().get_next_fire_time(None, at) == datetime(2024, 8, 1, 11, tzinfo=UTC)


def test_a_yaml_schedule_reads_the_same(tmp_path: Path) -> None:
    path = _write(tmp_path, f"""
jobs:
  daily_report:
    cron: "5 0 * * *"
    notebook: {NOTEBOOK}
    parameters: {{mode: paper}}
""", ".yaml")  # fmt: skip
    [job] = load_schedule(path).jobs
    assert job.name == "daily_report" and job.cron == "5 0 * * *"
    assert job.parameters == {"mode": "paper"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[jobs.a]\ncron = "61 * * * *"\nnotebook = "nb.ipynb"', "job 'a': cron 61"),
        ('[jobs.a]\nnotebook = "nb.ipynb"', "exactly one of cron"),
        ('[jobs.a]\ncron = "* * * * *"\nevery = "1m"\nnotebook = "nb.ipynb"', "exactly one"),
        ('[jobs.a]\ncron = "* * * * *"\nnotebook = "missing.ipynb"', "does not exist"),
        ('[jobs.a]\ncron = "* * * * *"\nnotebook = "nb.ipynb"\ntimout = 3', "unknown key"),
        ('[jobs.a]\nevery = "soon"\nnotebook = "nb.ipynb"', "every = 'soon'"),
        ('[jobs.a]\nevery = "1m"\nnotebook = "nb.ipynb"\ncatch_up = "all"', "catch_up"),
        ('[jobs.a]\ncron = "* * * * *"\nnotebook = "nb.ipynb"\ntimezone = "Mars/Base"', "timing"),
        ('[jobs."bad name"]\nevery = "1m"\nnotebook = "nb.ipynb"', "names use letters"),
        ("output_dir = 'x'", "no jobs"),
        ("jobs = [", "not valid"),
    ],
)
def test_a_bad_schedule_names_the_job_and_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_schedule(_write(tmp_path, body))


def test_durations() -> None:
    assert parse_duration("90s", "x") == timedelta(seconds=90)
    assert parse_duration(3600, "x") == timedelta(hours=1)
    assert parse_duration("2h", "x") == timedelta(hours=2)
    with pytest.raises(ConfigError, match="longer than 0"):
        parse_duration(0, "x")


def _hourly(tmp_path: Path, catch_up: str = "once"):  # type: ignore[no-untyped-def]
    path = _write(tmp_path, f'[jobs.h]\ncron = "0 * * * *"\nnotebook = "{NOTEBOOK}"\n'
                            f'catch_up = "{catch_up}"')  # fmt: skip
    return load_schedule(path).jobs[0]


def test_three_missed_hours_give_one_catch_up_run_for_the_latest(tmp_path: Path) -> None:
    job = _hourly(tmp_path)
    last = datetime(2024, 8, 1, 7, tzinfo=UTC)
    now = datetime(2024, 8, 1, 10, 30, tzinfo=UTC)  # 08:00, 09:00 and 10:00 were missed
    assert missed_run(job, last, now) == datetime(2024, 8, 1, 10, tzinfo=UTC)


def test_nothing_is_missed_before_the_next_time(tmp_path: Path) -> None:
    job = _hourly(tmp_path)
    last = datetime(2024, 8, 1, 10, tzinfo=UTC)
    assert missed_run(job, last, datetime(2024, 8, 1, 10, 59, tzinfo=UTC)) is None
    assert missed_run(job, None, datetime(2024, 8, 1, 10, 59, tzinfo=UTC)) is None  # first start


def test_skip_policy_never_catches_up(tmp_path: Path) -> None:
    job = _hourly(tmp_path, "skip")
    last = datetime(2024, 8, 1, 7, tzinfo=UTC)
    assert missed_run(job, last, datetime(2024, 8, 2, tzinfo=UTC)) is None


def test_latest_fire_time_walks_a_long_downtime(tmp_path: Path) -> None:
    trigger = _hourly(tmp_path).trigger()
    last = datetime(2024, 1, 1, tzinfo=UTC)
    now = datetime(2024, 3, 1, 5, 30, tzinfo=UTC)  # two months of hours
    assert latest_fire_time(trigger, last, now) == datetime(2024, 3, 1, 5, tzinfo=UTC)
