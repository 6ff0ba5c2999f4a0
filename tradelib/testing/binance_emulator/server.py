"""The emulator process: aiohttp app, request pipeline, test-control API and admin endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from tradelib.config import repo_data_dir
from tradelib.domain import Balance, to_decimal
from tradelib.errors import DataError, TradelibError
from tradelib.exchange.matching import Account
from tradelib.exchange.replay import ReplayMarket, load_binance_markets
from tradelib.logs import get_logger
from tradelib.testing.binance_emulator.auth import Credentials
from tradelib.testing.binance_emulator.context import (
    ORDER_ENDPOINTS,
    Context,
    authorize,
    not_found,
    read_params,
)
from tradelib.testing.binance_emulator.faults import Faults
from tradelib.testing.binance_emulator.limits import RateLimiter, request_weight
from tradelib.testing.binance_emulator.rest import ROUTES, SAPI_ROUTES
from tradelib.testing.binance_emulator.streams import StreamHub
from tradelib.testing.binance_emulator.venue import Venue
from tradelib.testing.binance_emulator.wire import ApiError, VenueFill, VenueOrder

log = get_logger(__name__)
LevelInput = tuple[Decimal | str | int, Decimal | str | int]
API_PREFIX = "/api/v3/"
SAPI_PREFIX = "/sapi/v1/"
_GATEWAY_TEXT = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
}


def _error_response(exc: ApiError, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(
        exc.body(), status=exc.status, headers={**(headers or {}), **exc.headers}
    )


def _gateway_error(status: int) -> web.Response:
    reason = _GATEWAY_TEXT.get(status, "Server Error")
    body = f"<html><head><title>{status} {reason}</title></head><body>{reason}</body></html>"
    return web.Response(status=status, text=body, content_type="text/html")


class BinanceEmulator:
    """A local Binance spot API (REST + WebSocket) over a replayed market, with faults."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        balances: Mapping[str, Decimal] | None = None,
        data_dir: Path | None = None,
        start: datetime | None = None,
        symbols: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int = 6000,
        orders_per_10s: int = 50,
        replay: ReplayMarket | None = None,
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise DataError(
                "give both api_key and api_secret, or neither (then both are generated)"
            )
        self.credentials = (
            Credentials(api_key, api_secret)
            if api_key is not None and api_secret is not None
            else Credentials.generate()
        )
        markets = load_binance_markets()
        if symbols is not None:
            wanted = set(symbols)
            markets = {s: m for s, m in markets.items() if s in wanted}
        self.replay = replay or ReplayMarket.from_data_dir(
            data_dir or repo_data_dir(), start=start, symbols=list(markets), markets=markets
        )
        self.account = Account({a: Decimal(v) for a, v in (balances or {}).items()})
        self.venue = Venue(self.replay, self.account, markets)
        self.faults = Faults()
        self.limits = RateLimiter(weight_limit=weight_limit, orders_per_10s=orders_per_10s)
        self.context = Context(self.venue, self.credentials, self.faults, weight_limit)
        self.streams = StreamHub(self.venue, self.credentials, self.context.listen_keys)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def app(self) -> web.Application:
        """The aiohttp application (REST, streams, admin)."""
        app = web.Application()
        app.router.add_route("*", API_PREFIX + "{endpoint:.+}", self._api)
        app.router.add_route("*", SAPI_PREFIX + "{endpoint:.+}", self._api)
        for prefix in ("/ws", "/stream/ws"):
            app.router.add_get(prefix, self.streams.public)
            app.router.add_get(prefix + "/{tail}", self.streams.public)
        app.router.add_get("/ws-api/v3", self.streams.api)
        app.router.add_route("*", "/_emulator/{action}", self._admin)
        return app

    async def start(self) -> str:
        """Listen on host:port (0 = a free port); returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._bound_port = int(sockets[0].getsockname()[1])
        log.info("binance emulator listening", url=self.base_url)
        return self.base_url

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._runner is not None:
            await self.streams.disconnect_all(code=1001)
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BinanceEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port> once started."""
        if self._bound_port is None:
            raise DataError("the emulator is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def api_key(self) -> str:
        """The API key the emulator accepts."""
        return self.credentials.api_key

    @property
    def api_secret(self) -> str:
        """The secret the emulator verifies signatures with."""
        return self.credentials.api_secret

    # ------------------------------------------------------------------ control API
    def set_balance(self, asset: str, amount: Decimal | int | str) -> None:
        """Set the free balance of `asset`."""
        self.account.set_free(asset, to_decimal(amount, f"balance of {asset}"))

    def advance(self, to: datetime | int = 1) -> list[VenueFill]:
        """Move the replay clock to `to` (or by `to` steps); match resting orders. Returns fills."""
        if isinstance(to, datetime):
            return self.venue.advance(to=to)
        if to < 1:
            raise DataError(f"advance needs at least one step, got {to}")
        return self.venue.advance(steps=to)

    def set_book(self, symbol: str, bids: Iterable[LevelInput], asks: Iterable[LevelInput]) -> None:
        """Replace the book of `symbol` ('ARB/USDT') until the next advance; levels best first."""
        self.venue.set_book(symbol, _levels(symbol, "bid", bids), _levels(symbol, "ask", asks))

    def orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Every order the emulator holds, oldest first."""
        return self.venue.orders(symbol)

    def trades(self, symbol: str | None = None) -> list[VenueFill]:
        """Every own execution, oldest first."""
        return self.venue.fills(symbol)

    def balances(self) -> dict[str, Balance]:
        """Free and locked balances by asset."""
        return self.account.balances("binance")

    async def disconnect_streams(self) -> int:
        """Close every WebSocket (public and user data); returns how many were closed."""
        return await self.streams.disconnect_all()

    def set_key_permissions(self, **flags: bool) -> dict[str, Any]:
        """Change what the API key may do, by Binance's names (e.g. enableWithdrawals=True)."""
        self.context.key_permissions.update(flags)
        return self.key_permissions()

    def key_permissions(self) -> dict[str, Any]:
        """The /sapi/v1/account/apiRestrictions answer as it stands."""
        return self.context.key_permissions.json()

    def reset_rate_limits(self) -> None:
        """Forget used weight, order counts and bans."""
        self.limits.reset()

    # ------------------------------------------------------------------ request pipeline
    async def _api(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        endpoint = request.match_info["endpoint"]
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        fail = self.faults.take("fail", method, path)
        if fail is not None:
            return _gateway_error(fail.status)
        limit = self.faults.take("limit", method, path)
        if limit is not None:
            if limit.status == 418:
                self.limits.ban(limit.seconds)
            return _error_response(
                ApiError(
                    limit.status,
                    -1003,
                    "Too many requests; injected by the emulator.",
                    {"Retry-After": str(int(limit.seconds))},
                )
            )
        routes = SAPI_ROUTES if path.startswith(SAPI_PREFIX) else ROUTES
        route = routes.get((method, endpoint))
        headers: dict[str, str] = {}
        try:
            if route is None:
                raise not_found()
            params = await read_params(request)
            headers = self.limits.admit(
                request_weight(method, endpoint, params), (method, endpoint) in ORDER_ENDPOINTS
            )
            await authorize(self.context, request, endpoint, params)
            result: Any = await route(self.context, params)
        except ApiError as exc:
            return _error_response(exc, headers)
        drop = self.faults.take("drop", method, path)
        if drop is not None:
            # The request took effect; the client just never hears about it.
            log.info("emulator dropped an answer", path=path)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        stall = self.faults.take("stall", method, path)
        if stall is not None:
            await asyncio.sleep(stall.seconds)
        return web.json_response(result, headers=headers)

    async def _admin(self, request: web.Request) -> web.Response:
        """/_emulator/<action>: the control API for tests in another process.

        Bad input (malformed JSON, a missing field, a NaN or negative number) answers 400 with
        the reason and changes nothing; only a bug in the emulator answers 500.
        """
        action = request.match_info["action"]
        try:
            body: Any = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise DataError(f"the body must be a JSON object, got {type(body).__name__}")
            result = await self._admin_action(action, body)
        except json.JSONDecodeError as exc:
            return web.json_response({"error": f"the body is not valid JSON: {exc}"}, status=400)
        except KeyError as exc:
            return web.json_response({"error": f"missing field or unknown name: {exc}"}, status=400)
        except (TradelibError, ValueError, TypeError, ArithmeticError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result, dumps=lambda v: json.dumps(v, default=str))

    async def _admin_action(self, action: str, body: dict[str, Any]) -> Any:
        if action == "faults":
            self.faults.arm_from_json(body)
            return {"ok": True}
        if action == "advance":
            to: datetime | int = (
                datetime.fromisoformat(body["to"]) if "to" in body else int(body.get("steps", 1))
            )
            fills = self.advance(to)
            return {"now": self.replay.now.isoformat(), "fills": [f.json() for f in fills]}
        if action == "balance":
            self.set_balance(body["asset"], body["amount"])
            return {"ok": True}
        if action == "book":
            self.set_book(body["symbol"], body.get("bids", []), body.get("asks", []))
            return {"ok": True}
        if action == "disconnect":
            return {"closed": await self.disconnect_streams()}
        if action == "key_permissions":
            if body.pop("reset", False):
                self.context.key_permissions.reset()
            return self.set_key_permissions(**body)
        if action == "reset_limits":
            self.reset_rate_limits()
            return {"ok": True}
        if action == "orders":
            return [o.json() for o in self.orders()]
        if action == "trades":
            return [f.json() for f in self.trades()]
        if action == "balances":
            return {
                a: {"free": str(b.free), "locked": str(b.locked)}
                for a, b in self.balances().items()
            }
        if action == "state":
            return {"now": self.replay.now.isoformat(), "streams": self.streams.connection_count}
        raise KeyError(f"unknown admin action {action!r}")


def _levels(symbol: str, side: str, levels: Iterable[LevelInput]) -> list[tuple[Decimal, Decimal]]:
    """Book levels as Decimals; DataError names the first level that is not a sane number."""
    out = []
    for n, level in enumerate(levels, start=1):
        try:
            raw_price, raw_quantity = level
        except (TypeError, ValueError):
            what = f"{symbol} {side} level {n} must be [price, quantity], got {level!r}"
            raise DataError(what) from None
        what = f"{symbol} {side} level {n}"
        price = to_decimal(raw_price, f"{what} price")
        quantity = to_decimal(raw_quantity, f"{what} quantity")
        if price <= 0 or quantity < 0:
            raise DataError(f"{what}: price must be > 0 and quantity >= 0, got {level!r}")
        out.append((price, quantity))
    return out


async def _serve_forever(emulator: BinanceEmulator, print_secret: bool) -> None:
    url = await emulator.start()
    print(
        f"Binance emulator listening on {url}  (replay clock {emulator.replay.now.isoformat()})",
        flush=True,
    )
    if print_secret:
        # The only place a secret is printed: the user started the emulator without one.
        print(f"API key:    {emulator.api_key}", flush=True)
        print(f"API secret: {emulator.api_secret}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main(
    port: int,
    api_key: str | None,
    api_secret: str | None,
    balances: dict[str, Decimal],
    data_dir: Path,
    start: datetime | None,
) -> None:
    """Run the emulator on 127.0.0.1:`port` until interrupted (the `tradelib emulator` command)."""
    emulator = BinanceEmulator(
        api_key=api_key,
        api_secret=api_secret,
        balances=balances,
        data_dir=data_dir,
        start=start,
        port=port,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(emulator, print_secret=api_key is None))
