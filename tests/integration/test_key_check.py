"""The live key check through real ccxt against the emulator's apiRestrictions endpoint.

The emulator answers GET /sapi/v1/account/apiRestrictions like Binance, signed and all; each
test sets the key's flags (in process or over the emulator's admin API) and checks what
`require_safe_key` decides, what it records in the store and the audit log, and what the
`tradelib secrets check-key` / `accept-key-risk` commands print and return.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyotp
import pytest
from emulator_fixtures import running_emulator
from store_dump import dump_store
from typer.testing import CliRunner

from tradelib.audit import AuditLog
from tradelib.cli import app
from tradelib.config import repo_data_dir
from tradelib.domain import ClientOrderId, OrderType, Side
from tradelib.errors import (
    AuthenticationError,
    ConfigError,
    NoApiKey,
    SecretError,
    UnsafeApiKey,
)
from tradelib.exchange.base import OrderRequest
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.paper import PaperExchange, ReplayMarketData
from tradelib.exchange.replay import ReplayMarket
from tradelib.keycheck import KeyOverride, accept_key_risk, require_safe_key
from tradelib.secrets import (
    MASTER_KEY_ENV,
    TOTP_SECRET_ENV,
    Credentials,
    SecretBox,
    generate_master_key,
    new_totp_secret,
    parse_master_key,
    save_credentials,
)
from tradelib.store import Store
from tradelib.testing.binance_emulator import BinanceEmulator

SYMBOL = "ARB/USDT"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
async def emu() -> AsyncIterator[BinanceEmulator]:
    async with running_emulator(symbols=[SYMBOL]) as emulator:
        yield emulator


@pytest.fixture
async def venue(emu: BinanceEmulator) -> AsyncIterator[CcxtExchange]:
    exchange = CcxtExchange(
        "binance",
        api_key=emu.api_key,
        api_secret=emu.api_secret,
        base_url=emu.base_url,
        rate_limit=False,
    )
    yield exchange
    await exchange.close()


async def test_a_careful_key_passes_and_the_check_is_recorded(
    store: Store, venue: CcxtExchange
) -> None:
    check = await require_safe_key(venue, store, actor="engine", now=NOW)
    assert check.verdict == "safe" and check.allowed and check.problems == ()
    r = check.restrictions
    assert (r.can_trade_spot, r.can_withdraw, r.ip_restricted) == (True, False, True)
    [row] = store.list_key_checks()
    assert (row.exchange, row.label, row.verdict, row.actor) == (
        "binance",
        "main",
        "safe",
        "engine",
    )
    assert row.restrictions["can_withdraw"] is False
    assert [e.action for e in store.list_audit()] == ["key_check_safe"]


async def test_live_mode_refuses_a_key_that_can_withdraw(
    store: Store, emu: BinanceEmulator, venue: CcxtExchange
) -> None:
    emu.set_key_permissions(enableWithdrawals=True)
    with pytest.raises(UnsafeApiKey) as refused:
        await require_safe_key(venue, store, actor="engine", now=NOW)
    text = str(refused.value)
    assert "live trading refused: the binance API key 'main' is not safe" in text
    assert "withdrawals_enabled: the key may withdraw funds" in text
    assert "--accept withdrawals_enabled" in text
    assert refused.value.problems == ("withdrawals_enabled",)
    [row] = store.list_key_checks()
    assert row.verdict == "refused" and row.problems[0]["code"] == "withdrawals_enabled"
    [entry] = store.list_audit()
    assert entry.action == "key_check_refused" and entry.payload["problems"] == [
        "withdrawals_enabled"
    ]
    assert AuditLog(store).verify().ok


async def test_an_override_covers_only_what_it_names(
    store: Store, emu: BinanceEmulator, venue: CcxtExchange
) -> None:
    emu.set_key_permissions(ipRestrict=False)
    accept_ip = KeyOverride.of(["no_ip_restriction"], "home line, dynamic IP; small capital")
    check = await require_safe_key(venue, store, override=accept_ip, actor="alice", now=NOW)
    assert check.verdict == "overridden"
    entry = store.list_audit()[-1]
    assert entry.action == "key_check_overridden" and entry.payload["accepted"] == [
        "no_ip_restriction"
    ]
    assert entry.payload["override_reason"] == "home line, dynamic IP; small capital"
    emu.set_key_permissions(enableWithdrawals=True)  # later, somebody enables withdrawals
    with pytest.raises(UnsafeApiKey, match="withdrawals_enabled") as refused:
        await require_safe_key(venue, store, override=accept_ip, actor="alice", now=NOW)
    assert "no_ip_restriction" not in refused.value.problems


async def test_a_key_that_cannot_trade_is_refused_even_with_an_override(
    store: Store, emu: BinanceEmulator, venue: CcxtExchange
) -> None:
    emu.set_key_permissions(enableSpotAndMarginTrading=False)
    with pytest.raises(UnsafeApiKey, match="trading_disabled: the key may not trade spot"):
        await require_safe_key(venue, store, actor="alice", now=NOW)
    # the emulator refuses its orders like Binance does (-2015), mapped by ccxt and tradelib
    await venue.load_markets()
    order = OrderRequest(
        ClientOrderId("tl-test-1"), SYMBOL, Side.BUY, OrderType.MARKET, Decimal(20)
    )
    with pytest.raises(AuthenticationError, match="Invalid API-key, IP, or permissions"):
        await venue.create_order(order)
    with pytest.raises(ConfigError, match="cannot be overridden"):
        KeyOverride.of(["trading_disabled"], "I know")


async def test_a_stored_override_needs_totp_and_lapses_when_the_key_is_replaced(
    store: Store, emu: BinanceEmulator, venue: CcxtExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_totp_secret()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    box = SecretBox(parse_master_key(generate_master_key(), "a test"))
    save_credentials(store, box, Credentials("binance", "main", emu.api_key, emu.api_secret))
    emu.set_key_permissions(ipRestrict=False)
    accept = KeyOverride.of(["no_ip_restriction"], "dynamic IP")
    before = dump_store(store)
    with pytest.raises(SecretError, match="needs a TOTP code"):
        accept_key_risk(store, "binance", "main", accept, actor="alice", now=NOW, totp_code=None)
    assert dump_store(store) == before
    code = pyotp.TOTP(secret).at(NOW)
    accept_key_risk(store, "binance", "main", accept, actor="alice", now=NOW, totp_code=code)
    check = await require_safe_key(venue, store, actor="scheduler", now=NOW)
    assert check.verdict == "overridden"  # nobody at the keyboard: the stored override counts
    later = NOW + timedelta(minutes=1)
    save_credentials(
        store,
        box,
        Credentials("binance", "main", emu.api_key, emu.api_secret),
        replace=True,
        now=later,
    )
    with pytest.raises(UnsafeApiKey, match="no_ip_restriction"):
        await require_safe_key(venue, store, actor="scheduler", now=later)
    actions = [e.action for e in store.list_audit()]
    assert actions == [
        "api_key_stored",
        "key_override_set",
        "key_check_overridden",
        "api_key_replaced",
        "key_check_refused",
    ]


async def test_the_admin_api_sets_the_answer_from_another_process(
    store: Store, emu: BinanceEmulator, venue: CcxtExchange
) -> None:
    def post(body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{emu.base_url}/_emulator/key_permissions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return dict(json.loads(answer.read()))

    async def admin(body: dict[str, object]) -> dict[str, object]:
        return await asyncio.to_thread(post, body)  # the emulator serves on this loop

    assert (await admin({"enableWithdrawals": True, "ipRestrict": False}))["enableWithdrawals"]
    with pytest.raises(UnsafeApiKey) as refused:
        await require_safe_key(venue, store, actor="engine", now=NOW)
    assert set(refused.value.problems) == {"withdrawals_enabled", "no_ip_restriction"}
    assert (await admin({"reset": True}))["enableWithdrawals"] is False
    assert (await require_safe_key(venue, store, actor="engine", now=NOW)).verdict == "safe"
    with pytest.raises(urllib.error.HTTPError) as bad:
        await admin({"enableWithdrawal": True})
    assert bad.value.code == 400


async def test_no_key_is_a_clear_answer_not_a_guess(store: Store, emu: BinanceEmulator) -> None:
    replay = ReplayMarket.from_data_dir(repo_data_dir(), symbols=[SYMBOL])
    paper = PaperExchange(ReplayMarketData(replay))
    with pytest.raises(NoApiKey, match="paper exchange 'binance' trades without an API key"):
        await paper.fetch_api_restrictions()
    anonymous = CcxtExchange("binance", base_url=emu.base_url, rate_limit=False)
    try:
        with pytest.raises(NoApiKey, match="has no API key"):
            await require_safe_key(anonymous, store, actor="engine", now=NOW)
    finally:
        await anonymous.close()
    [entry] = store.list_audit()
    assert entry.action == "key_check_failed" and "has no API key" in entry.payload["error"]
    assert store.list_key_checks() == []
    wrong = CcxtExchange(
        "binance",
        api_key=emu.api_key,
        api_secret="not-the-secret-0123456789",
        base_url=emu.base_url,
        rate_limit=False,
    )
    try:
        with pytest.raises(AuthenticationError, match="Signature for this request is not valid"):
            await require_safe_key(wrong, store, actor="engine", now=NOW)
    finally:
        await wrong.close()
    assert "not-the-secret-0123456789" not in repr(dump_store(store))


def test_check_key_and_accept_key_risk_commands(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with running_emulator(symbols=[SYMBOL]) as emu:
            monkeypatch.setenv(MASTER_KEY_ENV, generate_master_key())
            secret = new_totp_secret()
            monkeypatch.setenv(TOTP_SECRET_ENV, secret)
            monkeypatch.setenv("TRADELIB_EXCHANGE__BASE_URL", emu.base_url)
            store = ["--store", store_url]
            stored = runner.invoke(
                app,
                ["secrets", "set-key", "--exchange", "binance", *store],
                input=f"{emu.api_key}\n{emu.api_secret}\n",
            )
            assert stored.exit_code == 0, stored.output
            ok = await asyncio.to_thread(runner.invoke, app, ["secrets", "check-key", *store])
            assert ok.exit_code == 0, ok.output
            assert "withdraw            no" in ok.output and "verdict: safe" in ok.output
            emu.set_key_permissions(ipRestrict=False)
            refused = await asyncio.to_thread(runner.invoke, app, ["secrets", "check-key", *store])
            assert refused.exit_code == 1
            assert "no_ip_restriction" in refused.output and "accept-key-risk" in refused.output
            code = pyotp.TOTP(secret).now()
            accepted = runner.invoke(
                app,
                [
                    "secrets",
                    "accept-key-risk",
                    "--accept",
                    "no_ip_restriction",
                    "--reason",
                    "dynamic IP",
                    "--code",
                    code,
                    *store,
                ],
            )
            assert accepted.exit_code == 0, accepted.output
            ok = await asyncio.to_thread(runner.invoke, app, ["secrets", "check-key", *store])
            assert ok.exit_code == 0 and "verdict: overridden" in ok.output
            for result in (stored, refused, accepted, ok):
                assert emu.api_secret not in result.output and secret not in result.output
            listing = runner.invoke(app, ["secrets", "list", *store])
            assert "last check overridden" in listing.output

    asyncio.run(scenario())
