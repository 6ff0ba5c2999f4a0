"""Run one production notebook with papermill: job lock, run record, time limit, alert.

`run_notebook` is what `tradelib run-notebook` and every scheduled job call:

1. take the job's run lock (`job:<name>`): a job never runs twice at once, on any machine
   sharing the store; a refused start is recorded as a `skipped` run and alerted;
2. record the run (`running`, parameters with any URL password masked, trigger, scheduled
   time, notebook, output path);
3. execute the notebook in a child process (`tradelib.schedule.execute`) into its own
   output file, the store URL in its environment (TRADELIB_STORE_URL, never in its cells),
   stopping it when it exceeds its time limit (SIGTERM, then the whole process tree after a
   grace period);
4. record how it ended — `succeeded`, `failed` with the failing cell ("In [N]", its first
   line, the exception) or `timed_out` with the cell it was stuck in — and alert a failure.

The store is opened only around the bookkeeping, never during the run: the notebook opens it
itself (on DuckDB as the file's holder, or through the holder's socket).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradelib.alerts import Alert, AlertKind, AlertRouter, LogSink, Severity, StoreSink
from tradelib.config import AlertSettings
from tradelib.errors import AlreadyRunning
from tradelib.locks import acquire_lock, job_lock_name
from tradelib.logs import get_logger, redact
from tradelib.store import STORE_URL_ENV, RunStatus, Store, open_store, redact_url
from tradelib.webhooks import webhook_sinks

log = get_logger(__name__)

GRACE_SECONDS = 30.0  # after SIGTERM, how long papermill may take to save and stop the kernel


@dataclass(frozen=True, slots=True)
class NotebookRun:
    """How one run ended."""

    run_id: int
    name: str
    status: RunStatus
    output_path: Path | None
    error: str | None = None
    error_cell: int | None = None


def store_alerts(store_url: str, settings: AlertSettings | None = None) -> AlertRouter:
    """Alerts to the log, the store's events (the dashboard's feed; the store is opened per
    alert) and the configured webhooks."""

    def append(kind: str, payload: dict[str, Any], at: datetime, source: str = "") -> int:
        with open_store(store_url) as store:
            return store.append_event(kind, payload, at, source)

    hooks = webhook_sinks(settings) if settings is not None else []
    return AlertRouter([LogSink(), StoreSink(append), *hooks])


def _now() -> datetime:
    return datetime.now(UTC)


def _jsonable(parameters: dict[str, Any]) -> dict[str, Any]:
    # TOML dates and other exotic values travel as text, like papermill's own CLI would pass.
    result: dict[str, Any] = json.loads(json.dumps(parameters, default=str))
    return result


def _masked(params: dict[str, Any], store_url: str) -> dict[str, Any]:
    """Parameters as the run record keeps them: every known secret (the store's password, a
    password in any URL given) shown as ***."""
    redact_url(store_url)  # registers the password as a secret
    for value in params.values():
        if isinstance(value, str) and "://" in value:
            redact_url(value)
    masked: dict[str, Any] = json.loads(redact(json.dumps(params)))
    return masked


def run_notebook(
    store_url: str,
    notebook: Path,
    parameters: dict[str, Any],
    *,
    output_dir: Path,
    name: str | None = None,
    timeout_seconds: int = 3600,
    triggered_by: str = "manual",
    scheduled_for: datetime | None = None,
    cwd: Path | None = None,
    alerts: AlertRouter | None = None,
    on_start: Callable[[int], None] | None = None,
) -> NotebookRun:
    """Run `notebook` once as job `name` (default: its file name); see the module docstring."""
    notebook = Path(notebook).resolve()
    name = name or notebook.stem
    alerts = alerts or store_alerts(store_url)
    params = _jsonable(parameters)
    recorded = _masked(params, store_url)

    def start(store: Store, output: Path | None = None) -> int:
        return store.start_run(
            name, recorded, triggered_by=triggered_by, scheduled_for=scheduled_for,
            notebook=str(notebook), output_path=str(output) if output else None,
            host=socket.gethostname(), pid=os.getpid(), timeout_seconds=timeout_seconds,
        )  # fmt: skip

    try:
        lock = acquire_lock(store_url, job_lock_name(name), f"notebook run {name}")
    except AlreadyRunning as exc:
        with open_store(store_url) as store:
            run_id = start(store)
            store.finish_run(run_id, RunStatus.SKIPPED, error=str(exc))
        _alert(alerts, Severity.WARNING, f"run {run_id} of {name} refused: {exc}", name, run_id)
        return NotebookRun(run_id, name, RunStatus.SKIPPED, None, str(exc))
    with lock:
        stamp = _now().strftime("%Y%m%dT%H%M%SZ")
        output = output_dir / name / f"{name}-{stamp}-{secrets.token_hex(3)}.ipynb"
        output.parent.mkdir(parents=True, exist_ok=True)
        with open_store(store_url) as store:
            run_id = start(store, output)
        if on_start is not None:
            on_start(run_id)
        log.info("notebook run started", job=name, run=run_id, notebook=str(notebook))
        try:
            status, error, cell = _execute(notebook, output, params, cwd or notebook.parent,
                                           timeout_seconds, store_url)  # fmt: skip
        except BaseException as exc:  # interrupted by the operator: record it, then stop
            with open_store(store_url) as store:
                store.finish_run(run_id, RunStatus.FAILED, error=f"interrupted: {exc!r}")
            raise
        with open_store(store_url) as store:
            store.finish_run(run_id, status, error=error, error_cell=cell)
    if status is not RunStatus.SUCCEEDED:
        what = "timed out" if status is RunStatus.TIMED_OUT else "failed"
        _alert(alerts, Severity.CRITICAL,
               f"run {run_id} of {name} {what}: {error} (executed notebook: {output})",
               name, run_id)  # fmt: skip
    log.info("notebook run ended", job=name, run=run_id, status=status.value)
    return NotebookRun(run_id, name, status, output, error, cell)


def _alert(router: AlertRouter, severity: Severity, message: str, job: str, run_id: int) -> None:
    router.emit(Alert(AlertKind.SCHEDULED_RUN, severity, message, _now(),
                      data={"job": job, "run_id": run_id}))  # fmt: skip


def _execute(
    notebook: Path, output: Path, params: dict[str, Any], cwd: Path, timeout: int, store_url: str
) -> tuple[RunStatus, str | None, int | None]:
    with tempfile.TemporaryDirectory(prefix="tradelib-run-") as folder:
        result = Path(folder) / "result.json"
        argv = [sys.executable, "-m", "tradelib.schedule.execute", str(notebook), str(output),
                json.dumps(params), str(cwd), str(result)]  # fmt: skip
        # The store reaches the notebook through the environment, not as a parameter: an
        # injected parameter is printed in the executed notebook, with any password in it.
        env = {**os.environ, STORE_URL_ENV: store_url}
        child = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, env=env)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(child)
            running = _cell(output, lambda c: _papermill(c).get("status") == "running")
            stuck = f" in {running}" if running else ""
            return RunStatus.TIMED_OUT, f"exceeded its {timeout} s time limit{stuck}", None
        except BaseException:
            _stop(child)
            raise
        outcome: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {
            "status": "failed", "ename": "ProcessDied", "evalue": f"exit status {child.returncode}"
        }  # fmt: skip
    if outcome["status"] == "succeeded":
        return RunStatus.SUCCEEDED, None, None
    cell = outcome.get("cell")
    cell = int(cell) if isinstance(cell, int) else None
    index = outcome.get("cell_index")
    where: str | None = None
    if cell is not None:
        where = _cell(output, lambda c: c.get("execution_count") == cell)
    if where is None and index is not None:
        where = f"cell {index}"
    text = f"{outcome.get('ename')}: {outcome.get('evalue')}"
    return RunStatus.FAILED, f"{where}: {text}" if where else text, cell


def _papermill(cell: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = cell.get("metadata", {}).get("papermill", {})
    return meta


def _cell(output: Path, match: Callable[[dict[str, Any]], bool]) -> str | None:
    """'In [N] (first line of its code)' of the first code cell `match` accepts."""
    try:
        cells = json.loads(output.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for cell in cells:
        if cell.get("cell_type") == "code" and match(cell):
            source = "".join(cell.get("source", "")).strip().splitlines()
            first = source[0][:80] if source else ""
            return f"In [{cell.get('execution_count') or ' '}] ({first})"
    return None


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM (papermill saves and stops the kernel), then kill whatever is left of the tree."""
    import psutil

    try:
        tree = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=GRACE_SECONDS)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=GRACE_SECONDS)
