"""Registered secrets never reach a log line, in JSON or pretty output, via structlog or stdlib."""

from __future__ import annotations

import json
import logging

import pytest

from tradelib.logs import configure_logging, get_logger, redact, register_secret

SECRET = "sk_live_9f8e7d6c5b4a39281706"


@pytest.mark.parametrize("fmt", ["json", "pretty"])
def test_registered_secret_is_redacted_everywhere(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    register_secret(SECRET)
    configure_logging(fmt=fmt, level="DEBUG")
    log = get_logger("test")
    log.info("connecting", url=f"https://x/?key={SECRET}", nested={"a": [SECRET]}, api_secret="zz")
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("stdlib").warning("stdlib says %s", SECRET)
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "***" in err
    assert "connecting" in err and "failed" in err and "stdlib says" in err
    if fmt == "json":
        first = json.loads(err.splitlines()[0])
        assert first["api_secret"] == "***"


def test_redact_replaces_longest_first_and_ignores_short_values() -> None:
    register_secret("abc")  # too short to register: would redact ordinary words
    register_secret("longsecretvalue")
    register_secret("longsecret")
    assert redact("abc longsecretvalue longsecret") == "abc *** ***"
