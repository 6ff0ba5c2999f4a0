"""Config errors through the command line: refused before anything runs, reported by doctor.

(Named test_config*: the repository scan in tests/unit/test_config.py skips these files,
which use unknown TRADELIB_* names on purpose.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from store_snapshot import snapshot
from typer.testing import CliRunner

from tradelib.cli import app
from tradelib.store import open_store

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TRADELIB_") and key != "TRADELIB_TEST_PG_URL":
            monkeypatch.delenv(key)


def test_a_wrong_config_path_stops_every_command_and_the_store_is_untouched(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(store_url).close()
    before = snapshot(store_url)
    monkeypatch.setenv("TRADELIB_CONFIG", str(tmp_path / "tradelib.tmol"))
    killed = runner.invoke(app, ["kill", "--store", store_url])
    assert killed.exit_code == 2
    assert "tradelib.tmol does not exist, so nothing was loaded" in killed.output
    assert "KILL SWITCH ENGAGED" not in killed.output
    doctor = runner.invoke(app, ["doctor", "--store", store_url])
    assert doctor.exit_code == 1
    assert "FAIL  config file" in doctor.output and "tradelib.tmol does not exist" in doctor.output
    assert "FAIL  settings                   not loaded" in doctor.output
    assert snapshot(store_url) == before
    with open_store(store_url) as db:
        assert db.get_control("kill_switch") is None


def test_doctor_reports_each_bad_setting_on_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELIB_RISK__MAX_POSITON_PCT", "5")
    monkeypatch.setenv("TRADELIB_EXCHANGE__ID", "binance")
    unknown = runner.invoke(app, ["doctor"])
    assert unknown.exit_code == 1
    assert (
        "FAIL  environment                unknown variable TRADELIB_RISK__MAX_POSITON_PCT "
        "(did you mean TRADELIB_RISK__MAX_POSITION_PCT?)" in unknown.output
    )
    monkeypatch.delenv("TRADELIB_RISK__MAX_POSITON_PCT")
    monkeypatch.setenv("TRADELIB_EXCHANGE__PAPER_BALANCES", '{"USDT": "-100"}')
    monkeypatch.setenv("TRADELIB_EXCHANGE__BASE_URL", "localhost:8080")
    monkeypatch.setenv("TRADELIB_QUOTE_CURRENCY", "")
    monkeypatch.setenv("TRADELIB_STORE_URL", "postgresql://bob:hunter2pw@db:port/prod")
    doctor = runner.invoke(app, ["doctor"])
    assert doctor.exit_code == 1
    lines = [line for line in doctor.output.splitlines() if line.startswith("FAIL  settings")]
    assert len(lines) == 4, doctor.output
    for expected in (
        "exchange.paper_balances = {'USDT': '-100'}: paper balance of USDT must be a number >= 0",
        "exchange.base_url = 'localhost:8080': base_url scheme must be http or https",
        "quote_currency = '': quote_currency must be an upper-case currency code",
        "store_url = 'postgresql://bob:***@db:port/prod': store_url cannot be parsed",
    ):
        assert any(expected in line for line in lines), (expected, lines)
    assert "hunter2pw" not in doctor.output
    status = runner.invoke(app, ["db", "status"])
    assert status.exit_code == 2 and "hunter2pw" not in status.output


def test_a_good_config_file_is_named_by_doctor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "tradelib.toml"
    cfg.write_text("[risk]\nmax_position_pct = 5\n")
    monkeypatch.setenv("TRADELIB_CONFIG", str(cfg))
    doctor = runner.invoke(app, ["doctor", "--store", f"duckdb:///{tmp_path / 'x.duckdb'}"])
    assert f"ok    config file                {cfg}" in doctor.output
    assert f"from {cfg}" in doctor.output
