"""One-time TOTP codes in real stores: accepted once, across processes; wrong codes locked out.

Codes are made for a fixed `now` (use_totp takes the time), except where a real process has to
agree on the wall clock with this one (the CLI and the race), which use the current time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyotp
import pytest
from store_dump import dump_store

from tradelib.audit import AuditLog
from tradelib.config import Settings
from tradelib.control import RiskControl
from tradelib.domain import Mode
from tradelib.errors import SecretError
from tradelib.risk.breakers import Breaker, TradeClosed
from tradelib.secrets import (
    TOTP_SECRET_ENV,
    TotpPolicy,
    new_totp_secret,
    time_step,
    totp_fingerprint,
    use_totp,
)
from tradelib.store import Store, open_store

NOW = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)
RACE = """
import sys
from datetime import UTC, datetime
from tradelib.errors import SecretError
from tradelib.secrets import use_totp
from tradelib.store import open_store
with open_store(sys.argv[1]) as store:
    try:
        use_totp(store, sys.argv[2], datetime.fromisoformat(sys.argv[3]), "race", sys.argv[4])
        print("ACCEPTED")
    except SecretError as exc:
        print("REFUSED", exc)
"""


def test_a_code_is_accepted_once_whatever_the_action(store: Store) -> None:
    secret = new_totp_secret()
    code = pyotp.TOTP(secret).at(NOW)
    step = use_totp(store, code, NOW, "going live", "alice", secret=secret)
    assert step == time_step(NOW)
    with pytest.raises(SecretError, match=r"already used .*last for going live"):
        use_totp(
            store,
            code,
            NOW + timedelta(seconds=5),
            "releasing the kill switch",
            "mallory",
            secret=secret,
        )
    # The next code works; the record names the secret only by its keyed fingerprint.
    later = NOW + timedelta(seconds=30)
    use_totp(
        store,
        pyotp.TOTP(secret).at(later),
        later,
        "releasing the kill switch",
        "alice",
        secret=secret,
    )
    record = store.get_totp_use(totp_fingerprint(secret))
    assert record is not None and record.last_step == time_step(later)
    assert record.last_action == "releasing the kill switch" and record.failures == 0
    [refused] = store.list_audit()
    assert (refused.actor, refused.action) == ("mallory", "totp_refused")
    assert refused.payload["reason"] == "replayed"
    everything = repr(dump_store(store))
    assert secret not in everything and code not in everything
    assert AuditLog(store).verify().ok


def test_missing_code_records_nothing(store: Store) -> None:
    before = dump_store(store)
    for code in (None, "", "   "):
        with pytest.raises(SecretError, match="going live needs a TOTP code"):
            use_totp(store, code, NOW, "going live", "alice", secret=new_totp_secret())
    assert dump_store(store) == before


def test_wrong_codes_lock_the_second_factor_and_are_audited(store: Store) -> None:
    secret = new_totp_secret()
    policy = TotpPolicy(max_failures=3, lockout=timedelta(minutes=15))
    valid = {pyotp.TOTP(secret).at(NOW + timedelta(seconds=s)) for s in (-30, 0, 30)}
    wrong = [c for c in ("135790", "246801", "975310", "864209", "112233") if c not in valid][:3]
    for i, code in enumerate(wrong):
        with pytest.raises(SecretError) as refused:
            use_totp(
                store,
                code,
                NOW + timedelta(seconds=i),
                "going live",
                "mallory",
                secret=secret,
                policy=policy,
            )
    assert "3 failed codes within 5 minutes" in str(refused.value)
    assert "locked until 2026-11-25 12:15:12 UTC" in str(refused.value)
    good = pyotp.TOTP(secret).at(NOW + timedelta(minutes=1))
    with pytest.raises(SecretError, match="the second factor is locked until"):
        use_totp(
            store,
            good,
            NOW + timedelta(minutes=1),
            "going live",
            "alice",
            secret=secret,
            policy=policy,
        )
    audit = store.list_audit()
    assert [r.payload["reason"] for r in audit] == ["wrong", "wrong", "wrong", "locked"]
    assert [r.actor for r in audit] == ["mallory"] * 3 + ["alice"]
    assert all(c not in repr(dump_store(store)) for c in [*wrong, good, secret])
    after = NOW + timedelta(minutes=16)
    use_totp(
        store,
        pyotp.TOTP(secret).at(after),
        after,
        "going live",
        "alice",
        secret=secret,
        policy=policy,
    )


def test_refused_in_one_process_after_use_in_another(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real CLI, in another process, releases the kill switch with a code while this one
    holds the store (DuckDB: this process owns the file and serves it; PostgreSQL: both are
    clients); this process cannot use the same code afterwards."""
    secret = new_totp_secret()
    monkeypatch.setenv(TOTP_SECRET_ENV, secret)
    now = datetime.now(UTC)  # the CLI reads the wall clock
    code = pyotp.TOTP(secret).at(now)
    cli = [sys.executable, "-c", "from tradelib.cli import app; app()"]
    release = ["release", "--reason", "drill over", "--code", code, "--by", "desk"]
    with open_store(store_url) as store:
        paper = RiskControl(
            store, Settings(), mode=Mode.PAPER, exchange_id="binance", clock=lambda: now
        )
        paper.engage_kill("ops", "drill")
        done = subprocess.run(
            [*cli, *release, "--store", store_url],
            env={**os.environ, TOTP_SECRET_ENV: secret},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert not paper.kill_state().engaged
        live = RiskControl(
            store, Settings(), mode=Mode.LIVE, exchange_id="binance", clock=lambda: now
        )
        for _ in range(3):
            live.observe(TradeClosed(Decimal(-5), "ARB/USDT"))
        with pytest.raises(SecretError, match=r"already used .*releasing the kill switch"):
            live.reset_breaker(Breaker.CONSECUTIVE_LOSSES, "ops", "checked", code)
        assert live.breaker_state().any_tripped
    assert secret not in done.stdout + done.stderr


def test_two_processes_racing_one_code_exactly_one_wins(pg_store_url: str) -> None:
    secret = new_totp_secret()
    code = pyotp.TOTP(secret).at(NOW)
    with open_store(pg_store_url):
        pass  # migrate once, before the race
    env = {**os.environ, TOTP_SECRET_ENV: secret}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, pg_store_url, code, NOW.isoformat(), f"racer-{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in racers]
    verdicts = sorted(o.strip().splitlines()[-1].split()[0] for o in outputs)
    assert verdicts == ["ACCEPTED", "REFUSED"], outputs
    assert "already used" in next(o for o in outputs if "REFUSED" in o)
