"""Point an unmodified ccxt Binance client at the emulator: URLs and options only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt

# Keep load_markets on /api/v3/exchangeInfo (no sapi currencies, no margin, no futures).
CCXT_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
}


def _rewrite(url: str, http_base: str, ws_base: str) -> str:
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if parts.scheme in ("ws", "wss"):
        # ccxt.pro recognises spot stream clients by '/stream' in the URL (the real host is
        # stream.binance.com), so the emulator serves its spot streams under /stream/ws.
        if parts.netloc.startswith("stream.") and parts.path == "/ws":
            tail = "/stream/ws"
        return ws_base + tail
    return http_base + tail


def _rewrite_tree(urls: Any, http_base: str, ws_base: str) -> Any:
    if isinstance(urls, dict):
        return {k: _rewrite_tree(v, http_base, ws_base) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        return _rewrite(urls, http_base, ws_base)
    return urls


def emulator_urls(base_url: str, api_urls: dict[str, Any]) -> dict[str, Any]:
    """A copy of ccxt's urls['api'] with every REST and ws URL moved to `base_url`."""
    http_base = base_url.rstrip("/")
    ws_base = "ws" + http_base[len("http") :] if http_base.startswith("http") else http_base
    return dict(_rewrite_tree(api_urls, http_base, ws_base))


def point_ccxt_at(exchange: ccxt.Exchange, base_url: str) -> ccxt.Exchange:
    """Rewrite every URL in exchange.urls['api'] (REST and ws) to the emulator; set options."""
    exchange.urls["api"] = emulator_urls(base_url, exchange.urls["api"])
    exchange.options.update(CCXT_OPTIONS)
    return exchange


def ccxt_config_for(base_url: str, api_key: str | None, secret: str | None) -> dict[str, Any]:
    """Constructor config for ccxt.binance / ccxt.pro.binance talking to the emulator."""
    import ccxt.pro

    template = ccxt.pro.binance().urls["api"]
    config: dict[str, Any] = {
        "urls": {"api": emulator_urls(base_url, template)},
        "options": dict(CCXT_OPTIONS),
        "enableRateLimit": True,
    }
    if api_key is not None:
        config["apiKey"] = api_key
    if secret is not None:
        config["secret"] = secret
    return config
