"""The exchange connections the dashboard opens itself: for the key check and the kill switch.

The dashboard never borrows the engine's connection (it belongs to another event loop, maybe
another process, and may be stuck): every use opens a fresh one on the caller's loop and
closes it. `stored_key_venue` connects with the account's API key from the secrets store
(AES-GCM, TRADELIB_MASTER_KEY), to `base_url` when set (the local emulator or a testnet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from tradelib.config import Settings
from tradelib.errors import TradelibError

if TYPE_CHECKING:
    from tradelib.exchange.base import Exchange
    from tradelib.store import Store

KEY_LABEL = "main"
VenueFactory = Callable[[], "Exchange"]
T = TypeVar("T")


def stored_key_venue(
    store: Callable[[], Store],
    settings: Settings,
    base_url: str | None = None,
    label: str = KEY_LABEL,
) -> VenueFactory:
    """A factory of connections to `settings.exchange.id` with its stored key pair `label`.

    `store` gives the store holding the encrypted key when a connection is opened.
    """

    def open_venue() -> Exchange:
        from tradelib.exchange.ccxt_exchange import CcxtExchange
        from tradelib.secrets import SecretBox, load_credentials, master_key_from_env

        creds = load_credentials(
            store(), SecretBox(master_key_from_env()), settings.exchange.id, label
        )
        return CcxtExchange(
            settings.exchange.id,
            api_key=creds.api_key,
            api_secret=creds.api_secret,
            base_url=base_url or settings.exchange.base_url,
            timeout_ms=settings.exchange.timeout_ms,
        )

    return open_venue


def run_on_own_loop(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` to completion on a fresh event loop of the calling (worker) thread."""

    async def main() -> T:
        return await work()

    return asyncio.run(main())


async def key_problems(venue: Exchange, store: Store, actor: str, now: datetime) -> list[str]:
    """What makes the venue's API key unfit for live trading; empty when the check passed.

    `tradelib.keycheck.require_safe_key` reads the key's permissions from the exchange
    (withdrawals, spot trading, IP restriction), records and audits the check, and refuses an
    unsafe key unless a person accepted its risks (`tradelib secrets accept-key-risk`). A
    check that cannot run (no key, exchange unreachable) is a problem too: going live fails
    closed.
    """
    from tradelib.keycheck import require_safe_key

    try:
        await require_safe_key(venue, store, label=KEY_LABEL, actor=actor, now=now)
    except TradelibError as exc:
        return [str(exc)]
    return []
