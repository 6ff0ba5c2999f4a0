"""Settings: defaults <- TOML file <- TRADELIB_* environment, validated at load."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tradelib.domain import Mode
from tradelib.errors import ConfigError

CONFIG_ENV = "TRADELIB_CONFIG"


def state_dir() -> Path:
    """Per-user state directory (XDG_STATE_HOME), where the default DuckDB file lives."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tradelib"


def default_store_url() -> str:
    """The embedded default store: a DuckDB file in the user state directory."""
    return f"duckdb:///{state_dir() / 'tradelib.duckdb'}"


def repo_data_dir() -> Path:
    """The bundled `data/` folder next to the package."""
    return Path(__file__).resolve().parent.parent / "data"


Pct = Decimal  # percentages are written as 20 for 20 %


class RiskSettings(BaseModel):
    """Risk limits; every default is the seed's number. Percentages are 0-100."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_position_pct: Pct = Field(Decimal(20), gt=0, le=100)
    max_portfolio_heat_pct: Pct = Field(Decimal(30), gt=0, le=100)
    min_position_usd: Decimal = Field(Decimal(50), ge=0)
    stop_loss_pct: Pct = Field(Decimal(2), gt=0, lt=100)
    take_profit_pct: Pct = Field(Decimal(5), gt=0, le=1000)
    trailing_activation_pct: Pct = Field(Decimal(3), gt=0, le=1000)
    trailing_distance_pct: Pct = Field(Decimal(2), gt=0, lt=100)
    daily_loss_limit_pct: Pct = Field(Decimal(5), gt=0, le=100)
    daily_loss_alert_fraction: Decimal = Field(Decimal("0.8"), gt=0, lt=1)
    max_consecutive_losses: int = Field(3, ge=1, le=100)
    drawdown_pause_pct: Pct = Field(Decimal(10), gt=0, le=100)
    min_account_balance_usd: Decimal = Field(Decimal(100), ge=0)
    stablecoin_reserve_pct: Pct = Field(Decimal(20), ge=0, lt=100)
    max_open_positions: int = Field(5, ge=1, le=1000)
    max_slippage_pct: Pct = Field(Decimal("0.5"), gt=0, le=10)
    stale_data_seconds: int = Field(120, ge=1, le=86400)
    max_api_errors: int = Field(5, ge=1, le=1000)
    api_error_window_seconds: int = Field(300, ge=1, le=86400)


class ExchangeSettings(BaseModel):
    """Which venue and how to reach it; keys come from the secrets store, never from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Literal["binance", "binanceusdm", "coinbase", "kraken"] = "binance"
    base_url: str | None = Field(
        None,
        description="Override every REST/WS URL (the local emulator, e.g. http://127.0.0.1:8080)",
    )
    timeout_ms: int = Field(10_000, ge=100, le=120_000)
    paper_latency_ms: int = Field(0, ge=0, le=60_000)
    paper_balances: dict[str, Decimal] = Field(default_factory=lambda: {"USDT": Decimal(10_000)})


class Settings(BaseSettings):
    """Every knob of tradelib. Load with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="TRADELIB_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mode: Mode = Mode.PAPER
    store_url: str = Field(default_factory=default_store_url)
    data_dir: Path = Field(default_factory=repo_data_dir)
    log_format: Literal["pretty", "json"] = "pretty"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    live_capital_usd: Decimal = Field(
        Decimal(500), gt=0, le=Decimal(10_000_000), description="Capital the live engine may use"
    )
    quote_currency: str = "USDT"
    stablecoins: tuple[str, ...] = ("USDT", "USDC", "FDUSD", "DAI", "USD")
    risk: RiskSettings = Field(default_factory=RiskSettings)
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)

    @model_validator(mode="after")
    def _check_store_url(self) -> Settings:
        scheme = self.store_url.split("://", 1)[0]
        if "://" not in self.store_url or scheme not in {"duckdb", "postgresql", "postgres"}:
            raise ValueError(
                f"store_url must start with duckdb:/// or postgresql://, got {self.store_url!r}"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the TOML file, which beats the defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get(CONFIG_ENV)
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "settings"
    value = error.get("input")
    ctx = error.get("ctx") or {}
    bounds = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    allowed = [f"{op} {ctx[key]}" for key, op in bounds.items() if key in ctx]
    if "expected" in ctx:
        allowed.append(f"one of {ctx['expected']}")
    shown = "(missing)" if error["type"] == "missing" else repr(value)
    text = f"{field} = {shown}: {error['msg']}"
    if allowed:
        text += f" (allowed: {' and '.join(allowed)})"
    return text


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise ConfigError naming every bad field and its range."""
    previous = os.environ.get(CONFIG_ENV)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        os.environ[CONFIG_ENV] = str(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = "\n  ".join(_describe(dict(e)) for e in exc.errors())
        source = os.environ.get(CONFIG_ENV) or "defaults/environment"
        raise ConfigError(
            f"invalid settings (from {source} and TRADELIB_* environment):\n  {lines}"
        ) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read config file {os.environ.get(CONFIG_ENV)}: {exc}") from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = previous
