"""Webhook alert delivery against a real HTTP server on 127.0.0.1.

The server's behaviour is scripted per request (answer 200/404/429/503, or hold the request
until the test lets it go), so slowness and failures are events, not timings: a "slow server"
is one that has not answered yet, whatever the machine's speed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tradelib.alerts import Alert, AlertKind, AlertRouter, MemorySink, Severity
from tradelib.config import load_settings
from tradelib.errors import ConfigError
from tradelib.logs import redact
from tradelib.webhooks import WebhookSink, payload, webhook_sinks

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
TOKEN = "T0A1B2C3/B9Z8Y7X6/fakeWebhookToken0123456789"
LIMIT_S = 30.0  # a safety net against hangs, never a timing assertion


class Hook:
    """A webhook receiver: records every POST, answers as scripted (default 200)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.hold = threading.Event()
        self.hold.set()  # cleared: requests wait until the test sets it again
        self.entered = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                hook.entered.set()
                hook.hold.wait(LIMIT_S)
                status, headers = hook.script.pop(0) if hook.script else (200, {})
                hook.bodies.append(body)
                hook.paths.append(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{TOKEN}"

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def _alert(text: str = "order failed", severity: Severity = Severity.WARNING, **kw: Any) -> Alert:
    kind = kw.pop("kind", AlertKind.ORDER_FAILED)
    return Alert(kind, severity, text, kw.pop("at", T0), **kw)


def _sink(hook: Hook, **kw: Any) -> WebhookSink:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("max_per_minute", 1000)
    return WebhookSink(hook.url, **kw)


def test_payloads_for_slack_discord_telegram_and_plain_json() -> None:
    alert = _alert(
        "kill switch engaged by <ops> & @everyone",
        Severity.CRITICAL,
        data={"mode": "live", "exchange": "binance", "qty": Decimal("1.5")},
    )
    slack = payload("slack", alert)
    assert slack == {
        "text": "[CRITICAL] tradelib live/binance: kill switch engaged by &lt;ops&gt; &amp; "
        "@everyone"
    }
    discord = payload("discord", alert)
    assert discord["content"].startswith("[CRITICAL] tradelib live/binance: kill switch")
    assert discord["allowed_mentions"] == {"parse": []}  # no @everyone ping from alert text
    telegram = payload("telegram", alert, chat_id="-100123")
    assert telegram["chat_id"] == "-100123" and telegram["disable_web_page_preview"] is True
    plain = payload("json", alert)
    assert plain["kind"] == "order_failed" and plain["data"]["qty"] == "1.5"
    long = payload("discord", _alert("x" * 5000))
    assert len(long["content"]) == 2000


def test_delivers_and_the_url_token_is_never_shown(
    hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = _sink(hook)
    sink.send(_alert("ARB order failed: insufficient funds"))
    assert sink.flush(LIMIT_S)
    assert hook.paths == [f"/services/{TOKEN}"]
    assert hook.bodies == [{"text": "[WARNING] tradelib: ARB order failed: insufficient funds"}]
    assert sink.stats.delivered == 1
    assert TOKEN not in repr(sink) and "127.0.0.1" in repr(sink)
    assert redact(f"posting to {hook.url}") == "posting to ***"
    assert redact("fakeWebhookToken0123456789") == "***"
    sink.close()
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_a_failing_server_is_retried_with_growing_backoff(hook: Hook) -> None:
    hook.script = [(503, {}), (502, {}), (500, {})]
    sink = _sink(hook, backoff=0.01)
    sink.send(_alert())
    assert sink.flush(LIMIT_S)
    assert sink.stats.delivered == 1 and sink.stats.retries == 3 and sink.stats.failed == 0
    assert list(sink.waits) == [0.01, 0.02, 0.04]
    assert len(hook.bodies) == 4 and hook.bodies[0] == hook.bodies[-1]


def test_429_waits_at_least_what_the_server_asks(hook: Hook) -> None:
    hook.script = [(429, {"Retry-After": "0.3"})]
    sink = _sink(hook, backoff=0.01)
    sink.send(_alert())
    assert sink.flush(LIMIT_S)
    assert list(sink.waits) == [0.3] and sink.stats.delivered == 1


def test_it_gives_up_after_max_attempts_and_says_so_without_the_url(
    hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    hook.script = [(503, {})] * 10
    sink = _sink(hook, max_attempts=3)
    sink.send(_alert())
    assert sink.flush(LIMIT_S)
    assert (sink.stats.delivered, sink.stats.failed, len(hook.bodies)) == (0, 1, 3)
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "webhook delivery failed" in logged and "HTTP 503" in logged
    assert TOKEN not in logged and "fakeWebhookToken" not in logged


def test_a_wrong_url_is_not_retried(hook: Hook, capsys: pytest.CaptureFixture[str]) -> None:
    hook.script = [(404, {})]
    sink = _sink(hook, max_attempts=5)
    sink.send(_alert())
    assert sink.flush(LIMIT_S)
    assert (sink.stats.failed, len(hook.bodies)) == (1, 1)
    assert "check the URL and its token" in "".join(capsys.readouterr())


def test_a_slow_server_never_blocks_the_sender(hook: Hook) -> None:
    hook.hold.clear()  # the server takes every request and does not answer
    sink = _sink(hook, queue_size=500)
    router = AlertRouter([MemorySink(), sink], max_per_minute=1000)
    sent = threading.Event()

    def trading_cycle() -> None:
        for i in range(50):
            router.emit(_alert(f"fill {i}", Severity.INFO, at=T0 + timedelta(seconds=i)))
        sent.set()

    cycle = threading.Thread(target=trading_cycle)
    cycle.start()
    assert hook.entered.wait(LIMIT_S)  # the first POST is stuck in the server...
    assert sent.wait(LIMIT_S)  # ...and all 50 emits returned regardless
    assert not hook.hold.is_set() and hook.bodies == []
    hook.hold.set()
    assert sink.flush(LIMIT_S)
    assert sink.stats.delivered == 50
    assert [b["text"].rsplit(" ", 1)[1] for b in hook.bodies] == [str(i) for i in range(50)]
    cycle.join(LIMIT_S)


def test_a_full_queue_drops_the_oldest_non_critical_alert(hook: Hook) -> None:
    hook.hold.clear()
    sink = _sink(hook, queue_size=3)
    sink.send(_alert("in flight"))
    assert hook.entered.wait(LIMIT_S)  # taken off the queue, stuck in the server
    for i in range(4):
        sink.send(_alert(f"info {i}", Severity.INFO))
    sink.send(_alert("kill switch engaged", Severity.CRITICAL, kind=AlertKind.KILL_SWITCH))
    assert sink.stats.dropped == 2
    hook.hold.set()
    assert sink.flush(LIMIT_S)
    texts = [b["text"].split(": ", 1)[1] for b in hook.bodies]
    assert texts == ["in flight", "info 2", "info 3", "kill switch engaged"]


def test_dedupe_and_rate_limit_before_the_queue(hook: Hook) -> None:
    sink = _sink(hook, max_per_minute=3, dedupe_window=timedelta(minutes=15))
    for minute in (0, 5, 16):  # the same alert: once per 15 minutes
        sink.send(_alert("exchange timeout", at=T0 + timedelta(minutes=minute)))
    burst = T0 + timedelta(hours=1)
    for i in range(5):  # 3 per minute, except critical ones
        sink.send(_alert(f"warn {i}", at=burst + timedelta(seconds=i)))
    sink.send(_alert("breaker tripped", Severity.CRITICAL, at=burst + timedelta(seconds=6)))
    assert sink.flush(LIMIT_S)
    texts = [b["text"].split(": ", 1)[1] for b in hook.bodies]
    assert texts == [
        "exchange timeout",
        "exchange timeout",
        "warn 0",
        "warn 1",
        "warn 2",
        "breaker tripped",
    ]
    assert sink.stats.suppressed == 3


def test_min_severity_filters(hook: Hook) -> None:
    sink = _sink(hook, min_severity="critical")
    sink.send(_alert("just info", Severity.INFO))
    sink.send(_alert("kill", Severity.CRITICAL))
    assert sink.flush(LIMIT_S)
    assert [b["text"] for b in hook.bodies] == ["[CRITICAL] tradelib: kill"]


def test_close_cuts_a_long_backoff_short(hook: Hook) -> None:
    hook.script = [(503, {})] * 100
    sink = _sink(hook, backoff=3600.0, max_backoff=3600.0)
    sink.send(_alert())
    assert hook.entered.wait(LIMIT_S)
    sink.close(timeout=0.1)
    assert sink._thread is not None
    sink._thread.join(LIMIT_S)
    assert not sink._thread.is_alive() and sink.stats.failed == 1


def test_webhooks_from_settings_hide_the_token(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    hooks = json.dumps([{"url": hook.url, "format": "discord"}])
    monkeypatch.setenv("TRADELIB_ALERTS__WEBHOOKS", hooks)
    settings = load_settings()
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump(mode="json"))
    [sink] = webhook_sinks(settings.alerts)
    assert webhook_sinks(settings.alerts) == [sink]  # one delivery thread per webhook
    sink.send(_alert("from settings"))
    assert sink.flush(LIMIT_S) and hook.bodies[-1]["username"] == "tradelib"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "ftp://hooks.example.com/" + TOKEN}, "must start with https://"),
        ({"url": "http://hooks.example.com/" + TOKEN}, "must start with https://"),
        ({"url": "https://api.telegram.org/bot" + TOKEN, "format": "telegram"}, "needs chat_id"),
        ({"url": "https://hooks.slack.com/" + TOKEN, "format": "slak"}, "slack"),
        ({"uri": "https://hooks.slack.com/services/" + TOKEN}, "uri"),
    ],
)
def test_bad_webhook_settings_are_refused_without_showing_the_token(
    entry: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELIB_ALERTS__WEBHOOKS", json.dumps([entry]))
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings()
    assert "fakeWebhookToken" not in str(refused.value)
