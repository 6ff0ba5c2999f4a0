"""Request context and parameter parsing shared by the REST endpoint modules."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from tradelib.testing.binance_emulator.auth import Credentials, check_api_key, check_signed
from tradelib.testing.binance_emulator.faults import Faults
from tradelib.testing.binance_emulator.key_permissions import KeyPermissions
from tradelib.testing.binance_emulator.markets import by_symbol_id
from tradelib.testing.binance_emulator.venue import Venue
from tradelib.testing.binance_emulator.wire import ApiError, bad_request, mandatory

Params = Mapping[str, str]
Handler = Callable[["Context", Params], Awaitable[Any]]

SIGNED = {"account", "order", "openOrders", "allOrders", "myTrades", "account/apiRestrictions"}
API_KEY_ONLY = {"userDataStream"}
ORDER_ENDPOINTS = {("POST", "order")}


def wall_ms() -> int:
    """Binance's server clock (real time: clients sign with their own wall clock)."""
    return int(time.time() * 1000)


@dataclass
class Context:
    """What the REST handlers need from the running emulator."""

    venue: Venue
    credentials: Credentials
    faults: Faults
    weight_limit: int = 6000
    listen_keys: set[str] = field(default_factory=set)
    key_permissions: KeyPermissions = field(default_factory=KeyPermissions)

    def symbol(self, params: Params, name: str = "symbol") -> str:
        """The unified symbol for the Binance id in `params`, or -1102/-1121."""
        raw = params.get(name)
        if not raw:
            raise mandatory(name)
        market = by_symbol_id(self.venue.markets).get(raw.upper())
        if market is None:
            raise bad_request(-1121, "Invalid symbol.")
        return market.symbol


def decimal_param(params: Params, name: str) -> Decimal | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'.") from None
    if not value.is_finite():
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def int_param(params: Params, name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise bad_request(-1100, f"Illegal characters found in parameter '{name}'.") from None


def limit_param(params: Params, default: int, maximum: int) -> int:
    value = int_param(params, "limit", default) or default
    return max(1, min(value, maximum))


async def authorize(ctx: Context, request: web.Request, endpoint: str, params: Params) -> None:
    """Apply Binance's security type of `endpoint` (SIGNED, USER_STREAM or NONE)."""
    if endpoint in SIGNED:
        body = await request.text() if request.body_exists else ""
        check_signed(
            ctx.credentials,
            request.headers,
            request.rel_url.raw_query_string,
            body,
            params,
            wall_ms(),
        )
    elif endpoint in API_KEY_ONLY:
        check_api_key(ctx.credentials, request.headers)


async def read_params(request: web.Request) -> dict[str, str]:
    """Query string and form body merged, as Binance reads them."""
    params = {k: v for k, v in request.query.items()}
    if request.body_exists:
        form = await request.post()
        params.update({k: str(v) for k, v in form.items()})
    return params


def not_found() -> ApiError:
    """Binance answers unknown paths with a bare 404."""
    return ApiError(404, -1000, "Not found.")
