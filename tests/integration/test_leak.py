"""Leak test: known fake secrets go through every entry point; none may show up anywhere.

The fake API key pair, TOTP secret, webhook token, master keys and audit key are live for
real: the key pair is stored encrypted and is the one the local Binance emulator accepts, the
TOTP secret releases the kill switch, alerts go to a local webhook whose URL carries the
token, the audit key chains every audit entry. Each
entry point then runs on both stores, and everything it left behind is scanned (see
leak_harness): captured output with logs at DEBUG, every command's output, every exception's
text and traceback, webhook messages, every file under the test directory (reports,
executed notebooks, the DuckDB file) and every column of every table. Zero hits allowed.

To cover a new entry point, add one line to ENTRY_POINTS.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pyotp
import pytest
from leak_harness import (
    LIMIT_S,
    NOTEBOOKS,
    FakeSecrets,
    Hit,
    LeakContext,
    Scanner,
    WebhookReceiver,
    scan_everything,
)
from service_fixtures import strategy_files

from tradelib.config import load_settings
from tradelib.control import RiskControl
from tradelib.domain import Mode
from tradelib.engine import Engine
from tradelib.engine.replay import event_windows
from tradelib.errors import (
    AuthenticationError,
    ExchangeUnavailable,
    SecretError,
    StoreUnavailable,
    UnsafeApiKey,
)
from tradelib.exchange.ccxt_exchange import CcxtExchange
from tradelib.exchange.ratelimit import RetryPolicy
from tradelib.keycheck import require_safe_key
from tradelib.logs import configure_logging
from tradelib.operations import send_command
from tradelib.secrets import (
    Credentials,
    SecretBox,
    load_credentials,
    load_master_key,
    parse_master_key,
    save_credentials,
    use_totp,
)
from tradelib.store import CommandKind, Store, open_store
from tradelib.strategy.calendar import UnlockCalendar, load_calendar
from tradelib.strategy.params import TokenUnlockParams
from tradelib.strategy.token_unlock import TokenUnlockStrategy
from tradelib.testing.binance_emulator import BinanceEmulator
from tradelib.webhooks import flush_all, webhook_sinks

SYMBOL = "ARB/USDT"
BAR = timedelta(hours=1)
PARAMS = TokenUnlockParams(direction="spot", days_after=4.0)
SECRETS = FakeSecrets()
T = TypeVar("T")


def _first_arb_unlock() -> UnlockCalendar:
    full = load_calendar()
    events = [e for e in full.events if e.symbol == "ARB" and e.unlock_time.year == 2024][:1]
    return UnlockCalendar(events, full.known_symbols)


def _code(at: datetime) -> str:
    return pyotp.TOTP(SECRETS.totp_secret).at(at)


# -- entry points ---------------------------------------------------------------------------


async def engine_session(ctx: LeakContext) -> None:
    """The engine trading an unlock event against the emulator with the stored key pair."""
    configure_logging("json", "DEBUG")
    settings = load_settings(mode=Mode.LIVE)
    store = open_store(ctx.store_url)
    emu = ctx.emulator
    box = SecretBox(load_master_key())
    creds = load_credentials(store, box, "binance", "main")
    exchange = CcxtExchange(
        "binance",
        api_key=creds.api_key,
        api_secret=creds.api_secret,
        base_url=emu.base_url,
        rate_limit=False,
        clock=lambda: emu.replay.now.timestamp(),
    )
    try:
        emu.set_key_permissions(enableWithdrawals=True)
        with ctx.expect(UnsafeApiKey):
            await require_safe_key(exchange, store, actor="engine", now=emu.replay.now)
        emu.context.key_permissions.reset()
        await require_safe_key(exchange, store, actor="engine", now=emu.replay.now)

        calendar = _first_arb_unlock()
        window = event_windows(list(calendar.events), PARAMS, BAR)[0]
        engine = Engine(
            settings,
            store,
            exchange,
            TokenUnlockStrategy(PARAMS, calendar),
            symbols=[SYMBOL],
            clock=lambda: emu.replay.now,
            history=24 * 7,
        )
        emu.advance(to=window.start - BAR * 2)
        while emu.replay.now < window.end + BAR * 3:
            await engine.run_once()
            emu.advance(to=emu.replay.now + BAR)
        assert len(emu.orders()) >= 2, "the engine never traded: the session proves nothing"

        emu.faults.fail_next(1, status=503, path="/api/v3/account")
        exchange.retry_policy = RetryPolicy(attempts=1)
        with ctx.expect(ExchangeUnavailable):
            await exchange.fetch_balances()
        impostor = CcxtExchange(
            "binance",
            api_key=creds.api_key,
            api_secret="wrong-" + "0" * 58,
            base_url=emu.base_url,
            rate_limit=False,
        )
        with ctx.expect(AuthenticationError):
            await impostor.fetch_balances()
        await impostor.close()
        with ctx.expect(SecretError):
            load_credentials(
                store, SecretBox(parse_master_key(SECRETS.new_master_key, "t")), "binance", "main"
            )

        now = datetime.now(UTC)  # TOTP codes are about real time
        control = RiskControl(
            store, settings, mode=Mode.LIVE, exchange_id="binance", clock=lambda: now
        )
        control.engage_kill("ops", "leak drill")
        ctx.record("release refused", control.release_kill("ops", "drill", "000000").reason)
        ctx.record("release", control.release_kill("ops", "drill over", _code(now)).reason)
        with ctx.expect(SecretError):
            use_totp(store, _code(now), now, "replay attempt", "mallory")
        for sink in webhook_sinks(settings.alerts):
            assert sink.flush(60)
        assert ctx.webhook.bodies, "no alert reached the webhook: the token was never in play"
    finally:
        await exchange.close()
        store.close()


async def paper_notebook(ctx: LeakContext) -> None:
    """The production paper notebook run by papermill with every secret in its environment.

    (The replay's engine logs and stores its alerts but pages no webhook: history is not news.)
    """
    executed = await ctx.notebook(
        "paper_replay.ipynb",
        events=2,
        store_url=ctx.store_url,
        run_backtest=False,
        report_dir=str(ctx.tmp / "reports"),
    )
    assert "2 events" in str(executed)
    with open_store(ctx.store_url) as store:  # the run wrote orders and audited entries
        [run] = store.list_runs(name="demo")
        assert run.status == "succeeded" and store.list_orders() and store.list_audit()


async def cli_session(ctx: LeakContext) -> None:
    """The commands a person runs around a live account, including the ones that fail."""
    pair = f"{SECRETS.api_key}\n{SECRETS.api_secret}\n"
    live = {"TRADELIB_MODE": "live"}
    await ctx.cli("secrets", "set-key", "--exchange", "binance", "--replace", input=pair)
    await ctx.cli("secrets", "list")
    assert "verdict: safe" in await ctx.cli("secrets", "check-key")
    ctx.emulator.set_key_permissions(enableWithdrawals=True)
    await ctx.cli("secrets", "check-key", expect=1)
    ctx.emulator.context.key_permissions.reset()
    # the demo before the kill drill: an engaged kill switch stops every engine on the store
    await ctx.cli("demo", "--events", "2", "--no-backtest", "--out", str(ctx.tmp / "reports"))
    assert list((ctx.tmp / "reports").glob("*.html")), "the demo wrote no report to scan"
    await ctx.cli("kill", "--reason", "leak drill", **live)
    await ctx.cli("release", "--reason", "drill", "--code", "000000", expect=1, **live)
    code = _code(datetime.now(UTC))
    await ctx.cli("release", "--reason", "drill over", "--code", code, **live)
    await ctx.cli("kill", "--reason", "again", **live)
    assert "already used" in await ctx.cli("release", "--reason", "x", "--code", code, expect=1)
    await ctx.cli("status")
    await ctx.cli("audit", "verify")
    await ctx.cli("audit", "show")
    await ctx.cli("db", "status")
    await ctx.cli("doctor", expect=None)
    wrong = {"TRADELIB_MASTER_KEY": SECRETS.new_master_key}
    await ctx.cli("secrets", "set-key", "--exchange", "kraken", input=pair, expect=2, **wrong)
    await ctx.cli("secrets", "rotate", TRADELIB_NEW_MASTER_KEY=SECRETS.new_master_key)
    assert "verdict: safe" in await ctx.cli("secrets", "check-key", **wrong)


async def _until(what: str, check: Callable[[], object], proc: asyncio.subprocess.Process) -> None:
    """Poll `check` while `proc` runs (a fail-safe bounds the wait; never a timing assertion)."""
    for _ in range(int(LIMIT_S / 0.2)):
        if check():
            return
        assert proc.returncode is None, f"the process exited before {what}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what}")


def _read(ctx: LeakContext, read: Callable[[Store], T]) -> T | None:
    """One read from a fresh handle; None while the file changes hands (a notebook's kernel
    that held it exits under the read: StoreUnavailable, and the next read reconnects)."""
    try:
        with open_store(ctx.store_url) as store:
            return read(store)
    except StoreUnavailable:
        return None


async def _stopped(ctx: LeakContext, proc: asyncio.subprocess.Process, name: str) -> None:
    """SIGTERM, wait, keep the output for the scan; the process must stop cleanly."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), LIMIT_S)
    ctx.record(f"`{name}` output", out.decode(errors="replace"))
    assert proc.returncode == 0, f"{name} -> {proc.returncode}: {out.decode(errors='replace')}"


async def run_service(ctx: LeakContext) -> None:
    """`tradelib run --mode live` with the stored key and a TOTP code, steered by a command
    from another process, stopped with SIGTERM."""
    params, calendar = strategy_files(ctx.tmp)
    proc = await ctx.spawn("run", "--mode", "live", "--totp-code", _code(datetime.now(UTC)),
                        "--params", str(params), "--calendar", str(calendar))  # fmt: skip
    try:
        await _until(
            "the live engine's first cycle",
            lambda: (b := _read(ctx, lambda s: s.get_heartbeat("live", "binance"))) and b.cycles,
            proc,
        )
        with open_store(ctx.store_url) as store:
            command = send_command(
                store, "live", "binance", CommandKind.CLOSE_POSITION,
                {"symbol": SYMBOL, "strategy_id": "token_unlock"}, "ops", "leak drill",
                datetime.now(UTC),
            )  # fmt: skip

        await _until(
            "the command's answer",
            lambda: (c := _read(ctx, lambda s: s.get_command(command))) and c.status.is_final,
            proc,
        )
    finally:
        await _stopped(ctx, proc, "tradelib run --mode live")


async def scheduled_notebooks(ctx: LeakContext) -> None:
    """A production notebook run now, then the scheduler running one on a fast schedule."""
    params, calendar = strategy_files(ctx.tmp)
    strategy = f"{{params_file: {params}, calendar_file: {calendar}}}"
    cycle = str(NOTEBOOKS / "production" / "trading_cycle.ipynb")
    await ctx.cli("run-notebook", cycle, "-p", "mode", "paper", "-p", "strategy", strategy)
    schedule = ctx.tmp / "schedule.toml"
    schedule.write_text(
        f'output_dir = "runs"\n[jobs.daily_report]\nevery = "1s"\n'
        f'notebook = "{NOTEBOOKS / "production" / "daily_report.ipynb"}"\n'
    )
    proc = await ctx.spawn("schedule", str(schedule))
    try:
        await _until(
            "a scheduled daily report",
            lambda: _read(ctx, lambda s: s.list_runs(name="daily_report", status="succeeded")),
            proc,
        )
    finally:
        await _stopped(ctx, proc, "tradelib schedule")
    await ctx.cli("runs")


EntryPoint = Callable[[LeakContext], Awaitable[None]]
ENTRY_POINTS: list[tuple[str, EntryPoint]] = [
    ("engine session against the emulator", engine_session),
    ("papermill notebooks/paper_replay.ipynb", paper_notebook),
    ("tradelib CLI", cli_session),
    ("tradelib run --mode live", run_service),
    ("tradelib run-notebook and tradelib schedule", scheduled_notebooks),
]


# -- the test -------------------------------------------------------------------------------


@pytest.fixture
async def ctx(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LeakContext]:
    webhook = WebhookReceiver()
    start = event_windows(list(_first_arb_unlock().events), PARAMS, BAR)[0].start - BAR * 4
    emulator = BinanceEmulator(
        api_key=SECRETS.api_key,
        api_secret=SECRETS.api_secret,
        symbols=[SYMBOL],
        start=start,
        balances={"USDT": Decimal(10_000)},
    )
    await emulator.start()
    hook = f'[{{"url": "{webhook.url(SECRETS.webhook_token)}", "format": "slack"}}]'
    settings_env = {
        "TRADELIB_MASTER_KEY": SECRETS.master_key,
        "TRADELIB_TOTP_SECRET": SECRETS.totp_secret,
        "TRADELIB_AUDIT_KEY": SECRETS.audit_key,
        "TRADELIB_ALERTS__WEBHOOKS": hook,
        "TRADELIB_STORE_URL": store_url,
        "TRADELIB_EXCHANGE__BASE_URL": emulator.base_url,
        "TRADELIB_LOG_LEVEL": "DEBUG",
        "TRADELIB_LOG_FORMAT": "json",
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    with open_store(store_url) as store:  # the key pair every entry point finds stored
        box = SecretBox(load_master_key())
        pair = Credentials("binance", "main", SECRETS.api_key, SECRETS.api_secret)
        save_credentials(store, box, pair, actor="setup")
    context = LeakContext(SECRETS, tmp_path, store_url, emulator, webhook, dict(os.environ))
    try:
        yield context
    finally:
        await emulator.stop()
        webhook.close()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "entry_point"), ENTRY_POINTS, ids=[n for n, _ in ENTRY_POINTS])
