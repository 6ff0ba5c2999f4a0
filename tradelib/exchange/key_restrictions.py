"""A venue's answer about an API key's permissions -> `ApiKeyRestrictions`, one parser a venue.

Binance: GET /sapi/v1/account/apiRestrictions (ipRestrict, enableWithdrawals,
enableSpotAndMarginTrading, …). Coinbase Advanced: GET /api/v3/brokerage/key_permissions
(can_view, can_trade, can_transfer; no word on IP allowlists, so `ip_restricted` is None).
A flag the answer lacks stays None: the key check treats "not reported" as "not known safe".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from tradelib.domain import ApiKeyRestrictions, from_ms
from tradelib.errors import ExchangeError

Parser = Callable[[str, Mapping[str, Any], datetime], ApiKeyRestrictions]


def _flag(raw: Mapping[str, Any], name: str) -> bool | None:
    value = raw.get(name)
    return value if isinstance(value, bool) else None


def _either(*flags: bool | None) -> bool | None:
    if any(f is True for f in flags):
        return True
    return False if any(f is False for f in flags) else None


def _rest(raw: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in used and isinstance(v, bool | int | str)}


def parse_binance(exchange_id: str, raw: Mapping[str, Any], at: datetime) -> ApiKeyRestrictions:
    """Binance's apiRestrictions answer."""
    created = raw.get("createTime")
    used = {
        "ipRestrict", "enableReading", "enableSpotAndMarginTrading", "enableWithdrawals",
        "enableInternalTransfer", "permitsUniversalTransfer", "createTime",
    }  # fmt: skip
    return ApiKeyRestrictions(
        exchange=exchange_id,
        fetched_at=at,
        can_read=_flag(raw, "enableReading"),
        can_trade_spot=_flag(raw, "enableSpotAndMarginTrading"),
        can_withdraw=_flag(raw, "enableWithdrawals"),
        ip_restricted=_flag(raw, "ipRestrict"),
        can_transfer=_either(
            _flag(raw, "enableInternalTransfer"), _flag(raw, "permitsUniversalTransfer")
        ),
        created_at=from_ms(int(created)) if isinstance(created, int) and created > 0 else None,
        details=_rest(raw, used),
    )


def parse_coinbase(exchange_id: str, raw: Mapping[str, Any], at: datetime) -> ApiKeyRestrictions:
    """Coinbase Advanced's key_permissions answer (a transfer permission can send funds out)."""
    can_transfer = _flag(raw, "can_transfer")
    return ApiKeyRestrictions(
        exchange=exchange_id,
        fetched_at=at,
        can_read=_flag(raw, "can_view"),
        can_trade_spot=_flag(raw, "can_trade"),
        can_withdraw=can_transfer,
        ip_restricted=None,
        can_transfer=can_transfer,
        details=_rest(raw, {"can_view", "can_trade", "can_transfer"}),
    )


PARSERS: dict[str, Parser] = {"binance": parse_binance, "coinbase": parse_coinbase}


def parse_restrictions(fmt: str, exchange_id: str, raw: Any, at: datetime) -> ApiKeyRestrictions:
    """Parse a venue's answer with the parser named `fmt`; ExchangeError for a non-object."""
    if not isinstance(raw, Mapping):
        raise ExchangeError(
            f"{exchange_id} answered the API key permission request with "
            f"{type(raw).__name__}, not an object: cannot tell what the key may do"
        )
    return PARSERS[fmt](exchange_id, raw, at)


def not_reported(exchange_id: str, at: datetime) -> ApiKeyRestrictions:
    """Restrictions of a venue that does not publish them: every flag unknown."""
    return ApiKeyRestrictions(
        exchange=exchange_id, fetched_at=at, can_read=None, can_trade_spot=None,
        can_withdraw=None, ip_restricted=None,
        details={"note": f"{exchange_id} does not report API key permissions"},
    )  # fmt: skip
