"""Fault injection: latency, 5xx, dropped or stalled answers, 429/418, forced partial fills."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradelib.errors import DataError


@dataclass(slots=True)
class FaultRule:
    """One armed fault: applies to the next `remaining` matching requests."""

    kind: str
    remaining: int
    path: str | None = None
    method: str | None = None
    status: int = 503
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        """True when the request is one this rule targets."""
        if self.path is not None and not path.startswith(self.path):
            return False
        return self.method is None or self.method.upper() == method.upper()


class Faults:
    """Armed faults, consumed in order by the requests they match."""

    def __init__(self) -> None:
        self.latency_ms = 0
        self._rules: list[FaultRule] = []
        self._fill_fraction: Decimal | None = None
        self._fill_orders = 0

    def clear(self) -> None:
        """Disarm everything."""
        self.latency_ms = 0
        self._rules.clear()
        self._fill_fraction, self._fill_orders = None, 0

    def set_latency(self, ms: int) -> None:
        """Delay every REST answer by `ms` milliseconds."""
        if ms < 0:
            raise DataError(f"latency must be >= 0 ms, got {ms}")
        self.latency_ms = ms

    def _arm(self, rule: FaultRule) -> FaultRule:
        if rule.remaining < 1:
            raise DataError(f"a fault needs count >= 1, got {rule.remaining}")
        self._rules.append(rule)
        return rule

    def fail_next(
        self, count: int = 1, status: int = 503, path: str | None = None, method: str | None = None
    ) -> FaultRule:
        """The next `count` matching requests answer `status` (500/502/503/504) unprocessed."""
        if not 500 <= status <= 599:
            raise DataError(f"fail_next wants a 5xx status, got {status}")
        return self._arm(FaultRule("fail", count, path, method, status))

    def drop_next(
        self, count: int = 1, path: str = "/api/v3/order", method: str | None = "POST"
    ) -> FaultRule:
        """Process the next `count` matching requests, then close the connection unanswered."""
        return self._arm(FaultRule("drop", count, path, method))

    def stall_next(
        self,
        count: int = 1,
        seconds: float = 30.0,
        path: str | None = None,
        method: str | None = None,
    ) -> FaultRule:
        """Process the next `count` matching requests but answer only after `seconds`."""
        return self._arm(FaultRule("stall", count, path, method, seconds=seconds))

    def limit_next(
        self,
        count: int = 1,
        status: int = 429,
        retry_after: float = 10.0,
        path: str | None = None,
        method: str | None = None,
    ) -> FaultRule:
        """The next `count` matching requests answer 429 or 418 with Retry-After."""
        if status not in (418, 429):
            raise DataError(f"limit_next wants 429 or 418, got {status}")
        return self._arm(FaultRule("limit", count, path, method, status, retry_after))

    def partial_fill(self, fraction: Decimal, orders: int = 1) -> None:
        """The next `orders` new orders fill at most `fraction` of their quantity, ever."""
        if not Decimal(0) < fraction < Decimal(1):
            raise DataError(f"fill fraction must be between 0 and 1, got {fraction}")
        self._fill_fraction, self._fill_orders = fraction, orders

    def take(self, kind: str, method: str, path: str) -> FaultRule | None:
        """Consume one use of the first armed `kind` rule matching the request."""
        for rule in self._rules:
            if rule.kind == kind and rule.matches(method, path):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    def take_fill_fraction(self) -> Decimal | None:
        """The forced fill fraction for the order being placed now, if one is armed."""
        if self._fill_orders <= 0:
            return None
        self._fill_orders -= 1
        return self._fill_fraction

    def arm_from_json(self, spec: dict[str, Any]) -> None:
        """Arm a fault from the admin endpoint's JSON: {"kind": ..., ...arguments}."""
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind == "latency":
            self.set_latency(int(spec.get("ms", 0)))
        elif kind == "fail":
            self.fail_next(**spec)
        elif kind == "drop":
            self.drop_next(**spec)
        elif kind == "stall":
            self.stall_next(**spec)
        elif kind == "limit":
            self.limit_next(**spec)
        elif kind == "partial_fill":
            self.partial_fill(Decimal(str(spec["fraction"])), int(spec.get("orders", 1)))
        elif kind == "clear":
            self.clear()
        else:
            raise DataError(
                f"unknown fault kind {kind!r}: use latency, fail, drop, stall, limit, "
                "partial_fill or clear"
            )