async def test_no_secret_leaks(
    name: str,
    entry_point: EntryPoint,
    ctx: LeakContext,
    store_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    await entry_point(ctx)
    flush_all(timeout=30)
    captured = capfd.readouterr()
    backend = store_url.split(":", 1)[0]
    hits = scan_everything(ctx, captured.out + captured.err, backend)
    assert hits == [], f"{name} leaked:\n" + "\n".join(str(h) for h in hits)


def test_the_scanner_finds_every_secret_wherever_it_is_planted(
    tmp_path: Path, duckdb_store_url: str
) -> None:
    """The leak test can fail: each secret planted in each place is found there."""
    scanner = Scanner(SECRETS)
    for name, value in SECRETS.named().items():
        assert [h.secret for h in scanner.scan_value("log", f"x {value} y")] == [name]
        encoded = scanner.scan_value("blob", value.encode().hex().encode())
        assert [(h.secret, h.form) for h in encoded] == [(name, "hex")]
    key_bytes = parse_master_key(SECRETS.master_key, "t").key
    assert ("master key", "key bytes") in {
        (h.secret, h.form) for h in scanner.scan_bytes("file", b"\x00" + key_bytes + b"\x00")
    }
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "run.html").write_text(f"<p>{SECRETS.webhook_token}</p>")
    assert [str(h) for h in scanner.scan_files(tmp_path)] == [
        "webhook token (raw) in file reports/run.html"
    ]
    with open_store(duckdb_store_url) as store:
        store.append_event("note", {"said": SECRETS.totp_secret}, datetime.now(UTC))
    hits = scanner.scan_store(duckdb_store_url, "duckdb")
    assert [(h.secret, h.where) for h in hits] == [
        ("TOTP secret", "store duckdb table events column payload row 0")
    ]
    assert isinstance(hits[0], Hit)
