"""Schedule files: which notebook runs when, with which parameters and time limit.

TOML (or YAML with the same keys)::

    output_dir = "runs"                      # executed notebooks, one file per run
    [jobs.trading_cycle]
    cron = "0 * * * *"                       # crontab: minute hour day month weekday (UTC)
    notebook = "notebooks/production/trading_cycle.ipynb"
    timeout_seconds = 600
    [jobs.trading_cycle.parameters]
    mode = "paper"

    [jobs.daily_report]
    cron = "5 0 * * *"
    notebook = "notebooks/production/daily_report.ipynb"
    catch_up = "skip"                        # "once" (default) or "skip"

A job has exactly one of `cron` (crontab expression, UTC unless `timezone` says otherwise) or
`every` (an interval: "30s", "15m", "1h"). Paths are relative to the schedule file. Every
problem is reported with the job and the key, and nothing runs until the whole file is valid.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tradelib.config import state_dir
from tradelib.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_JOB_KEYS = {"cron", "every", "notebook", "parameters", "timeout_seconds", "catch_up",
             "timezone", "cwd"}  # fmt: skip
CATCH_UP = ("once", "skip")
DEFAULT_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Job:
    """One scheduled notebook."""

    name: str
    notebook: Path
    cron: str | None = None
    every: timedelta | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    catch_up: str = "once"
    timezone: str = "UTC"
    cwd: Path | None = None

    def trigger(self) -> BaseTrigger:
        """The APScheduler trigger of this job's timing."""
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        assert self.every is not None
        return IntervalTrigger(seconds=int(self.every.total_seconds()), timezone=self.timezone)

    def timing(self) -> str:
        """The timing as written ("cron 0 * * * *", "every 900 s")."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.every is not None
        return f"every {int(self.every.total_seconds())} s"


@dataclass(frozen=True)
class Schedule:
    """A validated schedule file."""

    path: Path
    jobs: tuple[Job, ...]
    output_dir: Path


def parse_duration(value: Any, what: str) -> timedelta:
    """'30s' / '15m' / '1h' / '1d' (or a number of seconds) as a timedelta > 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{what} = {value!r}: use a number of seconds or e.g. 30s, 15m, 1h")
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{what} = {value!r}: must be longer than 0 seconds")
    return timedelta(seconds=seconds)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read schedule file {path}: {exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"schedule file {path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"schedule file {path} is not valid: {exc}") from None
    except ImportError:  # pragma: no cover - PyYAML comes with papermill
        raise ConfigError("YAML schedule files need PyYAML (pip install pyyaml)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"schedule file {path}: the top level must be a table of settings")
    return data


def load_schedule(path: Path | str) -> Schedule:
    """Read and validate a schedule file; ConfigError names the job and key that is wrong."""
    path = Path(path).resolve()
    data = _read(path)
    unknown = sorted(set(data) - {"jobs", "output_dir"})
    if unknown:
        raise ConfigError(f"schedule file {path}: unknown key(s) {unknown}; use jobs, output_dir")
    jobs_data = data.get("jobs")
    if not isinstance(jobs_data, dict) or not jobs_data:
        raise ConfigError(f"schedule file {path}: no jobs; add a [jobs.<name>] table per job")
    base = path.parent
    output = data.get("output_dir")
    output_dir = (base / output) if output else state_dir() / "runs"
    jobs = tuple(_job(name, spec, base, path) for name, spec in jobs_data.items())
    return Schedule(path, jobs, output_dir.resolve())


def _job(name: str, spec: Any, base: Path, path: Path) -> Job:
    where = f"{path.name}: job {name!r}"
    if not _NAME.match(str(name)):
        raise ConfigError(f"{where}: names use letters, digits, '_', '-', '.' (at most 100)")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: must be a table with cron/every, notebook and parameters")
    unknown = sorted(set(spec) - _JOB_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_JOB_KEYS)}")
    if ("cron" in spec) == ("every" in spec):
        raise ConfigError(f"{where}: give exactly one of cron (crontab) or every (interval)")
    notebook = spec.get("notebook")
    if not notebook:
        raise ConfigError(f"{where}: notebook is missing (path to the .ipynb to run)")
    notebook_path = (base / str(notebook)).resolve()
    if not notebook_path.is_file():
        raise ConfigError(f"{where}: notebook {notebook_path} does not exist")
    parameters = spec.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"{where}: parameters must be a table of name = value")
    catch_up = spec.get("catch_up", "once")
    if catch_up not in CATCH_UP:
        raise ConfigError(f"{where}: catch_up = {catch_up!r}: one of {CATCH_UP}")
    timeout = parse_duration(spec.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
                             f"{where}: timeout_seconds")  # fmt: skip
    cwd = spec.get("cwd")
    job = Job(
        name=str(name),
        notebook=notebook_path,
        cron=str(spec["cron"]).strip() if "cron" in spec else None,
        every=parse_duration(spec["every"], f"{where}: every") if "every" in spec else None,
        parameters=dict(parameters),
        timeout_seconds=int(timeout.total_seconds()),
        catch_up=catch_up,
        timezone=str(spec.get("timezone", "UTC")),
        cwd=(base / str(cwd)).resolve() if cwd else None,
    )
    try:
        job.trigger()
    except (ValueError, TypeError, LookupError) as exc:
        raise ConfigError(f"{where}: {job.timing()} is not a valid timing: {exc}") from None
    return job
