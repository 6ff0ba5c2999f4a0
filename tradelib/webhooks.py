"""Webhook alert delivery (Slack, Discord, Telegram, plain JSON) that never blocks trading.

`WebhookSink.send` only puts the alert on a bounded in-memory queue; one background thread
per webhook POSTs it, retrying network errors, 5xx and 429 (honouring Retry-After) with
exponential backoff, and giving up on other 4xx (a wrong URL does not get better). Before the
queue, the sink deduplicates (same alert key within the window) and rate-limits (critical
alerts exempt), like `AlertRouter`, because one sink serves every router in the process.
When the queue is full, the oldest non-critical alert makes room.

The URL embeds the webhook's token, so it is a secret: registered for redaction, never in a
repr, a log line or an error (they name the format and host only).
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tradelib.alerts import Alert, AlertRouter, Severity, jsonable
from tradelib.config import webhook_problem
from tradelib.errors import ConfigError
from tradelib.logs import get_logger, redact, register_url_secrets

if TYPE_CHECKING:
    from tradelib.config import AlertSettings

log = get_logger(__name__)

FORMATS = ("slack", "discord", "telegram", "json")
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_PERMANENT = frozenset({400, 401, 403, 404, 405, 410, 413, 422})


def format_text(alert: Alert) -> str:
    """One line a person reads on a phone: severity, message, mode/exchange."""
    where = "/".join(str(alert.data[k]) for k in ("mode", "exchange") if alert.data.get(k))
    tag = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"}[alert.severity]
    return f"[{tag}] tradelib{f' {where}' if where else ''}: {alert.message}"


def payload(fmt: str, alert: Alert, chat_id: str | None = None) -> dict[str, Any]:
    """The JSON body a Slack, Discord or Telegram webhook (or a plain JSON receiver) expects."""
    text = format_text(alert)
    if fmt == "slack":  # Slack escapes only these three in message text
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return {"text": escaped}
    if fmt == "discord":  # no @everyone / role pings from an alert's text
        return {"content": text[:2000], "username": "tradelib", "allowed_mentions": {"parse": []}}
    if fmt == "telegram":
        return {"chat_id": chat_id, "text": text[:4096], "disable_web_page_preview": True}
    return {
        "text": text,
        "kind": str(alert.kind),
        "severity": str(alert.severity),
        "message": alert.message,
        "at": alert.at.isoformat(),
        "data": jsonable(alert.data),
    }


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def post_json(url: str, body: bytes, timeout: float) -> tuple[int, float | None, str]:
    """POST JSON; (status, Retry-After seconds, error text), status 0 = no answer; never raises."""
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "tradelib-alerts"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status), None, ""
    except urllib.error.HTTPError as exc:
        return exc.code, _retry_after(exc.headers.get("Retry-After")), f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets
        reason = getattr(exc, "reason", exc)
        return 0, None, f"{type(exc).__name__}: {reason}"


@dataclass
class WebhookStats:
    """What the sink did so far (for tests, `tradelib doctor` and the dashboard)."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    suppressed: int = 0


