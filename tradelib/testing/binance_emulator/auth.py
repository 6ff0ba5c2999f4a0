"""API-key, HMAC-SHA256 signature and timestamp/recvWindow checks, as Binance applies them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from tradelib.logs import register_secret
from tradelib.testing.binance_emulator.wire import ApiError, bad_request, mandatory

MAX_RECV_WINDOW = 60_000
DEFAULT_RECV_WINDOW = 5_000
FUTURE_TOLERANCE_MS = 1_000  # Binance refuses timestamps more than 1 s ahead of its clock


@dataclass(frozen=True)
class Credentials:
    """The one API key/secret pair the emulator accepts; the secret never shows in reprs."""

    api_key: str
    api_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(self.api_secret)

    @classmethod
    def generate(cls) -> Credentials:
        """A fresh random pair, 64 characters each like Binance's."""
        return cls(secrets.token_hex(32), secrets.token_hex(32))


def strip_signature(total_params: str) -> tuple[str, str | None]:
    """Split 'a=1&b=2&signature=XX' into the signed payload and the signature."""
    kept, signature = [], None
    for part in total_params.split("&") if total_params else []:
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


def check_api_key(credentials: Credentials, headers: Mapping[str, str]) -> None:
    """-2014 when X-MBX-APIKEY is missing, -2015 when it is not ours."""
    key = headers.get("X-MBX-APIKEY")
    if not key:
        raise ApiError(401, -2014, "API-key format invalid.")
    if not hmac.compare_digest(key, credentials.api_key):
        raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")


def check_signed(
    credentials: Credentials,
    headers: Mapping[str, str],
    query_string: str,
    body: str,
    params: Mapping[str, str],
    server_ms: int,
) -> None:
    """Verify a SIGNED request; totalParams is the raw query string followed by the body."""
    check_api_key(credentials, headers)
    total = "&".join(part for part in (query_string, body) if part)
    payload, signature = strip_signature(total)
    if not signature:
        raise mandatory("signature")
    timestamp = params.get("timestamp")
    if not timestamp:
        raise mandatory("timestamp")
    try:
        sent_ms = int(timestamp)
        window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW))
    except ValueError:
        raise bad_request(-1100, "Illegal characters found in parameter 'timestamp'.") from None
    if window > MAX_RECV_WINDOW or window <= 0:
        raise bad_request(-1131, "recvWindow must be less than 60000")
    expected = hmac.new(
        credentials.api_secret.encode(), payload.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise bad_request(-1022, "Signature for this request is not valid.")
    if sent_ms > server_ms + FUTURE_TOLERANCE_MS or server_ms - sent_ms > window:
        raise bad_request(-1021, "Timestamp for this request is outside of the recvWindow.")


def check_ws_signature(
    credentials: Credentials, params: Mapping[str, object], server_ms: int
) -> None:
    """WebSocket API signature: HMAC over the params sorted by key, except `signature`."""
    if params.get("apiKey") != credentials.api_key:
        raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    signature = params.get("signature")
    if not isinstance(signature, str):
        raise mandatory("signature")
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
    expected = hmac.new(
        credentials.api_secret.encode(), payload.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise bad_request(-1022, "Signature for this request is not valid.")
    try:
        sent_ms = int(str(params.get("timestamp")))
        window = int(str(params.get("recvWindow", DEFAULT_RECV_WINDOW)))
    except ValueError:
        raise mandatory("timestamp") from None
    if sent_ms > server_ms + FUTURE_TOLERANCE_MS or server_ms - sent_ms > window:
        raise bad_request(-1021, "Timestamp for this request is outside of the recvWindow.")
