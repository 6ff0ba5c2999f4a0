"""structlog setup with a redaction processor: registered secrets never reach a log line."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

REDACTED = "***"
_MIN_SECRET_LEN = 4  # shorter strings would redact ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()
_SECRET_KEYS = ("secret", "password", "api_key", "apikey", "token", "passphrase", "totp")


def register_secret(value: str | None) -> None:
    """Remember `value` so every later log line, repr and report shows *** instead."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def register_url_secrets(url: str) -> None:
    """Register a URL that embeds a token (a webhook): the whole URL and each token-like part."""
    from urllib.parse import parse_qsl, urlsplit

    text = url.strip()
    register_secret(url)
    register_secret(text)
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return
    register_secret(password)
    register_secret(parts.path + (f"?{parts.query}" if parts.query else ""))
    pieces = [p for segment in parts.path.split("/") for p in (segment, segment[3:])]
    pieces += [value for _, value in parse_qsl(parts.query)]
    for piece in pieces:  # "bot<token>" is Telegram's: the token alone is secret too
        if len(piece) >= 16 or (len(piece) >= 8 and any(c.isdigit() for c in piece)):
            register_secret(piece)


def redact(text: str) -> str:
    """Replace every registered secret inside `text` with ***."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if any(part in key.lower() for part in _SECRET_KEYS) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v) for v in value)
    if value is None or isinstance(value, int | float | Decimal | datetime):
        return value
    return redact(str(value))


def redact_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secret-looking keys and every registered secret value."""
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


class _CurrentStderr:
    """Writes to whatever sys.stderr is now (pytest and notebooks swap it after start-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(fmt: str = "pretty", level: str = "INFO") -> None:
    """Configure structlog and stdlib logging: JSON in production, pretty in notebooks."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level))


def get_logger(name: str) -> Any:
    """A structlog logger bound to `name`."""
    return structlog.get_logger(name)