class WebhookSink:
    """Delivers alerts to one webhook on a background thread; `send` returns at once."""

    def __init__(
        self,
        url: str,
        *,
        format: str = "slack",
        chat_id: str | None = None,
        min_severity: Severity | str = Severity.INFO,
        max_per_minute: int = 20,
        dedupe_window: timedelta = timedelta(minutes=15),
        queue_size: int = 200,
        timeout: float = 5.0,
        max_attempts: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        register_url_secrets(url)
        problem = webhook_problem(url, format, chat_id)
        if format not in FORMATS:
            problem = f"webhook format {format!r} is not one of {', '.join(FORMATS)}"
        if problem:
            raise ConfigError(problem)
        self.host = urlsplit(url.strip()).hostname or "?"
        self.format = format
        self._url = url.strip()
        self.chat_id = chat_id
        self.min_severity = Severity(min_severity)
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queue_size = max(1, queue_size)
        self.stats = WebhookStats()
        self.waits: deque[float] = deque(maxlen=100)  # backoff waits taken, newest last
        self._queue: deque[Alert] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gate = AlertRouter([_Enqueue(self)], dedupe_window, max_per_minute)
        self._gate_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookSink(format={self.format!r}, host={self.host!r}, url=***)"

    # -- the trading side: never blocks ----------------------------------------------------

    def send(self, alert: Alert) -> None:
        """Queue `alert` for delivery (deduplicated, rate-limited); returns immediately."""
        if _RANK[alert.severity] < _RANK[self.min_severity] or self._closed:
            return
        with self._gate_lock:
            if not self._gate.emit(alert):
                self.stats.suppressed += 1

    def _enqueue(self, alert: Alert) -> None:
        with self._cond:
            if len(self._queue) >= self.queue_size:
                victim = next((a for a in self._queue if a.severity is not Severity.CRITICAL), None)
                if victim is None and alert.severity is not Severity.CRITICAL:
                    self._drop(alert)
                    return
                self._queue.remove(victim if victim is not None else self._queue[0])
                self._drop(victim)
            self._queue.append(alert)
            self._ensure_worker()
            self._cond.notify()

    def _drop(self, alert: Alert | None) -> None:
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
            log.warning("webhook queue full: alerts dropped", webhook=repr(self),
                        dropped=self.stats.dropped)  # fmt: skip

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name=f"tradelib-webhook-{self.format}", daemon=True
            )
            self._thread.start()

    # -- the delivery thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                alert = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(alert)
            except Exception as exc:  # a bug here must not kill delivery of later alerts
                self.stats.failed += 1
                log.error("webhook delivery crashed", webhook=repr(self), error=redact(str(exc)))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(payload(self.format, alert, self.chat_id), default=str).encode()
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            status, retry_after, error = post_json(self._url, body, self.timeout)
            if 200 <= status < 300:
                self.stats.delivered += 1
                return
            if status in _PERMANENT:
                break
            if attempt == self.max_attempts or self._stop.is_set():
                break
            wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            if status == 429 and retry_after is not None:
                wait = min(self.max_backoff, max(wait, retry_after))
            self.stats.retries += 1
            self.waits.append(wait)
            if self._stop.wait(wait):
                break
        self.stats.failed += 1
        hint = " (check the URL and its token)" if status in _PERMANENT else ""
        log.warning("webhook delivery failed", webhook=repr(self), kind=str(alert.kind),
                    error=redact(error or f"HTTP {status}") + hint)  # fmt: skip

    # -- shutting down ---------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (at most `timeout` s) until every queued alert was tried; True when done."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (at most `timeout` s), then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._stop.set()  # cut a backoff short
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)


class _Enqueue:
    """The sink behind a WebhookSink's dedupe/rate gate: puts alerts on its queue."""

    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink

    def send(self, alert: Alert) -> None:
        self.sink._enqueue(alert)


_SHARED: dict[tuple[str, str, str | None], WebhookSink] = {}
_SHARED_LOCK = threading.Lock()


def webhook_sinks(settings: AlertSettings) -> list[WebhookSink]:
    """The process-wide sinks of the configured webhooks (one thread per webhook)."""
    sinks = []
    for hook in settings.webhooks:
        url = hook.url.get_secret_value()
        key = (url, hook.format, hook.chat_id)
        with _SHARED_LOCK:
            sink = _SHARED.get(key)
            if sink is None:
                sink = WebhookSink(
                    url, format=hook.format, chat_id=hook.chat_id,
                    min_severity=hook.min_severity, max_per_minute=hook.max_per_minute,
                )  # fmt: skip
                _SHARED[key] = sink
        sinks.append(sink)
    return sinks


def flush_all(sinks: Iterable[WebhookSink] | None = None, timeout: float = 5.0) -> None:
    """Give queued alerts up to `timeout` seconds in total to go out (process exit)."""
    deadline = time.monotonic() + timeout
    with _SHARED_LOCK:
        chosen = list(sinks) if sinks is not None else list(_SHARED.values())
    for sink in chosen:
        sink.flush(max(0.0, deadline - time.monotonic()))


atexit.register(flush_all)
