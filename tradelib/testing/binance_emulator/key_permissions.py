"""The emulated API key's permissions: GET /sapi/v1/account/apiRestrictions, configurable.

Binance reports per key whether it is IP-restricted and what it may do (read, trade spot,
withdraw, transfer, …). The emulator starts with a key a careful person would create (IP
restricted, spot trading on, withdrawals off) and lets a test change any flag in process
(`emu.set_key_permissions(enableWithdrawals=True)`) or over HTTP
(POST /_emulator/key_permissions {"enableWithdrawals": true}). A key without spot trading is
refused on the order endpoints with Binance's -2015, like the real venue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tradelib.errors import DataError
from tradelib.testing.binance_emulator.wire import ApiError

# Binance's field names, in the order its documentation lists them, with the emulator's default.
DEFAULTS: dict[str, bool] = {
    "ipRestrict": True,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": False,
    "enableSpotAndMarginTrading": True,
    "enablePortfolioMarginTrading": False,
}


@dataclass
class KeyPermissions:
    """The flags Binance reports for the emulator's one API key."""

    flags: dict[str, bool] = field(default_factory=lambda: dict(DEFAULTS))
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def update(self, changes: dict[str, Any]) -> None:
        """Set flags by Binance's names; DataError for an unknown name or a non-boolean value."""
        unknown = sorted(set(changes) - set(DEFAULTS))
        if unknown:
            raise DataError(
                f"unknown key permission(s) {unknown}: use Binance's names, one of {list(DEFAULTS)}"
            )
        bad = {k: v for k, v in changes.items() if not isinstance(v, bool)}
        if bad:
            raise DataError(f"key permissions are true/false, got {bad}")
        self.flags.update(changes)

    def reset(self) -> None:
        """Back to the careful default key."""
        self.flags = dict(DEFAULTS)

    def json(self) -> dict[str, Any]:
        """The /sapi/v1/account/apiRestrictions answer."""
        return {**self.flags, "createTime": self.created_ms, "tradingAuthorityExpirationTime": -1}

    def require_trading(self) -> None:
        """-2015 when this key may not trade spot (Binance answers so on the order endpoints)."""
        if not self.flags["enableSpotAndMarginTrading"]:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
