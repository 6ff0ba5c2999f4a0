"""`tradelib doctor`: is this machine ready to run tradelib? A readable report, exit 1 if not."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from tradelib.cli.options import StoreOption
from tradelib.config import (
    CONFIG_ENV,
    ENV_PREFIX,
    Settings,
    config_file,
    load_settings,
    unknown_environment,
)
from tradelib.errors import ConfigError, TradelibError

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


def check_config_file() -> Check:
    """TRADELIB_CONFIG, when set, names a readable file."""
    try:
        path = config_file()
    except ConfigError as exc:
        return Check("config file", False, str(exc))
    return Check("config file", True, str(path) if path else f"none ({CONFIG_ENV} not set)")


def check_environment() -> list[Check]:
    """Every TRADELIB_* variable is one tradelib reads (a typo would be ignored otherwise)."""
    unknown = unknown_environment()
    if not unknown:
        return [Check("environment", True, f"no unknown {ENV_PREFIX}* variables")]
    hint = "fix the name or unset it; every setting is listed in the README"
    return [Check("environment", False, f"unknown variable {name}", hint) for name in unknown]


def check_settings(store: str | None) -> tuple[Settings | None, list[Check]]:
    """Load the settings; one failing line per invalid field."""
    try:
        settings = load_settings(**({"store_url": store} if store else {}))
    except ConfigError as exc:
        head, *fields = str(exc).split("\n")
        if not fields:
            return None, [Check("settings", False, head)]
        hint = f"fix it in {config_file() or 'the TRADELIB_* variable that sets it'}"
        return None, [Check("settings", False, f.strip(), hint) for f in fields]
    source = config_file() or "defaults and environment"
    return settings, [Check("settings", True, f"mode={settings.mode}, from {source}")]


def check_store(settings: Settings) -> list[Check]:
    """The store is reachable, has every migration applied, and its audit key is ours."""
    from tradelib.cli.db import missing_duckdb_file
    from tradelib.store import open_store

    missing = missing_duckdb_file(settings.store_url)
    if missing is not None:  # opening it would create it: report, change nothing
        hint = f"run: tradelib db upgrade --store {settings.store_url} (or tradelib demo)"
        return [Check("store reachable", False, f"no store at {missing} yet", hint)]
    try:
        with open_store(settings.store_url, migrate=False) as store:
            version, pending = store.schema_version(), store.pending_migrations()
            where = store.url  # the store's url hides the password
            audit = check_audit_key(store) if 4 not in pending else []
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
        *audit,
    ]


def check_audit_key(store: Any) -> list[Check]:
    """The audit key this machine would use is the one the store's chain was written with."""
    from tradelib.audit_anchor import AUDIT_KEY_ENV, load_audit_key

    anchor = store.get_audit_anchor()
    try:
        key = load_audit_key(create=False)
    except TradelibError as exc:
        return [Check("audit key", False, str(exc))]
    if key is None:
        if anchor is None:
            return [Check("audit key", True, "none yet (created on the first audit entry)")]
        detail = f"no audit key here, but the store's chain uses key {anchor.key_id}"
        return [Check("audit key", False, detail, f"set {AUDIT_KEY_ENV} to the writers' key")]
    detail = f"key {key.key_id} from {key.source}"
    if anchor is not None and anchor.key_id != key.key_id:
        detail += f", but the store's chain uses key {anchor.key_id}"
        return [Check("audit key", False, detail, f"set {AUDIT_KEY_ENV} to the writers' key")]
    return [Check("audit key", True, detail)]


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


def run_checks(settings: Settings | None) -> list[Check]:
    """Python, packages, and (with valid settings) the store and the data, in report order."""
    steps: list[Callable[[], Check | list[Check]]] = [check_python, check_packages]
    if settings is not None:
        steps += [lambda: check_store(settings), lambda: check_data(settings)]
    checks: list[Check] = []
    for step in steps:
        result = step()
        checks.extend(result if isinstance(result, list) else [result])
    if settings is None:
        checks.append(Check("store and data", False, "not checked: the settings do not load"))
    return checks


def doctor(store: StoreOption = None) -> None:
    """Check config, environment, settings, Python, packages, the store and the bundled data."""
    file_check = check_config_file()
    env_checks = check_environment()
    settings, setting_checks = check_settings(store)
    if not file_check.ok or not all(c.ok for c in env_checks):
        setting_checks = [Check("settings", False, "not loaded: fix the problems above first")]
    checks = [file_check, *env_checks, *setting_checks, *run_checks(settings)]
    width = max(len(c.name) for c in checks)
    for c in checks:
        line = f"{'ok  ' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.detail}"
        typer.echo(line + (f"\n      -> {c.hint}" if c.hint and not c.ok else ""))
    failed = [c for c in checks if not c.ok]
    typer.echo(f"\n{len(checks) - len(failed)} ok, {len(failed)} failing")
    if failed:
        raise typer.Exit(1)
