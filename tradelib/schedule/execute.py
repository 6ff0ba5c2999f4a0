"""The child process that executes one notebook with papermill (`python -m ...execute`).

The scheduler runs every notebook in a process of its own so that a run that hangs can be
stopped without stopping the scheduler: SIGTERM makes this process raise KeyboardInterrupt,
which lets papermill shut the kernel down and save the notebook as far as it got. The outcome
is written as JSON to the result file: status, and for a failure the cell ("In [N]"), the
exception and its message.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum} (timeout or scheduler shutdown)")


def execute(source: Path, output: Path, parameters: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Run `source` into `output` with papermill; returns the outcome as a JSON-ready dict."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    try:
        pm.execute_notebook(
            str(source), str(output), parameters=parameters, kernel_name="python3",
            cwd=str(cwd), progress_bar=False, request_save_on_cell_execute=True,
        )  # fmt: skip
    except PapermillExecutionError as exc:
        return {
            "status": "failed",
            "cell": exc.exec_count,
            "cell_index": exc.cell_index,
            "ename": exc.ename,
            "evalue": exc.evalue,
        }
    except KeyboardInterrupt as exc:
        return {"status": "interrupted", "evalue": str(exc)}
    return {"status": "succeeded"}


def main(argv: list[str]) -> int:
    """argv: notebook, output, parameters (JSON), cwd, result file."""
    source, output, params, cwd, result = argv
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = execute(Path(source), Path(output), json.loads(params), Path(cwd))
    except Exception as exc:  # papermill could not even start (bad notebook, no kernel)
        outcome = {"status": "failed", "ename": type(exc).__name__, "evalue": str(exc)}
    Path(result).write_text(json.dumps(outcome))
    return 0 if outcome["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
