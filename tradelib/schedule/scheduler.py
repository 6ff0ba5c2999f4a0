"""`tradelib schedule FILE`: run the schedule's notebooks on time, each with a run record.

APScheduler keeps the time (cron and interval triggers); every due job runs in a thread of its
own through `run_notebook` (job lock, run record, time limit, alert). Rules:

* Overlap: a job never runs twice at once. If its previous run is still going — in this
  scheduler, another scheduler, or a `tradelib run-notebook` anywhere on the same store — the
  new run is refused and recorded as `skipped` (with who holds the job), and alerted.
* Missed runs (the scheduler was down): on start, a job whose latest cron time since its last
  recorded run has passed runs once at once (`catch-up`, standing for the latest missed
  time), never once per missed time; `catch_up = "skip"` waits for the next time instead.
  While running, a job that fires late (the machine was suspended) also runs once.
* A run left `running` by a scheduler that died is marked `abandoned` at the next start (when
  nobody holds its job lock).
* Stopping (SIGTERM/SIGINT) lets running notebooks finish (each is bounded by its time limit),
  then exits; a supervisor's stop timeout should exceed the longest job timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from tradelib.alerts import Alert, AlertKind, AlertRouter, Severity
from tradelib.errors import AlreadyRunning, TradelibError
from tradelib.locks import acquire_lock, job_lock_name
from tradelib.logs import get_logger
from tradelib.schedule.jobs import Job, Schedule
from tradelib.schedule.notebook import NotebookRun, run_notebook, store_alerts
from tradelib.store import RunStatus, open_store

log = get_logger(__name__)

_SIGNAL_POLL_S = 0.5  # how soon SIGTERM/SIGINT is noticed while notebooks run
_SCAN_LIMIT = 100_000  # fire times walked to find the latest missed one (a minutely year is 525k)


def latest_fire_time(trigger: BaseTrigger, after: datetime, now: datetime) -> datetime | None:
    """The latest fire time in (after, now], or None when none fell in that span."""
    latest: datetime | None = None
    previous = after
    for _ in range(_SCAN_LIMIT):
        upcoming = trigger.get_next_fire_time(previous, now)
        if upcoming is None or upcoming > now:
            break
        if upcoming <= previous:  # a trigger may repeat its last time: step past it
            previous += timedelta(microseconds=1)
            continue
        latest = previous = upcoming
    return latest.astimezone(UTC) if latest else None


def missed_run(job: Job, last_scheduled: datetime | None, now: datetime) -> datetime | None:
    """The fire time a catch-up run stands for after downtime, or None (policy: run once)."""
    if last_scheduled is None or job.catch_up == "skip":
        return None
    return latest_fire_time(job.trigger(), last_scheduled, now)


class _NotebookExecutor(BaseExecutor):
    """Runs each due job in a thread, passing the fire time it stands for (the last one due:
    coalesced, so a late scheduler runs a job once, not once per missed time)."""

    def __init__(self, run: Callable[[str, datetime], None]) -> None:
        super().__init__()
        self._run = run
        self._threads: list[threading.Thread] = []

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def work() -> None:
            try:
                self._run(job.id, run_times[-1])
            except BaseException as exc:  # reported to APScheduler, which logs it
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, [])

        thread = threading.Thread(target=work, name=f"job {job.id}", daemon=False)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def shutdown(self, wait: bool = True) -> None:
        """Wait for running jobs (each is bounded by its time limit)."""
        if wait:
            for thread in list(self._threads):
                thread.join()


class Scheduler:
    """The schedule's jobs on one store, until `stop` is set."""

    def __init__(
        self,
        schedule: Schedule,
        store_url: str,
        *,
        alerts: AlertRouter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.schedule = schedule
        self.store_url = store_url
        self.alerts = alerts or store_alerts(store_url)
        self.clock = clock
        self.jobs = {job.name: job for job in schedule.jobs}
        self.runs: list[NotebookRun] = []
        self._guard = threading.Lock()

    def run(self, stop: threading.Event, on_started: Callable[[], None] | None = None) -> None:
        """Start the triggers, catch up once where runs were missed, wait for `stop`."""
        self._mark_abandoned()
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_executor(_NotebookExecutor(self._run_job), "notebooks")
        scheduler.add_listener(self._refused, EVENT_JOB_MAX_INSTANCES)
        for job in self.schedule.jobs:
            scheduler.add_job(
                _never_called, job.trigger(), id=job.name, name=job.name, executor="notebooks",
                max_instances=1, coalesce=True, misfire_grace_time=None,
            )  # fmt: skip
        scheduler.start()
        log.info("scheduler started", jobs=[f"{j.name}: {j.timing()}" for j in self.schedule.jobs])
        try:
            self._catch_up(scheduler)
            if on_started is not None:
                on_started()
            # A timed wait: CPython runs signal handlers in the main thread only, and a SIGTERM
            # the kernel hands to a job's thread would never wake an untimed wait.
            while not stop.wait(_SIGNAL_POLL_S):
                pass
        finally:
            log.info("scheduler stopping: waiting for running notebooks")
            scheduler.shutdown(wait=True)

    def run_now(self, name: str, scheduled_for: datetime | None, trigger: str) -> NotebookRun:
        """Run job `name` now (through its lock and run record)."""
        job = self.jobs[name]
        run = run_notebook(
            self.store_url, job.notebook, job.parameters, output_dir=self.schedule.output_dir,
            name=job.name, timeout_seconds=job.timeout_seconds, triggered_by=trigger,
            scheduled_for=scheduled_for, cwd=job.cwd, alerts=self.alerts,
        )  # fmt: skip
        with self._guard:
            self.runs.append(run)
        return run

    def _run_job(self, name: str, scheduled_for: datetime) -> None:
        try:
            self.run_now(name, scheduled_for.astimezone(UTC), "schedule")
        except TradelibError as exc:  # the store is down: say so, the next time tries again
            log.error("scheduled run could not be recorded", job=name, error=str(exc))
            self._alert(Severity.CRITICAL, f"scheduled run of {name} at {scheduled_for} "
                                           f"could not run: {exc}", name)  # fmt: skip

    def _catch_up(self, scheduler: BackgroundScheduler) -> None:
        now = self.clock()
        with open_store(self.store_url) as store:
            last = {job.name: store.last_scheduled_for(job.name) for job in self.schedule.jobs}
        for job in self.schedule.jobs:
            missed = missed_run(job, last[job.name], now)
            if missed is None:
                continue
            log.warning("run missed while the scheduler was down: running it once now",
                        job=job.name, missed=missed.isoformat())  # fmt: skip
            threading.Thread(
                target=self._catch_up_one, args=(job.name, missed), name=f"catch-up {job.name}"
            ).start()

    def _catch_up_one(self, name: str, missed: datetime) -> None:
        try:
            self.run_now(name, missed, "catch-up")
        except TradelibError as exc:
            log.error("catch-up run could not be recorded", job=name, error=str(exc))

    def _refused(self, event: JobSubmissionEvent) -> None:
        """APScheduler refused a run because this process still runs the job: record it."""
        when = event.scheduled_run_times[-1] if event.scheduled_run_times else self.clock()
        why = f"{event.job_id} is already running in this scheduler (its previous run)"
        try:
            with open_store(self.store_url) as store:
                run_id = store.start_run(event.job_id, {}, triggered_by="schedule",
                                         scheduled_for=when.astimezone(UTC))  # fmt: skip
                store.finish_run(run_id, RunStatus.SKIPPED, error=why)
        except TradelibError as exc:
            log.error("skipped run could not be recorded", job=event.job_id, error=str(exc))
            return
        self._alert(Severity.WARNING, f"run {run_id} of {event.job_id} refused: {why}",
                    event.job_id)  # fmt: skip

    def _mark_abandoned(self) -> None:
        """Runs still 'running' whose job lock nobody holds died with their scheduler."""
        with open_store(self.store_url) as store:
            running = {r.name: r for r in store.list_runs(limit=1000, status=RunStatus.RUNNING)}
        for name in sorted(running):
            try:
                lock = acquire_lock(self.store_url, job_lock_name(name), "scheduler start")
            except AlreadyRunning:
                continue  # it is really running somewhere
            with lock, open_store(self.store_url) as store:
                for run in store.list_runs(limit=1000, name=name, status=RunStatus.RUNNING):
                    why = "its process stopped before recording the end"
                    store.finish_run(run.id, RunStatus.ABANDONED, error=why)
                    log.warning("run abandoned by a stopped process", job=name, run=run.id)

    def _alert(self, severity: Severity, message: str, job: str) -> None:
        self.alerts.emit(Alert(AlertKind.SCHEDULED_RUN, severity, message, self.clock(),
                               data={"job": job}))  # fmt: skip


def _never_called() -> None:
    """APScheduler needs a callable per job; the notebook executor runs the job instead."""
    raise AssertionError("jobs run through the notebook executor")
