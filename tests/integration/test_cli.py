"""The `tradelib` command against real stores: version, db, doctor, secrets, audit."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradelib.audit import AuditLog
from tradelib.cli import app
from tradelib.errors import SecretError
from tradelib.secrets import (
    MASTER_KEY_ENV,
    SecretBox,
    generate_master_key,
    load_credentials,
)
from tradelib.store import open_store

runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("doctor", "db", "emulator", "secrets", "audit", "version"):
        assert command in result.output
    version = runner.invoke(app, ["version"])
    assert version.exit_code == 0 and version.output.startswith("tradelib 0.")


def test_console_script_is_installed() -> None:
    installed = subprocess.run(["tradelib", "version"], capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("tradelib 0.")


def test_db_upgrade_status_and_doctor(store_url: str) -> None:
    if store_url.startswith("duckdb"):
        # Asking about a DuckDB file that does not exist must not create it.
        path = Path("/" + store_url.removeprefix("duckdb://").lstrip("/"))
        for command in (["db", "status"], ["doctor"]):
            absent = runner.invoke(app, [*command, "--store", store_url])
            assert absent.exit_code == 1 and f"no store at {path}" in absent.output
            assert not path.exists()
        with open_store(store_url, migrate=False):
            pass  # an empty file: every migration pending
    status = runner.invoke(app, ["db", "status", "--store", store_url])
    assert status.exit_code == 0, status.output
    assert "pending: 1" in status.output
    doctor = runner.invoke(app, ["doctor", "--store", store_url])
    assert doctor.exit_code == 1
    assert "tradelib db upgrade" in doctor.output
    upgrade = runner.invoke(app, ["db", "upgrade", "--store", store_url])
    assert upgrade.exit_code == 0, upgrade.output
    assert "schema version" in upgrade.output
    again = runner.invoke(app, ["db", "status", "--store", store_url])
    assert "pending: none" in again.output
    doctor = runner.invoke(app, ["doctor", "--store", store_url])
    assert "ok    store migrated" in doctor.output
    assert "password" not in doctor.output


def test_unreachable_postgres_is_a_readable_error() -> None:
    result = runner.invoke(
        app, ["db", "upgrade", "--store", "postgresql://bob:hunter2pw@127.0.0.1:1/x"]
    )
    assert result.exit_code == 2
    assert "cannot reach PostgreSQL at 127.0.0.1:1" in result.output
    assert "hunter2pw" not in result.output


def test_bad_setting_is_reported_with_its_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELIB_RISK__MAX_POSITION_PCT", "150")
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 2
    assert "risk.max_position_pct = '150'" in result.output and "<= 100" in result.output


def test_secrets_set_key_stores_only_ciphertext(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = generate_master_key()
    monkeypatch.setenv(MASTER_KEY_ENV, master)
    runner.invoke(app, ["db", "upgrade", "--store", store_url])
    result = runner.invoke(
        app,
        ["secrets", "set-key", "--exchange", "binance", "--label", "main", "--store", store_url],
        input="AKIAKEY1234567890\nSECRETVALUE0987654321\n",
    )
    assert result.exit_code == 0, result.output
    assert "SECRETVALUE0987654321" not in result.output
    listing = runner.invoke(app, ["secrets", "list", "--store", store_url])
    assert "binance/main" in listing.output and "AKIAKEY" not in listing.output
    with open_store(store_url) as db:
        record = db.get_api_key("binance", "main")
        assert record is not None and b"SECRETVALUE" not in record.secret_ciphertext
        creds = load_credentials(db, SecretBox(base64.b64decode(master)), "binance", "main")
        assert creds.api_secret == "SECRETVALUE0987654321"
        with pytest.raises(SecretError, match="no API key stored for kraken/main"):
            load_credentials(db, SecretBox(base64.b64decode(master)), "kraken", "main")


def test_secrets_set_key_without_master_key_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    result = runner.invoke(
        app,
        ["secrets", "set-key", "--exchange", "binance", "--store", url],
        input="k" * 20 + "\n" + "s" * 20 + "\n",
    )
    assert result.exit_code == 2
    assert "new-master-key" in result.output


def test_audit_verify_reports_intact_and_broken(store_url: str) -> None:
    with open_store(store_url) as db:
        db.migrate()
        for i in range(3):
            AuditLog(db).record("test", "decision", {"i": i}, datetime.now(UTC))
    ok = runner.invoke(app, ["audit", "verify", "--store", store_url])
    assert ok.exit_code == 0 and "3 entries verified" in ok.output
    shown = runner.invoke(app, ["audit", "show", "--store", store_url])
    assert shown.output.count("decision") == 3
    with open_store(store_url) as db:
        db._query("UPDATE audit_log SET payload = '{\"i\":99}' WHERE id = 2")
    broken = runner.invoke(app, ["audit", "verify", "--store", store_url])
    assert broken.exit_code == 1 and "AUDIT LOG BROKEN at entry 2" in broken.output


def test_calendar_import_validates_then_merges(tmp_path: Path) -> None:
    import shutil

    from tradelib.strategy.calendar import default_calendar_path, load_calendar

    target = tmp_path / "unlocks.csv"
    shutil.copy(default_calendar_path(), target)
    before = target.read_text()
    header = before.splitlines()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        header + "\nArbitrum,ARB,2027-03-16T00:00:00Z,92650000,3.5,circulating,mixed,,"
        "https://example.org/arb,high,\nNope,NOPE,2027-03-17T00:00:00Z,1,1,circulating,"
        "mixed,,https://example.org/x,high,\n"
    )
    result = runner.invoke(app, ["calendar", "import", str(bad), "--calendar", str(target)])
    assert result.exit_code == 2
    assert "row 3" in result.output and "NOPE" in result.output
    assert target.read_text() == before  # nothing written
    good = tmp_path / "good.csv"
    good.write_text(bad.read_text().splitlines()[0] + "\n" + bad.read_text().splitlines()[1] + "\n")
    result = runner.invoke(app, ["calendar", "import", str(good), "--calendar", str(target)])
    assert result.exit_code == 0, result.output
    assert "added 1 event" in result.output
    assert any(e.unlock_time.year == 2027 for e in load_calendar(target).events)


def test_calendar_upcoming_refuses_an_absurd_horizon_and_reads_only_utf8(tmp_path: Path) -> None:
    huge = runner.invoke(app, ["calendar", "upcoming", "--days", "999999999"])
    assert huge.exit_code == 2
    assert "Invalid value for '--days'" in huge.output and "36500" in huge.output
    assert "Traceback" not in huge.output
    latin = tmp_path / "unlocks.csv"
    latin.write_bytes("token,symbol\nZürich,ARB\n".encode("latin-1"))
    before = latin.read_bytes()
    result = runner.invoke(app, ["calendar", "upcoming", "--calendar", str(latin)])
    assert result.exit_code == 2
    assert f"{latin}: row 2 is not UTF-8 text" in result.output
    assert latin.read_bytes() == before
    ok = runner.invoke(app, ["calendar", "upcoming", "--days", "36500"])
    assert ok.exit_code == 0, ok.output


def test_kill_and_release_say_each_thing_once(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env = {k: v for k, v in env.items() if k not in ("TRADELIB_TOTP_SECRET", "TRADELIB_LOG_FORMAT")}
    store = ["--store", f"duckdb:///{tmp_path / 'k.duckdb'}"]

    def run(*args: str) -> str:
        done = subprocess.run(
            ["tradelib", *args, *store], capture_output=True, text=True, env=env, check=False
        )
        return (done.stdout + done.stderr).lower()

    killed = run("kill", "--reason", "desk says stop")
    assert killed.count("kill switch engaged") == 1, killed
    refused = run("release", "--reason", "all clear")
    assert refused.count("release refused") == 1, refused
    assert "tradelib_totp_secret is not set" in refused
