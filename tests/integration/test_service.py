"""`tradelib run` as a real process against the emulator in another process, on real stores.

What is checked is what the service leaves behind — orders, fills, positions, balances,
heartbeats, commands and audit rows in the store — and what it tells a person (exit status,
messages). The strategy is the real TokenUnlockStrategy on a test calendar whose unlock sits
at the emulator's clock (see service_fixtures). Waits are event-driven with fail-safe bounds.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
from service_fixtures import (
    CLI,
    EXIT,
    LIMIT_S,
    UNLOCK,
    EmulatorProcess,
    cycled_at,
    heartbeat,
    open_as_client,
    service_env,
    start_service,
    stop_service,
    wait_for,
)

from tradelib.domain import Mode, OrderStatus, Side
from tradelib.operations import send_command, set_paused
from tradelib.operations.valuation import AccountValuation
from tradelib.secrets import (
    MASTER_KEY_ENV,
    TOTP_SECRET_ENV,
    Credentials,
    SecretBox,
    generate_master_key,
    save_credentials,
)
from tradelib.store import (
    CommandKind,
    CommandStatus,
    EngineState,
    HeartbeatRecord,
    Liveness,
    Store,
    open_store,
)

OPEN = [s for s in OrderStatus if not s.is_terminal]


def _orders(store: Store) -> list:  # type: ignore[type-arg]
    return store.list_orders(mode=Mode.PAPER, exchange="binance")


def _filled(store: Store, side: Side) -> list:  # type: ignore[type-arg]
    return [o for o in _orders(store) if o.side is side and o.status is OrderStatus.FILLED]


def _running_with_report(store: Store, pid: int) -> HeartbeatRecord | None:
    beat = heartbeat(store)
    if beat and beat.pid == pid and beat.state is EngineState.RUNNING:
        return beat if beat.detail.get("last_report") else None
    return None


def _resting(emulator: EmulatorProcess) -> list[dict]:  # type: ignore[type-arg]
    return [o for o in emulator.admin("orders", method="GET") if o["status"] == "NEW"]


def _restarted(store: Store, before: HeartbeatRecord) -> HeartbeatRecord | None:
    beat = heartbeat(store)
    if beat and beat.started_at > before.started_at and beat.state is EngineState.RUNNING:
        return beat
    return None


def _alive(store: Store) -> bool:
    beat = heartbeat(store)
    now = datetime.now(UTC)
    return bool(beat and beat.liveness(now, 10) is Liveness.ALIVE and beat.cycles >= 1)


def _second_engine_is_refused(store_url: str, env: dict[str, str]) -> None:
    """A second `tradelib run` on the account exits 3, naming the engine that holds it."""
    second = subprocess.run(
        [*CLI, "run", "--mode", "paper", "--store", store_url], env=env,
        capture_output=True, text=True, timeout=LIMIT_S, check=False,
    )  # fmt: skip
    assert second.returncode == 3, second.stdout + second.stderr
    assert "engine:paper:binance is already running: held by tradelib run --mode paper" in (
        second.stderr
    )


def _live_account(
    store: Store, emulator: EmulatorProcess, folder: Path
) -> tuple[pyotp.TOTP, dict[str, str]]:
    """The emulator's key pair stored encrypted under a new master key; returns the TOTP
    authenticator and the environment a live `tradelib run` needs (master key, TOTP secret)."""
    master, secret = generate_master_key(), pyotp.random_base32()
    box = SecretBox(base64.b64decode(master))
    save_credentials(store, box, Credentials("binance", "main", emulator.key, emulator.secret))
    env = service_env(emulator, folder, **{MASTER_KEY_ENV: master, TOTP_SECRET_ENV: secret})
    return pyotp.TOTP(secret), env


class Services:
    """`tradelib run` processes a test started; whatever still runs is stopped at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, store_url: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        """Start one (see `start_service`)."""
        proc = start_service(store_url, self.folder, env, *args)
        self.started.append(proc)
        return proc


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    launched = Services(tmp_path)
    yield launched
    for proc in launched.started:
        if proc.poll() is None:
            stop_service(proc)


@pytest.fixture
def pg_store(pg_store_url: str) -> Iterator[Store]:
    store = open_store(pg_store_url)
    yield store
    store.close()


