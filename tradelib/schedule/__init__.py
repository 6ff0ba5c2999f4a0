"""Production notebooks on a schedule: `jobs` reads schedule files, `notebook` runs one
notebook with its lock, run record, time limit and alert, `scheduler` keeps the time."""

from tradelib.schedule.jobs import Job, Schedule, load_schedule
from tradelib.schedule.notebook import NotebookRun, run_notebook

__all__ = ["Job", "NotebookRun", "Schedule", "load_schedule", "run_notebook"]
