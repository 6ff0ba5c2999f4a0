"""`tradelib doctor`: is this machine ready to run tradelib? A readable report, exit 1 if not."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from tradelib.cli.options import StoreOption
from tradelib.config import Settings, load_settings
from tradelib.errors import TradelibError

PACKAGES = (
    "ccxt",
    "pandas",
    "numpy",
    "vectorbt",
    "duckdb",
    "psycopg",
    "papermill",
    "jupyterlab",
    "ipywidgets",
    "pydantic-settings",
    "structlog",
)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def check_python() -> Check:
    """Python must be 3.11 or newer."""
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, version, "" if ok else "install Python 3.11 or newer")


def check_packages() -> list[Check]:
    """Every chosen dependency is installed; report its version."""
    checks = []
    for name in PACKAGES:
        try:
            checks.append(Check(f"package {name}", True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            checks.append(
                Check(f"package {name}", False, "missing", 'run: pip install -e ".[dev]"')
            )
    return checks


def check_store(settings: Settings) -> list[Check]:
    """The store is reachable and has every migration applied."""
    from tradelib.store import open_store

    try:
        with open_store(settings.store_url, migrate=False) as store:
            version, pending = store.schema_version(), store.pending_migrations()
            where = store.url  # the store's url hides the password
    except TradelibError as exc:
        return [Check("store reachable", False, str(exc), "see the message above")]
    migrated = not pending
    return [
        Check("store reachable", True, where),
        Check(
            "store migrated",
            migrated,
            f"schema version {version}" + ("" if migrated else f", pending {pending}"),
            "" if migrated else f"run: tradelib db upgrade --store {where}",
        ),
    ]


def check_data(settings: Settings) -> list[Check]:
    """Bundled real candles (and the unlock calendar once present) are where settings say."""
    data_dir = Path(settings.data_dir)
    candles = sorted((data_dir / "candles" / "1h").glob("*-1h.feather"))
    checks = [
        Check(
            "data: 1h candles",
            bool(candles),
            f"{len(candles)} symbols in {data_dir / 'candles' / '1h'}",
            "" if candles else f"data_dir={data_dir} holds no candles; set TRADELIB_DATA_DIR",
        )
    ]
    calendar = data_dir / "unlocks.csv"
    checks.append(
        Check(
            "data: unlock calendar",
            calendar.is_file(),
            str(calendar),
            "" if calendar.is_file() else "the unlock calendar is missing from data/",
        )
    )
    return checks


def run_checks(settings: Settings) -> list[Check]:
    """All checks, in report order."""
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python,
        check_packages,
        lambda: check_store(settings),
        lambda: check_data(settings),
    ]
    checks: list[Check] = []
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def doctor(store: StoreOption = None) -> None:
    """Check Python, packages, the store (reachable, migrated) and the bundled data."""
    try:
        settings = load_settings(**({"store_url": store} if store else {}))
    except TradelibError as exc:
        typer.echo(f"FAIL  settings: {exc}")
        raise typer.Exit(1) from None
    checks = [Check("settings", True, f"mode={settings.mode}"), *run_checks(settings)]
    width = max(len(c.name) for c in checks)
    for c in checks:
        line = f"{'ok  ' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.detail}"
        typer.echo(line + (f"\n      -> {c.hint}" if c.hint and not c.ok else ""))
    failed = [c for c in checks if not c.ok]
    typer.echo(f"\n{len(checks) - len(failed)} ok, {len(failed)} failing")
    if failed:
        raise typer.Exit(1)