@pytest.fixture
def emulator(tmp_path: Path):  # type: ignore[no-untyped-def]
    emu = EmulatorProcess(tmp_path)
    emu.start()
    yield emu
    emu.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_paper_service_trades_survives_drops_and_restarts_and_stops_cleanly(
    pg_store_url: str, emulator: EmulatorProcess, tmp_path: Path, services: Services,
    pg_store: Store,
) -> None:
    env = service_env(emulator, tmp_path)
    service = services.start(pg_store_url, env)
    store = pg_store
    wait_for(lambda: _alive(store), "the service's first cycle")

    # A second engine on the same account is refused, saying who holds it.
    _second_engine_is_refused(pg_store_url, env)

    # The unlock candle closes: the strategy buys, once.
    emulator.advance()
    [entry] = wait_for(lambda: _filled(store, Side.BUY), "the entry fill")
    assert entry.created_at >= UNLOCK
    [position] = store.list_positions(Mode.PAPER, exchange="binance")
    assert position.quantity == entry.filled_quantity

    # Every WebSocket is cut; the next candle is still traded on, nothing is sent twice.
    assert emulator.admin("disconnect")["closed"] >= 1
    at = emulator.advance()
    wait_for(lambda: cycled_at(store, at), "a cycle after the WebSocket drop")

    # The exchange goes away and comes back where it was (its replay clock one hour on).
    emulator.stop()
    emulator.start(at=at)
    at = emulator.advance()
    wait_for(lambda: cycled_at(store, at), "a cycle after the exchange restart")
    assert len(_orders(store)) == 1  # no duplicate entry after drop, restart, backfill

    # The exit candle closes: the position is sold, once.
    emulator.advance()
    assert emulator.now() == EXIT
    [sale] = wait_for(lambda: _filled(store, Side.SELL), "the exit fill")
    assert sale.filled_quantity == entry.filled_quantity and sale.reduce_only
    assert store.list_positions(Mode.PAPER, exchange="binance") == []

    assert stop_service(service) == 0
    beat = heartbeat(store)
    assert beat is not None and beat.state is EngineState.STOPPED
    assert beat.detail["stopped_because"] == "stop requested (SIGTERM/SIGINT)"
    assert len(_orders(store)) == 2
    assert store.list_orders(statuses=OPEN) == []  # nothing half-written
    [closed] = store.list_positions(Mode.PAPER, include_closed=True, exchange="binance")
    usdt = store.list_balances(Mode.PAPER, exchange="binance")["USDT"].total
    assert usdt == Decimal(10_000) + closed.realized_pnl  # the paper account is in the store
    state = store.load_execution_state("token_unlock", Mode.PAPER)
    assert state is not None and not state.is_running and state.total_trades == 1

    # A restarted service continues the same paper account.
    service = services.start(pg_store_url, env)
    restarted = wait_for(lambda: _running_with_report(store, service.pid), "the restart")
    assert Decimal(restarted.detail["last_report"]["equity_usd"]) == usdt
    valuation = AccountValuation.from_detail(restarted.detail)  # what the dashboard reads
    assert valuation is not None and valuation.equity_usd == usdt
    assert valuation.balances["USDT"] == (usdt, Decimal(0))
    assert stop_service(service) == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_pause_and_commands_reach_the_running_service(
    pg_store_url: str, emulator: EmulatorProcess, tmp_path: Path, services: Services,
    pg_store: Store,
) -> None:
    service = services.start(pg_store_url, service_env(emulator, tmp_path))
    store = pg_store
    wait_for(lambda: _alive(store), "the service's first cycle")
    # Paused from another process: the unlock candle brings no entry.
    set_paused(store, "paper", "binance", True, "ops", "news pending", datetime.now(UTC))
    at = emulator.advance()
    wait_for(lambda: cycled_at(store, at), "the paused cycle")
    report = heartbeat(store).detail["last_report"]  # type: ignore[union-attr]
    assert any("entries paused by ops: news pending" in r for r in report["rejected"])
    assert _orders(store) == []
    assert stop_service(service) == 0

    # A fresh event window for the next test step: the unlock candle again, unpaused.
    emulator.stop()
    emulator.start()
    set_paused(store, "paper", "binance", False, "ops", "news out", datetime.now(UTC))
    service = services.start(pg_store_url, service_env(emulator, tmp_path))
    wait_for(lambda: _alive(store) and heartbeat(store).pid == service.pid,  # type: ignore[union-attr]
             "the second service")  # fmt: skip
    emulator.advance()
    [entry] = wait_for(lambda: _filled(store, Side.BUY), "the entry")

    # Close the position with a command sent from this process.
    command_id = send_command(
        store, "paper", "binance", CommandKind.CLOSE_POSITION,
        {"symbol": "ARB/USDT", "strategy_id": "token_unlock"}, "ops", "take profit early",
        datetime.now(UTC),
    )  # fmt: skip
    done = wait_for(lambda: (c := store.get_command(command_id)) and c.status.is_final and c,
                    "the command's result")  # fmt: skip
    assert done.status is CommandStatus.DONE, done.result
    assert done.claimed_by and done.claimed_by.startswith("tradelib-run:")
    [sale] = _filled(store, Side.SELL)
    assert done.result and done.result["order"]["client_order_id"] == sale.client_order_id
    assert sale.filled_quantity == entry.filled_quantity and sale.reduce_only
    assert store.get_order_intent(sale.client_order_id)["intent_key"].startswith(  # type: ignore[index]
        f"command:{command_id}:close:"
    )
    assert [a.action for a in store.list_audit() if a.action.startswith("command_")] == [
        "command_done"
    ]
    refused_id = send_command(
        store, "paper", "binance", CommandKind.CLOSE_POSITION,
        {"symbol": "ARB/USDT", "strategy_id": "token_unlock"}, "ops", "again",
        datetime.now(UTC),
    )  # fmt: skip
    refused = wait_for(lambda: (c := store.get_command(refused_id)) and c.status.is_final and c,
                       "the second command's result")  # fmt: skip
    assert refused.status is CommandStatus.REFUSED
    assert "no open ARB/USDT position" in refused.result["error"]  # type: ignore[index]
    assert stop_service(service) == 0


