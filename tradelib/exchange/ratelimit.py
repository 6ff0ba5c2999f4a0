"""Request-weight tracking, 429 back-off, 418 ban memory and the one retry decorator.

ccxt's own limiter (enableRateLimit) spaces requests by its static cost table; `RateGuard` adds
what only the exchange knows: the used weight it reports in response headers (Binance's
X-MBX-USED-WEIGHT-1M, X-MBX-ORDER-COUNT-10S/1D), Retry-After on 429, and 418 bans.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from tradelib.domain import timeframe_ms
from tradelib.errors import DataError, ExchangeBanned, OrderUnknown, RateLimited, Temporary
from tradelib.logs import get_logger

log = get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BAN_SECONDS = 120.0  # Binance's shortest 418 ban
DEFAULT_BACKOFF_SECONDS = 1.0  # 429 without Retry-After


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit the exchange announces: `limit` units per `seconds` window."""

    kind: str  # "weight" or "orders"
    seconds: int
    limit: int


def limits_from_exchange_info(info: Mapping[str, Any]) -> list[RateLimit]:
    """Parse Binance exchangeInfo.rateLimits into RateLimit entries (unknown kinds skipped)."""
    units = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
    kinds = {"REQUEST_WEIGHT": "weight", "ORDERS": "orders"}
    out: list[RateLimit] = []
    for item in info.get("rateLimits") or []:
        kind = kinds.get(str(item.get("rateLimitType")))
        unit = units.get(str(item.get("interval")))
        if kind is None or unit is None:
            continue
        out.append(RateLimit(kind, unit * int(item.get("intervalNum", 1)), int(item["limit"])))
    return out


def _header_window(suffix: str) -> int | None:
    """Seconds of a header's window suffix ('10s', '1m', '1d'); None when it is not one."""
    try:
        return timeframe_ms(suffix) // 1000
    except DataError:
        return None


@dataclass
class RateGuard:
    """Remembers what the exchange said about our request rate and paces requests by it."""

    exchange_id: str
    weight_header: str | None = None
    order_count_prefix: str | None = None
    slowdown_fraction: float = 0.8  # start spacing requests out above this share of a limit
    stop_fraction: float = 0.95  # wait for the window to roll over above this share
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    weight_limit: int = 6000
    weight_window: int = 60
    order_limits: dict[int, int] = field(default_factory=lambda: {10: 50, 86400: 160_000})
    used_weight: int = 0
    order_counts: dict[int, int] = field(default_factory=dict)
    banned_until: float = 0.0
    backoff_until: float = 0.0
    last_status: int | None = None
    last_retry_after: float | None = None
    requests_seen: int = 0
    slowed: int = 0

    def configure(self, limits: list[RateLimit]) -> None:
        """Adopt the limits the exchange announced (exchangeInfo.rateLimits)."""
        for item in limits:
            if item.kind == "weight":
                self.weight_limit, self.weight_window = item.limit, item.seconds
            else:
                self.order_limits[item.seconds] = item.limit

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Record one HTTP response: used-weight headers, Retry-After, 429 back-off, 418 ban."""
        self.requests_seen += 1
        self.last_status = status
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
        if self.weight_header and self.weight_header in lower:
            value = lower[self.weight_header].strip()
            if value.isdigit():
                self.used_weight = int(value)
        if self.order_count_prefix:
            for name, value in lower.items():
                if name.startswith(self.order_count_prefix) and value.isdigit():
                    window = _header_window(name[len(self.order_count_prefix) :])
                    if window is not None:
                        self.order_counts[window] = int(value)
        retry_after = _parse_retry_after(lower.get("retry-after"))
        self.last_retry_after = retry_after
        now = self.clock()
        if status == 418:
            wait = retry_after if retry_after is not None else DEFAULT_BAN_SECONDS
            self.banned_until = max(self.banned_until, now + wait)
            log.error("exchange ban (418)", exchange=self.exchange_id, seconds=wait)
        elif status == 429:
            wait = retry_after if retry_after is not None else DEFAULT_BACKOFF_SECONDS
            self.backoff_until = max(self.backoff_until, now + wait)
            log.warning("rate limited (429)", exchange=self.exchange_id, seconds=wait)

    def ban_remaining(self) -> float:
        """Seconds until a 418 ban ends (0 when not banned)."""
        return max(0.0, self.banned_until - self.clock())

    def check_ban(self) -> None:
        """Raise ExchangeBanned while a remembered 418 ban lasts: no request may be sent."""
        remaining = self.ban_remaining()
        if remaining > 0:
            raise ExchangeBanned(
                f"{self.exchange_id} banned this IP (HTTP 418); no request is sent for "
                f"another {remaining:.0f} s — trip the breaker and wait",
                retry_after=remaining,
            )

    def _window_left(self, window: int) -> float:
        now = self.clock()
        return window - (now % window) if window > 0 else 0.0

    def delay_before(self, is_order: bool = False) -> float:
        """Seconds to wait before the next request, from back-off and reported usage."""
        now = self.clock()
        delay = max(0.0, self.backoff_until - now)
        share = self.used_weight / self.weight_limit if self.weight_limit else 0.0
        if share >= self.stop_fraction:
            delay = max(delay, self._window_left(self.weight_window))
        elif share >= self.slowdown_fraction:
            # spread what is left of the limit over what is left of the window
            left = max(1, self.weight_limit - self.used_weight)
            delay = max(delay, self._window_left(self.weight_window) / left)
        if is_order:
            for window, limit in self.order_limits.items():
                used = self.order_counts.get(window, 0)
                if limit and used / limit >= self.stop_fraction:
                    delay = max(delay, self._window_left(window))
        return delay

    async def before_request(self, is_order: bool = False) -> None:
        """Refuse during a ban; otherwise wait out back-off and pre-emptive slowdown."""
        self.check_ban()
        delay = self.delay_before(is_order)
        if delay > 0:
            self.slowed += 1
            log.info("pacing requests", exchange=self.exchange_id, seconds=round(delay, 3))
            await self.sleep(delay)
            self.check_ban()


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential back-off with full jitter for idempotent calls."""

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, attempt: int, error: Exception) -> float:
        """Seconds before retry number `attempt` (1-based) after `error`."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        wait = random.uniform(backoff / 2, backoff)
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.max_delay * 8))
        return wait


def retry_idempotent(
    func: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Retry a call that is safe to repeat, on Temporary errors only, per `self.retry_policy`.

    Never put this on a call that changes state unless repeating it cannot do harm: an
    `OrderUnknown` (outcome of a sent order not known) is never retried.
    """

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        policy: RetryPolicy = getattr(args[0], "retry_policy", RetryPolicy())
        attempt = 0
        while True:
            try:
                return await func(*args, **kwargs)
            except OrderUnknown:
                raise
            except Temporary as exc:
                attempt += 1
                if attempt >= policy.attempts:
                    raise
                wait = policy.delay(attempt, exc)
                log.warning(
                    "retrying",
                    call=func.__name__,
                    attempt=attempt,
                    seconds=round(wait, 3),
                    error=str(exc),
                )
                await policy.sleep(wait)

    return wrapper
