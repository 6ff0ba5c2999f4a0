"""Request weight and order-count limits with Binance's headers, 429 and 418 answers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from tradelib.testing.binance_emulator.wire import ApiError

FIRST_BAN_SECONDS = 120  # Binance: 2 minutes, doubling for repeat offenders, up to 3 days
MAX_BAN_SECONDS = 3 * 86_400

# Weights of /api/v3 endpoints as Binance documents them (symbol-less variants are heavier).
_FIXED: dict[tuple[str, str], int] = {
    ("GET", "ping"): 1,
    ("GET", "time"): 1,
    ("GET", "exchangeInfo"): 20,
    ("GET", "trades"): 25,
    ("GET", "aggTrades"): 4,
    ("GET", "klines"): 2,
    ("GET", "avgPrice"): 2,
    ("GET", "account"): 20,
    ("POST", "order"): 1,
    ("GET", "order"): 4,
    ("DELETE", "order"): 1,
    ("DELETE", "openOrders"): 1,
    ("GET", "allOrders"): 20,
    ("GET", "myTrades"): 20,
    ("POST", "userDataStream"): 2,
    ("PUT", "userDataStream"): 2,
    ("DELETE", "userDataStream"): 2,
}
_BY_SYMBOL: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "ticker/24hr"): (2, 80),
    ("GET", "ticker/price"): (2, 4),
    ("GET", "ticker/bookTicker"): (2, 4),
    ("GET", "openOrders"): (6, 80),
}


def request_weight(method: str, endpoint: str, params: Mapping[str, str]) -> int:
    """Weight of one /api/v3/<endpoint> request."""
    if endpoint == "depth":
        limit = int(params.get("limit", "100") or 100)
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if (method, endpoint) in _BY_SYMBOL:
        one, every = _BY_SYMBOL[(method, endpoint)]
        return one if params.get("symbol") else every
    return _FIXED.get((method, endpoint), 1)


class RateLimiter:
    """Fixed windows like Binance's: weight per minute, orders per 10 s and per day."""

    def __init__(
        self,
        weight_limit: int = 6000,
        orders_per_10s: int = 50,
        orders_per_day: int = 160_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.weight_limit = weight_limit
        self.orders_per_10s = orders_per_10s
        self.orders_per_day = orders_per_day
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget all usage, limits hit and bans."""
        self._weight: dict[int, int] = {}
        self._orders_10s: dict[int, int] = {}
        self._orders_day: dict[int, int] = {}
        self._limited_minute: int | None = None
        self._banned_until = 0.0
        self._next_ban = FIRST_BAN_SECONDS

    def ban(self, seconds: float, now: float | None = None) -> None:
        """Ban the client for `seconds` (every request answers 418)."""
        self._banned_until = (self._clock() if now is None else now) + seconds

    def _ban_error(self, now: float) -> ApiError:
        until_ms = int(self._banned_until * 1000)
        return ApiError(
            418,
            -1003,
            f"Way too many requests; IP(127.0.0.1) banned until {until_ms}. "
            "Please use the websocket for live updates to avoid bans.",
            {"Retry-After": str(math.ceil(self._banned_until - now))},
        )

    def admit(self, weight: int, is_order: bool) -> dict[str, str]:
        """Count one request; return the usage headers or raise the 429/418 ApiError."""
        now = self._clock()
        if now < self._banned_until:
            raise self._ban_error(now)
        minute = int(now // 60)
        if self._limited_minute == minute:
            # Still hammering after a 429 in the same window: that earns the ban.
            self.ban(self._next_ban, now)
            self._next_ban = min(self._next_ban * 2, MAX_BAN_SECONDS)
            raise self._ban_error(now)
        used = self._weight.get(minute, 0) + weight
        self._weight = {minute: used}
        headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
        if used > self.weight_limit:
            self._limited_minute = minute
            raise ApiError(
                429,
                -1003,
                f"Too many requests; current limit of IP(127.0.0.1) is {self.weight_limit} "
                "requests per minute. Please use WebSocket Streams for live updates to avoid "
                "polling the API.",
                {**headers, "Retry-After": str(math.ceil((minute + 1) * 60 - now))},
            )
        if is_order:
            headers.update(self._count_order(now))
        return headers

    def _count_order(self, now: float) -> dict[str, str]:
        ten, day = int(now // 10), int(now // 86_400)
        in_ten = self._orders_10s.get(ten, 0) + 1
        in_day = self._orders_day.get(day, 0) + 1
        self._orders_10s, self._orders_day = {ten: in_ten}, {day: in_day}
        headers = {"X-MBX-ORDER-COUNT-10S": str(in_ten), "X-MBX-ORDER-COUNT-1D": str(in_day)}
        if in_ten > self.orders_per_10s:
            raise ApiError(
                429,
                -1015,
                f"Too many new orders; current limit is {self.orders_per_10s} orders per "
                "10 SECOND.",
                {**headers, "Retry-After": str(math.ceil((ten + 1) * 10 - now))},
            )
        if in_day > self.orders_per_day:
            raise ApiError(
                429,
                -1015,
                f"Too many new orders; current limit is {self.orders_per_day} orders per DAY.",
                {**headers, "Retry-After": str(math.ceil((day + 1) * 86_400 - now))},
            )
        return headers