@pytest.mark.slow
def test_on_duckdb_the_service_trades_stops_and_refuses_a_second_engine(
    duckdb_store_url: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    env = service_env(emulator, tmp_path)
    service = start_service(duckdb_store_url, tmp_path, env)
    log = tmp_path / "service.log"
    try:
        wait_for(lambda: '"engine running"' in log.read_text(), "the engine to run")
        _second_engine_is_refused(duckdb_store_url, env)
        emulator.advance()
        wait_for(lambda: "position_opened" in log.read_text(), "the entry")
        emulator.advance(3)
        wait_for(lambda: "position_closed" in log.read_text(), "the exit")
    finally:
        assert stop_service(service) == 0
    with open_store(duckdb_store_url) as store:
        orders = _orders(store)
        assert [(o.side, o.status) for o in orders] == [
            (Side.BUY, OrderStatus.FILLED), (Side.SELL, OrderStatus.FILLED)
        ]  # fmt: skip
        beat = heartbeat(store)
        assert beat is not None and beat.state is EngineState.STOPPED and beat.cycles >= 2
    status = subprocess.run(
        [*CLI, "status", "--store", duckdb_store_url], env=env, capture_output=True, text=True,
        timeout=LIMIT_S, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    [line] = [x for x in status.stdout.splitlines() if x.startswith("engine paper/binance")]
    assert "STOPPED" in line and f"pid {service.pid}" in line and "cycles, last 20" in line
    assert "stopped because: stop requested (SIGTERM/SIGINT)" in line


KILL_SLA_S = 2.0  # the product's promise: an engaged kill switch is enforced within 2 s


def _event_time(store: Store, kind: str) -> datetime | None:
    events = store.list_events(kind=kind)
    return events[-1].at if events else None


@pytest.mark.slow
def test_tradelib_kill_elsewhere_makes_the_paper_service_flatten_within_2_s(
    store_url: str, emulator: EmulatorProcess, tmp_path: Path, services: Services
) -> None:
    # On DuckDB the service owns the file and serves it: this process and the CLI use it
    # through the store-sharing socket, as the dashboard would.
    env = service_env(emulator, tmp_path)
    service = services.start(store_url, env)
    store = open_as_client(store_url, service)
    try:
        wait_for(lambda: _alive(store), "the service's first cycle")
        emulator.advance()
        [entry] = wait_for(lambda: _filled(store, Side.BUY), "the entry")
        kill = subprocess.run(
            [*CLI, "kill", "--flatten", "--reason", "desk says stop", "--store", store_url],
            env=env, capture_output=True, text=True, timeout=LIMIT_S, check=False,
        )  # fmt: skip
        assert kill.returncode == 0, kill.stdout + kill.stderr
        assert "the running paper engine enforces it" in kill.stdout
        engaged = _event_time(store, "kill_switch_engaged")
        [sale] = wait_for(lambda: _filled(store, Side.SELL), "the flatten")
        enforced = wait_for(lambda: _event_time(store, "kill_enforced"), "the enforcement")
        assert engaged is not None and (enforced - engaged).total_seconds() <= KILL_SLA_S
        assert sale.filled_quantity == entry.filled_quantity and sale.reduce_only
        assert store.list_positions(Mode.PAPER, exchange="binance") == []
        at = emulator.advance()
        wait_for(lambda: cycled_at(store, at), "a cycle under the kill switch")
        beat = heartbeat(store)
        assert beat is not None and beat.detail["kill_switch"] is True
        assert beat.detail["last_report"]["halted"] == "kill switch engaged"
        assert len(_orders(store)) == 2  # nothing new while engaged
    finally:
        store.close()
    assert stop_service(service) == 0


@pytest.mark.slow
def test_tradelib_kill_elsewhere_makes_the_live_service_cancel_within_2_s(
    store_url: str, emulator: EmulatorProcess, tmp_path: Path, services: Services
) -> None:
    # Issue 16 item 2: on DuckDB the engine holds the file in its process, and `tradelib kill`
    # in another process gets its orders cancelled within 2 s.
    import asyncio

    from tradelib.testing.binance_emulator import ccxt_config_for

    with open_store(store_url) as setup:
        totp, env = _live_account(setup, emulator, tmp_path)
    service = services.start(store_url, env, "--mode", "live", "--totp-code", totp.now())
    store = open_as_client(store_url, service)
    try:
        wait_for(lambda: (b := heartbeat(store, "live")) and b.cycles >= 1, "the live engine")

        async def rest_an_order() -> None:  # a person's order on the same account
            import ccxt.async_support as ccxt_async

            config = ccxt_config_for(emulator.url, emulator.key, emulator.secret)
            client = ccxt_async.binance(config)
            try:
                await client.load_markets()
                await client.create_order("ARB/USDT", "limit", "buy", 100, 0.3)
            finally:
                await client.close()

        asyncio.run(rest_an_order())
        assert len(_resting(emulator)) == 1
        # `tradelib kill` from another process, without the master key: it can engage the
        # switch but not reach the exchange — the running service has to do the cancelling.
        no_key = {k: v for k, v in env.items() if k != MASTER_KEY_ENV}
        kill = subprocess.run(
            [*CLI, "kill", "--reason", "desk says stop", "--store", store_url],
            env={**no_key, "TRADELIB_MODE": "live"}, capture_output=True, text=True,
            timeout=LIMIT_S, check=False,
        )  # fmt: skip
        assert "TRADELIB_MASTER_KEY" in kill.stderr, kill.stdout + kill.stderr
        engaged = _event_time(store, "kill_switch_engaged")
        wait_for(lambda: not _resting(emulator), "the resting order to be cancelled")
        cancelled = wait_for(lambda: _event_time(store, "kill_cancelled_unknown_order"),
                             "the service's record of the cancel")  # fmt: skip
        assert engaged is not None and (cancelled - engaged).total_seconds() <= KILL_SLA_S
        assert stop_service(service) == 0
    finally:
        store.close()


def test_live_refuses_to_start_without_a_stored_key(
    duckdb_store_url: str, tmp_path: Path
) -> None:
    emulator = EmulatorProcess(tmp_path)  # never started: nothing may reach an exchange
    env = service_env(emulator, tmp_path, **{MASTER_KEY_ENV: generate_master_key()})
    service = start_service(duckdb_store_url, tmp_path, env, "--mode", "live",
                            "--totp-code", "123456")  # fmt: skip
    assert service.wait(LIMIT_S) == 2
    log = (tmp_path / "service.log").read_text()
    assert "refused to start" in log and "no API key stored for binance/main" in log
    with open_store(duckdb_store_url) as store:
        [refusal] = [a for a in store.list_audit() if a.action == "live_start_refused"]
        assert "no API key stored" in refusal.payload["refused"]
        assert store.list_orders() == []
        beat = heartbeat(store, "live")
        assert beat is not None and beat.state is EngineState.FAILED
        assert "no API key stored" in beat.detail["stopped_because"]


@pytest.mark.postgres
@pytest.mark.slow
def test_a_refused_switch_to_live_keeps_the_paper_engine_trading(
    pg_store_url: str, emulator: EmulatorProcess, tmp_path: Path, services: Services,
    pg_store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tradelib.operations import request_live

    secret = pyotp.random_base32()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    service = services.start(pg_store_url, service_env(emulator, tmp_path))
    store = pg_store
    first = wait_for(lambda: _alive(store) and heartbeat(store), "the paper engine")
    # The dashboard's toggle: confirmed with TOTP; this service has no master key for live.
    request_live(store, "binance", by="ops", reason="go live", now=datetime.now(UTC),
                 totp_code=pyotp.TOTP(secret).now(), capital_usd=Decimal(300), limits={},
                 key_problems=[])  # fmt: skip
    alert = wait_for(lambda: [e for e in store.list_events(kind="alert")
                              if "switch to live refused" in e.payload["message"]],
                     "the refusal alert")  # fmt: skip
    assert "staying paper" in alert[0].payload["message"]
    assert "TRADELIB_MASTER_KEY" in alert[0].payload["message"]
    again = wait_for(lambda: _restarted(store, first), "the paper engine again")
    assert again.pid == first.pid  # the same service, a new paper session
    emulator.advance()
    wait_for(lambda: _filled(store, Side.BUY), "paper trading after the refusal")
    assert [a.action for a in store.list_audit() if a.action == "live_start_refused"] == [
        "live_start_refused"
    ]  # the same request is not retried in a loop
    live = heartbeat(store, "live")
    assert live is None or live.state is not EngineState.RUNNING
    assert stop_service(service) == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_the_service_follows_the_switch_to_live_and_back_to_paper(
    pg_store_url: str, emulator: EmulatorProcess, tmp_path: Path, services: Services,
    pg_store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tradelib.operations import request_live, request_paper

    store = pg_store
    totp, env = _live_account(store, emulator, tmp_path)
    monkeypatch.setenv(TOTP_SECRET_ENV, totp.secret)
    service = services.start(pg_store_url, env)
    paper = wait_for(lambda: _alive(store) and heartbeat(store), "the paper engine")

    # The dashboard's toggle: confirmed with a TOTP code and a 300 USD cap.
    request_live(store, "binance", by="ops", reason="ready", now=datetime.now(UTC),
                 totp_code=totp.now(), capital_usd=Decimal(300), limits={},
                 key_problems=[])  # fmt: skip
    live = wait_for(lambda: (b := heartbeat(store, "live")) and b.cycles >= 1 and b, "live")
    assert live.pid == paper.pid and live.detail["live_capital_usd"] == "300"
    stopped = heartbeat(store)
    assert stopped is not None and stopped.state is EngineState.STOPPED
    assert stopped.detail["stopped_because"] == "going live: confirmed by ops"

    emulator.advance()  # the unlock candle: the live engine buys on the exchange's account
    wait_for(lambda: [t for t in emulator.admin("trades", method="GET") if t["isBuyer"]],
             "the live entry on the exchange")  # fmt: skip
    [position] = wait_for(lambda: store.list_positions(Mode.LIVE, exchange="binance"), "it")
    assert position.quantity * position.average_entry <= Decimal(300) * Decimal("0.2") * Decimal(
        "1.01"
    )  # sized on the confirmed cap

    # Back to paper: no new live entries, the open position's exit still runs, then paper.
    request_paper(store, "binance", by="ops", reason="done for today", now=datetime.now(UTC))
    wait_for(lambda: (b := heartbeat(store, "live")) and b.detail.get("winding_down"),
             "the live engine to wind down")  # fmt: skip
    emulator.advance(3)  # the exit candle
    back = wait_for(lambda: _restarted(store, paper), "the paper engine again")
    assert back.pid == paper.pid
    assert store.list_positions(Mode.LIVE, exchange="binance") == []
    ended = heartbeat(store, "live")
    assert ended is not None and ended.state is EngineState.STOPPED
    assert ended.detail["stopped_because"] == "back to paper: asked by ops"
    assert stop_service(service) == 0


def test_live_refuses_a_key_that_can_withdraw(
    duckdb_store_url: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    with open_store(duckdb_store_url) as store:
        totp, env = _live_account(store, emulator, tmp_path)
    emulator.admin("key_permissions", {"enableWithdrawals": True})
    service = start_service(duckdb_store_url, tmp_path, env, "--mode", "live",
                            "--totp-code", totp.now())  # fmt: skip
    assert service.wait(LIMIT_S) == 2
    log = (tmp_path / "service.log").read_text()
    assert "refused to start" in log and "withdraw" in log
    assert emulator.admin("orders", method="GET") == []
    with open_store(duckdb_store_url) as store:
        actions = [a.action for a in store.list_audit()]
        assert "key_check_refused" in actions and "live_start_refused" in actions
        assert "live_engine_started" not in actions
