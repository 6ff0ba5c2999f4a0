"""The ONE place where ccxt exceptions become tradelib exceptions.

No code outside `tradelib.exchange` catches a `ccxt.*` class: every call into ccxt goes through
`translate` (or the `ccxt_errors` context manager), which picks the most specific tradelib class
and writes a message a trader can act on, with secrets and request signatures removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import ccxt

from tradelib.errors import (
    AuthenticationError,
    ExchangeBanned,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    TradelibError,
    UnknownSymbol,
)
from tradelib.logs import redact

_SIGNED = re.compile(r"(signature|apiKey|api_key|timestamp|nonce)=[^&\s\"']*", re.IGNORECASE)
_MAX_DETAIL = 400


def clean_message(text: str) -> str:
    """Exchange text made safe to show: registered secrets and URL signatures replaced by ***."""
    text = _SIGNED.sub(lambda m: f"{m.group(1)}=***", redact(text))
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "…"


def _hint(kind: type[TradelibError]) -> str:
    hints: dict[type[TradelibError], str] = {
        ExchangeBanned: "the IP is banned; stop sending until the ban expires",
        RateLimited: "too many requests; back off and retry later",
        ExchangeUnavailable: "network or exchange trouble; safe calls may be retried",
        AuthenticationError: "check the API key, its permissions, IP whitelist and the clock",
        InsufficientFunds: "the free balance does not cover the order; reduce it or add funds",
        InvalidOrder: "the order breaks the market's rules; fix price, quantity or type",
        OrderNotFound: "the exchange does not know this order",
        UnknownSymbol: "the symbol is not listed; check load_markets() for valid symbols",
        OrderRejected: "the exchange refused the order",
        ExchangeError: "the exchange answered with an error",
    }
    return hints[kind]


def _classify(exc: Exception, status: int | None) -> type[TradelibError]:
    # order matters: subclasses before their ccxt parents
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        banned = status == 418 or " 418 " in f" {exc} "
        return ExchangeBanned if banned else RateLimited
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, InvalidNonce
        return ExchangeUnavailable
    if isinstance(exc, ccxt.AuthenticationError):  # includes PermissionDenied
        return AuthenticationError
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound
    if isinstance(exc, ccxt.InvalidOrder):
        return InvalidOrder
    if isinstance(exc, ccxt.BadSymbol):
        return UnknownSymbol
    if isinstance(exc, ccxt.OperationRejected):
        return OrderRejected
    if isinstance(exc, ccxt.BadResponse | ccxt.OperationFailed):
        return ExchangeUnavailable
    return ExchangeError


def translate(
    exc: Exception,
    *,
    exchange_id: str,
    action: str,
    status: int | None = None,
    retry_after: float | None = None,
) -> TradelibError:
    """Map a ccxt exception onto the most specific tradelib error, with a readable message.

    `status` is the HTTP status of the failing response when known (418 vs 429 matters);
    `retry_after` is the seconds the exchange asked us to wait (Retry-After header).
    """
    if isinstance(exc, TradelibError):
        return exc
    kind = _classify(exc, status)
    detail = clean_message(str(exc)) or type(exc).__name__
    message = f"{exchange_id} {action} failed ({type(exc).__name__}): {detail} — {_hint(kind)}"
    if kind is ExchangeBanned:
        return ExchangeBanned(message, retry_after=retry_after)
    if kind is RateLimited:
        return RateLimited(message, retry_after=retry_after)
    return kind(message)


def is_lost_answer(exc: BaseException) -> bool:
    """True when a request may have reached the exchange but its answer did not reach us.

    Timeouts, dropped connections, 5xx and unreadable answers (ccxt's OperationFailed family)
    leave the outcome open; rate limiting and a stale timestamp (InvalidNonce) mean the
    exchange refused the request before acting on it.
    """
    return isinstance(exc, ccxt.OperationFailed) and not isinstance(
        exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded | ccxt.InvalidNonce
    )


def is_ccxt_error(exc: BaseException) -> bool:
    """True for every exception class ccxt raises on purpose."""
    return isinstance(exc, ccxt.BaseError)


@contextmanager
def ccxt_errors(exchange_id: str, action: str) -> Iterator[None]:
    """Translate any ccxt exception raised inside the block (no status/Retry-After known)."""
    try:
        yield
    except ccxt.BaseError as exc:
        raise translate(exc, exchange_id=exchange_id, action=action) from None
