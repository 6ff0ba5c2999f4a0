"""Settings: defaults, TOML file, environment override, and every invalid value."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from tradelib.config import (
    OTHER_ENV,
    RiskSettings,
    load_settings,
    mask_url,
    settings_env_names,
    unknown_environment,
)
from tradelib.domain import Mode
from tradelib.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TRADELIB_"):
            monkeypatch.delenv(key)


def test_defaults_are_the_seed_numbers() -> None:
    risk = load_settings().risk
    assert risk.max_position_pct == 20
    assert risk.max_portfolio_heat_pct == 30
    assert risk.min_position_usd == 50
    assert risk.stop_loss_pct == 2
    assert risk.take_profit_pct == 5
    assert risk.trailing_activation_pct == 3
    assert risk.daily_loss_limit_pct == 5
    assert risk.max_consecutive_losses == 3
    assert risk.drawdown_pause_pct == 10
    assert risk.min_account_balance_usd == 100
    assert risk.stablecoin_reserve_pct == 20
    assert risk.max_open_positions == 5
    assert load_settings().mode is Mode.PAPER
    assert load_settings().store_url.startswith("duckdb:///")


def test_toml_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tradelib.toml"
    cfg.write_text(
        'mode = "live"\nlive_capital_usd = "250"\n[risk]\nmax_position_pct = 10\n'
        "max_open_positions = 3\n"
    )
    settings = load_settings(cfg)
    assert settings.mode is Mode.LIVE
    assert settings.live_capital_usd == Decimal(250)
    assert settings.risk.max_position_pct == 10
    assert settings.risk.max_open_positions == 3
    monkeypatch.setenv("TRADELIB_RISK__MAX_OPEN_POSITIONS", "4")
    monkeypatch.setenv("TRADELIB_MODE", "paper")
    settings = load_settings(cfg)
    assert settings.risk.max_open_positions == 4
    assert settings.mode is Mode.PAPER
    assert settings.risk.max_position_pct == 10  # untouched by env: still from the file


def test_decimal_values_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELIB_RISK__STOP_LOSS_PCT", "1.1")
    assert load_settings().risk.stop_loss_pct == Decimal("1.1")


BAD = [
    ("max_position_pct", "0", "> 0"),
    ("max_position_pct", "150", "<= 100"),
    ("max_portfolio_heat_pct", "-1", "> 0"),
    ("max_portfolio_heat_pct", "101", "<= 100"),
    ("min_position_usd", "-5", ">= 0"),
    ("stop_loss_pct", "0", "> 0"),
    ("stop_loss_pct", "100", "< 100"),
    ("take_profit_pct", "0", "> 0"),
    ("trailing_activation_pct", "0", "> 0"),
    ("trailing_distance_pct", "100", "< 100"),
    ("daily_loss_limit_pct", "0", "> 0"),
    ("daily_loss_alert_fraction", "1", "< 1"),
    ("max_consecutive_losses", "0", ">= 1"),
    ("drawdown_pause_pct", "200", "<= 100"),
    ("min_account_balance_usd", "-1", ">= 0"),
    ("stablecoin_reserve_pct", "100", "< 100"),
    ("max_open_positions", "0", ">= 1"),
    ("max_slippage_pct", "11", "<= 10"),
    ("stale_data_seconds", "0", ">= 1"),
    ("max_open_positions", "five", "integer"),
    ("stop_loss_pct", "two", "decimal"),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD)
def test_every_invalid_risk_value_names_field_value_and_range(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, expected: str
) -> None:
    assert field in RiskSettings.model_fields
    monkeypatch.setenv(f"TRADELIB_RISK__{field.upper()}", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert f"risk.{field}" in text
    assert repr(value) in text
    assert expected in text


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TRADELIB_MODE", "yolo", "mode = 'yolo'"),
        ("TRADELIB_STORE_URL", "sqlite:///x.db", "store_url must start with"),
        ("TRADELIB_LIVE_CAPITAL_USD", "0", "live_capital_usd = '0'"),
        ("TRADELIB_LOG_FORMAT", "xml", "log_format"),
        ("TRADELIB_EXCHANGE__ID", "mtgox", "exchange.id = 'mtgox'"),
    ],
)
def test_invalid_top_level_values(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_settings()


def test_unknown_key_in_toml_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[risk]\nmax_positon_pct = 10\n")  # typo must not be ignored
    with pytest.raises(ConfigError, match=r"risk\.max_positon_pct"):
        load_settings(cfg)


def test_malformed_toml_and_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("mode = = live\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


# -- TRADELIB_CONFIG, unknown variables, the values that must be refused ---------------------


def test_a_wrong_config_path_is_an_error_not_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "tradelib.toml"
    cfg.write_text("[risk]\nmax_position_pct = 5\n")
    monkeypatch.setenv("TRADELIB_CONFIG", str(cfg))
    assert load_settings().risk.max_position_pct == 5
    monkeypatch.setenv("TRADELIB_CONFIG", str(tmp_path / "tradelib.tmol"))  # mistyped
    with pytest.raises(ConfigError, match=r"tradelib\.tmol does not exist, so nothing was loaded"):
        load_settings()
    monkeypatch.setenv("TRADELIB_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match="is not a file"):
        load_settings()
    monkeypatch.setenv("TRADELIB_CONFIG", "")
    with pytest.raises(ConfigError, match="TRADELIB_CONFIG is set but empty"):
        load_settings()


def test_an_undecodable_config_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "tradelib.toml"
    cfg.write_bytes(b'mode = "\xff\xfe"\n')
    monkeypatch.setenv("TRADELIB_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings()


def test_unknown_tradelib_variables_are_refused_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADELIB_RISK__MAX_POSITON_PCT", "5")  # the typo that traded 20 %
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "TRADELIB_RISK__MAX_POSITON_PCT (did you mean TRADELIB_RISK__MAX_POSITION_PCT?)" in text
    monkeypatch.delenv("TRADELIB_RISK__MAX_POSITON_PCT")
    for name in OTHER_ENV:  # read outside Settings: never refused
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("TRADELIB_CONFIG")
    monkeypatch.setenv("TRADELIB_EXCHANGE__PAPER_BALANCES__BTC", "1")  # a dict entry
    monkeypatch.setenv("tradelib_mode", "paper")  # pydantic-settings ignores case
    assert unknown_environment() == []


def test_every_tradelib_variable_in_the_repository_is_known() -> None:
    root = Path(__file__).resolve().parents[2]
    exact, prefixes = settings_env_names()
    known = exact | OTHER_ENV.keys()
    names: dict[str, str] = {}
    files = [root / "README.md", *(root / ".ci").glob("*")]
    for folder in ("tradelib", "widgets", "notebooks", "benchmarks", "tests"):
        files += [p for p in (root / folder).rglob("*") if p.suffix in (".py", ".ipynb", ".md")]
    for path in files:
        if path.name.startswith("test_config") or not path.is_file():
            continue  # the config tests use unknown names on purpose
        text = path.read_text("utf-8")  # a typo shown as an example is followed by its fix
        for name in re.findall(r"\bTRADELIB_[A-Z0-9_]*[A-Z0-9]\b(?! \(did you mean)", text):
            names.setdefault(name, str(path.relative_to(root)))
    unknown = {
        n: where
        for n, where in names.items()
        if n not in known and not n.startswith(prefixes) and not any(k.startswith(n) for k in known)
    }
    assert not unknown, f"add these to tradelib.config.OTHER_ENV (or Settings): {unknown}"


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TRADELIB_EXCHANGE__PAPER_BALANCES", '{"USDT": "-1"}', "paper balance of USDT must be"),
        ("TRADELIB_EXCHANGE__PAPER_BALANCES", '{"USDT": "NaN"}', "USDT = 'NaN': Input should"),
        ("TRADELIB_EXCHANGE__PAPER_BALANCES", '{"": "1"}', "must be an upper-case code"),
        ("TRADELIB_EXCHANGE__BASE_URL", "127.0.0.1:8080", "scheme must be http or https"),
        ("TRADELIB_EXCHANGE__BASE_URL", "http://", "base_url has no host"),
        ("TRADELIB_EXCHANGE__BASE_URL", "http://h:port", "cannot be parsed"),
        ("TRADELIB_EXCHANGE__BASE_URL", "http://k:s@h", "must not hold a user or password"),
        ("TRADELIB_EXCHANGE__BASE_URL", "http://h/ x", "contains spaces"),
        ("TRADELIB_QUOTE_CURRENCY", "", "quote_currency must be an upper-case currency code"),
        ("TRADELIB_QUOTE_CURRENCY", "usdt", "quote_currency must be an upper-case currency code"),
        ("TRADELIB_STABLECOINS", "[]", "stablecoins must be upper-case currency codes"),
        ("TRADELIB_STORE_URL", "duckdb://host/x.duckdb", "duckdb:///absolute/path.duckdb"),
    ],
)
def test_values_that_would_trade_wrongly_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings()


def test_a_bad_store_url_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("mysql://bob:hunter2pw@h/db", "postgresql://bob:hunter2pw@h:port/db"):
        monkeypatch.setenv("TRADELIB_STORE_URL", url)
        with pytest.raises(ConfigError) as err:
            load_settings()
        assert "hunter2pw" not in str(err.value) and "bob:***@h" in str(err.value)
    assert mask_url("postgresql://bob:hunter2pw@[::1]:5/db?schema=x") == (
        "postgresql://bob:***@[::1]:5/db?schema=x"
    )
