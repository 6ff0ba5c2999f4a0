"""Settings: defaults <- TOML file <- TRADELIB_* environment, validated at load."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tradelib.domain import Mode
from tradelib.errors import ConfigError
from tradelib.logs import redact, register_url_secrets

CONFIG_ENV = "TRADELIB_CONFIG"
ENV_PREFIX = "TRADELIB_"
# Every TRADELIB_* variable tradelib reads outside `Settings` (the Settings variables are
# derived from the model). A variable in neither is refused as a probable typo, so a code
# change that reads a new variable adds it here (tests/unit/test_config.py checks the repo).
OTHER_ENV: dict[str, str] = {
    "TRADELIB_CONFIG": "path of the TOML settings file",
    "TRADELIB_MASTER_KEY": "key encrypting the stored exchange API keys (tradelib.secrets)",
    "TRADELIB_NEW_MASTER_KEY": "the next master key, read by `tradelib secrets rotate`",
    "TRADELIB_TOTP_SECRET": "TOTP second factor: going live, releasing the kill switch",
    "TRADELIB_AUDIT_KEY": "HMAC key of the audit chain (tradelib.audit_anchor)",
    "TRADELIB_TEST_PG_URL": "tests: the PostgreSQL server the test suite uses",
    "TRADELIB_CRASH_SEED": "tests: seed of the crash-recovery test",
    "TRADELIB_CRASH_KILLS": "tests: how often the crash-recovery test kills the trader",
    "TRADELIB_ARTIFACTS": "tests: where the browser test keeps its screenshots",
}
_CURRENCY = re.compile(r"^[A-Z0-9]{2,20}$")


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


class TargetSettings(BaseModel):
    """What the strategy is measured against (the seed's targets); reports and the dashboard
    show each metric beside its target. Percentages are 0-100."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monthly_return_pct: Pct = Field(Decimal(5), gt=-100, le=1000)
    max_drawdown_pct: Pct = Field(Decimal(10), gt=0, le=100)
    win_rate_pct: Pct = Field(Decimal(40), ge=0, le=100)
    sharpe: Decimal = Field(Decimal(1), ge=-10, le=100)
    uptime_pct: Pct = Field(Decimal(99), gt=0, le=100)


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

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = _url_problem(value)
        if problem:
            raise ValueError(
                f"{problem}; write it like http://127.0.0.1:8080 (scheme http or https, a host, "
                "an optional port and path)"
            )
        return value

    @field_validator("paper_balances")
    @classmethod
    def _check_balances(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for asset, amount in value.items():
            if not _CURRENCY.match(asset):
                raise ValueError(f"asset {asset!r} must be an upper-case code like USDT")
            if not amount.is_finite() or amount < 0:
                raise ValueError(
                    f"paper balance of {asset} must be a number >= 0, got {amount}; a paper "
                    "account starts with what it holds, it cannot owe"
                )
        return value


def _split(url: str, name: str) -> tuple[SplitResult | None, str]:
    """`url` split (its port parsed too), or None and why it cannot be parsed."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port raises ValueError when it is not a number)
    except ValueError as exc:
        return None, f"{name} cannot be parsed ({exc})"
    return parts, ""


def _url_problem(value: str) -> str:
    """Why `value` is not a usable http(s) base URL ('' when it is)."""
    if value != value.strip() or any(c.isspace() for c in value):
        return "base_url contains spaces"
    parts, problem = _split(value, "base_url")
    if parts is None:
        return problem
    if parts.scheme not in ("http", "https"):
        return f"base_url scheme must be http or https, got {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "base_url has no host"
    if parts.username or parts.password:
        return "base_url must not hold a user or password (API keys live in the secrets store)"
    if parts.query or parts.fragment:
        return "base_url must not have a query or fragment"
    return ""


def mask_url(url: str) -> str:
    """`url` with any password replaced by *** (config cannot use the store's redact_url)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if not password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{netloc[1]}", parts.path, parts.query, ""))


def _store_url_problem(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in {"duckdb", "postgresql", "postgres"}:
        return "store_url must start with duckdb:/// or postgresql://"
    parts, problem = _split(url, "store_url")
    if parts is None:
        return problem
    if scheme == "duckdb" and (parts.netloc or parts.query or not parts.path.startswith("/")):
        return "a DuckDB store_url is duckdb:///absolute/path.duckdb or duckdb:///:memory:"
    return ""


def webhook_problem(url: str, fmt: str, chat_id: str | None) -> str | None:
    """What is wrong with a webhook's settings (naming the host, never the URL), or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "?"
    except ValueError:
        return f"the {fmt} webhook URL cannot be parsed"
    local = host in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        return (
            f"the {fmt} webhook URL (host {host}) must start with https:// (plain http only to "
            "127.0.0.1/localhost): the URL carries the webhook's token"
        )
    if fmt == "telegram" and not chat_id:
        return "a telegram webhook needs chat_id (the chat the bot writes to)"
    return None


class WebhookSettings(BaseModel):
    """One webhook alert sink. Its URL embeds the token: a secret, never shown or logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr = Field(
        description="Incoming-webhook URL (Telegram: .../bot<token>/sendMessage)"
    )
    format: Literal["slack", "discord", "telegram", "json"] = "slack"
    chat_id: str | None = Field(None, description="Telegram chat id (format = telegram only)")
    min_severity: Literal["info", "warning", "critical"] = "info"
    max_per_minute: int = Field(20, ge=1, le=600)

    @model_validator(mode="before")
    @classmethod
    def _register_url(cls, data: Any) -> Any:
        # Before any check can fail: an error message quoting the input must show *** instead.
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, str) and "://" in value:
                    register_url_secrets(value)
        return data

    @model_validator(mode="after")
    def _check(self) -> WebhookSettings:
        problem = webhook_problem(self.url.get_secret_value(), self.format, self.chat_id)
        if problem:
            raise ValueError(problem)
        return self


class AlertSettings(BaseModel):
    """Where alerts go besides the log, the dashboard and the store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: tuple[WebhookSettings, ...] = ()


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
    quote_currency: str = Field("USDT", description="Currency the portfolio is valued in")
    stablecoins: tuple[str, ...] = ("USDT", "USDC", "FDUSD", "DAI", "USD")
    risk: RiskSettings = Field(default_factory=RiskSettings)
    targets: TargetSettings = Field(default_factory=TargetSettings)
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("quote_currency")
    @classmethod
    def _check_quote(cls, value: str) -> str:
        if not _CURRENCY.match(value):
            raise ValueError("quote_currency must be an upper-case currency code like USDT")
        return value

    @field_validator("stablecoins")
    @classmethod
    def _check_stablecoins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [coin for coin in value if not _CURRENCY.match(coin)]
        if bad or not value:
            raise ValueError(
                f"stablecoins must be upper-case currency codes like USDC, got {list(value)}"
            )
        return value

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, value: str) -> str:
        problem = _store_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
        check_environment()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = config_file()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def config_file() -> Path | None:
    """The TOML file TRADELIB_CONFIG names (None when unset); ConfigError if it is unusable."""
    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        return None
    unset = f"or unset {CONFIG_ENV} to run on the defaults and TRADELIB_* variables"
    if not raw.strip():
        raise ConfigError(f"{CONFIG_ENV} is set but empty: point it at a TOML file, {unset}")
    path = Path(raw).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{CONFIG_ENV}={raw}: config file {path} does not exist, so nothing was loaded "
            f"(nothing runs on defaults by accident); fix the path, {unset}"
        )
    if not path.is_file():
        raise ConfigError(f"{CONFIG_ENV}={raw}: {path} is not a file; fix the path, {unset}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{CONFIG_ENV}={raw}: cannot read {path} ({exc.strerror}); fix its permissions, {unset}"
        ) from None
    return path


def settings_env_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """Variables Settings reads: exact names, and prefixes of dict fields (…__ASSET)."""
    exact: set[str] = set()
    prefixes: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            exact.add(env)
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, env + "__")
            elif get_origin(kind) is dict:
                prefixes.append(env + "__")

    walk(Settings, ENV_PREFIX)
    return frozenset(exact), tuple(prefixes)


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """TRADELIB_* variables nothing reads (probable typos), each with the closest known name."""
    exact, prefixes = settings_env_names()
    known = exact | OTHER_ENV.keys()
    found = []
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(prefixes):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        found.append(name + (f" (did you mean {close[0]}?)" if close else ""))
    return found


def check_environment() -> None:
    """ConfigError naming every unknown TRADELIB_* variable: a typo must not trade defaults."""
    unknown = unknown_environment()
    if unknown:
        raise ConfigError(
            "unknown TRADELIB_* environment variable(s), which would be ignored: "
            + "; ".join(unknown)
            + ". Fix the name, or unset it (settings are listed in the README)"
        )


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "settings"
    value = error.get("input")
    ctx = error.get("ctx") or {}
    bounds = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    allowed = [f"{op} {ctx[key]}" for key, op in bounds.items() if key in ctx]
    if "expected" in ctx:
        allowed.append(f"one of {ctx['expected']}")
    shown = "(missing)" if error["type"] == "missing" else repr(value)
    if isinstance(value, str) and "://" in value:
        shown = repr(mask_url(value))  # a store URL's password never reaches a message
    elif "://" in shown:
        shown = f"<{type(value).__name__} holding a URL>"  # which may hold a password
    shown = redact(shown)  # nor a webhook URL's token (registered by WebhookSettings)
    text = f"{field} = {shown}: {error['msg'].removeprefix('Value error, ')}"
    if allowed:
        text += f" (allowed: {' and '.join(allowed)})"
    return text


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise ConfigError naming every bad field and its range."""
    previous = os.environ.get(CONFIG_ENV)
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (or is not a file)")
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
