"""The store against both real backends: DuckDB files and PostgreSQL schemas."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import psycopg
import pytest
from conftest import PG_URL

from tradelib.config import repo_data_dir
from tradelib.domain import (
    Balance,
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Side,
    StrategyId,
)
from tradelib.errors import DataError, DuplicateOrder, IllegalTransition, StoreError
from tradelib.store import ExecutionState, Store, open_store
from tradelib.store.migrations import load_migrations

BIG = Decimal("12345678.12345678")
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CET = timezone(timedelta(hours=1))
# The tables each migration creates (one line per migration: add yours).
TABLES_BY_MIGRATION = {
    1: {
        "schema_migrations", "trading_strategies", "live_positions", "live_orders",
        "order_fills", "strategy_execution_state", "account_balances", "candles", "events",
        "runs", "controls", "audit_log", "api_keys",
    },
    2: {"engine_heartbeats", "engine_commands"},
    3: {"totp_uses", "key_checks"},
    4: {"audit_anchor"},
    5: set(),  # runs gains columns (trigger, scheduled time, notebook, host, failing cell)
}  # fmt: skip
ALL_TABLES = set().union(*TABLES_BY_MIGRATION.values())
SHIPPED = [m.version for m in load_migrations()]


def make_order(coid: str = "tl-1", **changes: object) -> Order:
    order = Order(
        client_order_id=ClientOrderId(coid),
        symbol="ARB/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=BIG,
        price=Decimal("0.00000001"),
        created_at=T0,
        strategy_id=StrategyId("token_unlock"),
        exchange="binance",
        mode=Mode.PAPER,
    )
    return replace(order, **changes)  # type: ignore[arg-type]


def make_fill(trade_id: str, coid: str = "tl-1", qty: str = "1.5", at: datetime = T0) -> Fill:
    return Fill(
        trade_id=trade_id,
        client_order_id=ClientOrderId(coid),
        symbol="ARB/USDT",
        side=Side.BUY,
        quantity=Decimal(qty),
        price=BIG,
        fee=Decimal("0.00000123"),
        fee_currency="USDT",
        timestamp=at,
        is_maker=True,
    )


def make_position(**changes: object) -> Position:
    position = Position(
        strategy_id=StrategyId("token_unlock"),
        exchange="binance",
        symbol="ARB/USDT",
        side=Side.BUY,
        quantity=Decimal("100.5"),
        average_entry=BIG,
        opened_at=T0,
        stop_loss=Decimal("0.98765432"),
        take_profit=Decimal("1.05"),
        fees=Decimal("0.1"),
    )
    return replace(position, **changes)  # type: ignore[arg-type]


# -- migrations -------------------------------------------------------------------------------


def test_migrations_from_empty_create_every_table_once(store_url: str) -> None:
    with open_store(store_url, migrate=False) as fresh:
        assert fresh.schema_version() == 0
        assert fresh.pending_migrations() == SHIPPED
        assert fresh.health()["ok"] is False
        assert fresh.migrate() == SHIPPED
        assert sorted(TABLES_BY_MIGRATION) == SHIPPED  # every migration's tables are listed
        assert set(fresh.table_names()) == ALL_TABLES
        assert fresh.schema_version() == SHIPPED[-1]
        assert fresh.pending_migrations() == []
        assert fresh.migrate() == []  # second run is a no-op
        rows = fresh._query("SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")
        assert [r[0] for r in rows] == SHIPPED and rows[0][1] == "initial"
        assert rows[0][2].tzinfo is not None
        health = fresh.health()
        assert health["ok"] is True and health["schema_version"] == SHIPPED[-1]

        # A newer tradelib migrated further: this one must refuse rather than guess.
        fresh._query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', ?)",
            (T0,),
        )
        with pytest.raises(StoreError, match=r"migrations \[999\] that this tradelib"):
            fresh.migrate()
        assert fresh.health()["ok"] is False


# -- strategies and execution state ---------------------------------------------------------


def test_strategy_round_trip(store: Store) -> None:
    sid = store.ensure_strategy("token_unlock", {"stop": Decimal("0.02"), "at": T0}, "front-run")
    assert store.ensure_strategy("token_unlock", {"ignored": 1}) == sid
    record = store.get_strategy("token_unlock")
    assert record is not None and record.id == sid and record.is_active
    # Decimal and datetime travel as exact strings inside JSON.
    assert record.parameters == {"stop": "0.02", "at": T0.isoformat()}
    assert record.created_at.tzinfo is UTC
    store.set_strategy_parameters("token_unlock", {"stop": Decimal("0.03")})
    store.set_strategy_active("token_unlock", False)
    changed = store.get_strategy("token_unlock")
    assert changed is not None
    assert changed.parameters == {"stop": "0.03"} and not changed.is_active
    assert store.get_strategy("missing") is None
    with pytest.raises(StoreError, match="ensure_strategy"):
        store.set_strategy_parameters("missing", {})


def test_execution_state_round_trip(store: Store) -> None:
    state = ExecutionState(
        strategy="token_unlock",
        is_running=True,
        last_execution=T0.astimezone(CET),
        total_trades=7,
        winning_trades=4,
        losing_trades=3,
        consecutive_losses=2,
        total_pnl=BIG,
        daily_pnl=Decimal("-12.34567891"),
        daily_pnl_date=date(2024, 3, 1),
        peak_equity=Decimal("10000.00000001"),
        max_drawdown=Decimal("0.05"),
        sharpe_ratio=Decimal("1.23456789"),
        state={"cooldown_until": T0, "notes": ["a", "b"]},
        updated_at=T0,
    )
    store.save_execution_state(state)
    loaded = store.load_execution_state("token_unlock")
    assert loaded == replace(
        state,
        last_execution=T0,
        state={"cooldown_until": T0.isoformat(), "notes": ["a", "b"]},
    )
    assert loaded is not None and loaded.last_execution is not None
    assert loaded.last_execution.tzinfo is UTC
    store.save_execution_state(replace(state, consecutive_losses=0, is_running=False))
    again = store.load_execution_state("token_unlock")
    assert again is not None and again.consecutive_losses == 0 and not again.is_running
    assert store.load_execution_state("token_unlock", Mode.LIVE) is None


# -- orders -----------------------------------------------------------------------------------


def test_order_round_trip_is_exact(store: Store) -> None:
    order = make_order(created_at=T0.astimezone(CET), reason="unlock in 3 days")
    intent = {"size": BIG, "at": T0, "why": "unlock", "n": 3}
    row_id = store.insert_order(order, intent=intent)
    assert row_id > 0
    loaded = store.get_order("tl-1")
    assert loaded == replace(order, created_at=T0, updated_at=T0)
    assert loaded is not None
    assert str(loaded.quantity) == "12345678.12345678"
    assert loaded.created_at.tzinfo is UTC
    assert store.get_order_intent("tl-1") == {
        "size": "12345678.12345678",
        "at": T0.isoformat(),
        "why": "unlock",
        "n": 3,
    }
    assert store.get_order("nope") is None


def test_duplicate_client_order_id_is_refused_and_loses_nothing(store: Store) -> None:
    store.insert_order(make_order())
    with pytest.raises(DuplicateOrder, match="tl-1 is already in the store"):
        store.insert_order(make_order(quantity=Decimal(1)))
    kept = store.get_order("tl-1")
    assert kept is not None and kept.quantity == BIG
    assert len(store.list_orders()) == 1


def test_order_moves_forward_and_never_backwards(store: Store) -> None:
    order = make_order()
    store.insert_order(order)
    opened = order.transition(OrderStatus.OPEN, T0 + timedelta(seconds=1))
    opened = replace(opened, exchange_order_id=ExchangeOrderId("123"))
    store.update_order(opened)
    half = opened.apply_fill(make_fill("t1", qty="6172839.06172839"))
    store.update_order(half)
    stored = store.get_order("tl-1")
    assert stored is not None
    assert stored.status is OrderStatus.PARTIALLY_FILLED
    assert stored.filled_quantity == Decimal("6172839.06172839")
    assert stored.exchange_order_id == "123"
    assert stored.fee == Decimal("0.00000123")

    with pytest.raises(IllegalTransition, match="partially_filled in the store"):
        store.update_order(replace(half, status=OrderStatus.OPEN))
    with pytest.raises(IllegalTransition, match="backwards"):
        store.update_order(replace(half, filled_quantity=Decimal(1)))

    done = replace(half, status=OrderStatus.FILLED, filled_quantity=BIG, updated_at=T0)
    store.update_order(done)
    with pytest.raises(IllegalTransition):
        store.update_order(replace(done, status=OrderStatus.CANCELLED))
    final = store.get_order("tl-1")
    assert final is not None and final.status is OrderStatus.FILLED
    filled_at = store._one("SELECT filled_at FROM live_orders WHERE client_order_id = 'tl-1'")
    assert filled_at is not None and filled_at[0] == T0
    with pytest.raises(StoreError, match="insert_order"):
        store.update_order(make_order("unknown"))


def test_a_refilled_order_keeps_its_first_fill_time_and_a_refused_move_changes_nothing(
    store: Store,
) -> None:
    # update_order writes the usual move in one statement; a second FILLED save, and moves the
    # store refuses, go through the locked read: the row ends exactly as the one path left it.
    order = make_order("tl-2")
    store.insert_order(order)
    done = replace(order, status=OrderStatus.FILLED, filled_quantity=BIG, updated_at=T0)
    store.update_order(done)
    later = T0 + timedelta(hours=1)
    store.update_order(replace(done, fee=Decimal("0.5"), updated_at=later))
    row = store._one(
        "SELECT filled_at, updated_at, fee FROM live_orders WHERE client_order_id = 'tl-2'"
    )
    assert row is not None and (row[0], row[1], row[2]) == (T0, later, Decimal("0.5"))
    with pytest.raises(IllegalTransition, match="backwards"):
        store.update_order(replace(done, filled_quantity=Decimal(1), updated_at=later))
    with pytest.raises(IllegalTransition, match="filled in the store"):
        store.update_order(replace(done, status=OrderStatus.OPEN, updated_at=later))
    assert store.get_order("tl-2") == replace(done, fee=Decimal("0.5"), updated_at=later)
    with pytest.raises(DuplicateOrder, match="already in the store"):
        store.insert_order(order)  # the one-statement insert fails alone; nothing is written
    assert [o.client_order_id for o in store.list_orders()] == ["tl-2"]


def test_a_control_set_by_another_handle_is_read_at_once(store_url: str) -> None:
    # Control reads are served from one read of every control while the store's change token
    # stands still (DuckDB); a commit through any handle must show in the very next read.
    with open_store(store_url) as reader, open_store(store_url) as writer:
        assert reader.get_control("kill_switch") is None
        for engaged in (True, False, True):
            writer.set_control("kill_switch", {"engaged": engaged}, T0, "test")
            assert reader.get_control("kill_switch") == {"engaged": engaged}
        with writer.transaction():
            writer.set_control("breakers", {"n": 1}, T0, "test")
            writer.set_control("kill_switch", {"engaged": False}, T0, "test")
        assert reader.get_control("breakers") == {"n": 1}
        assert reader.get_control("kill_switch") == {"engaged": False}


def test_list_orders_filters(store: Store) -> None:
    store.insert_order(make_order("a"))
    store.insert_order(make_order("b", symbol="ETH/USDT", created_at=T0 + timedelta(1)))
    store.insert_order(make_order("c", mode=Mode.LIVE, strategy_id=StrategyId("other")))
    store.update_order(replace(make_order("b", symbol="ETH/USDT"), status=OrderStatus.CANCELLED))
    ids = lambda orders: [o.client_order_id for o in orders]  # noqa: E731
    assert ids(store.list_orders()) == ["a", "c", "b"]
    assert ids(store.list_orders(statuses=[OrderStatus.PENDING])) == ["a", "c"]
    assert ids(store.list_orders(statuses=["cancelled"])) == ["b"]
    assert ids(store.list_orders(mode="live")) == ["c"]
    assert ids(store.list_orders(strategy="token_unlock", symbol="ETH/USDT")) == ["b"]
    assert store.list_orders(statuses=[]) == []
    with pytest.raises(DataError, match="mode"):
        store.list_orders(mode="real")


# -- fills --------------------------------------------------------------------------------------


def test_fills_are_recorded_once(store: Store) -> None:
    first = make_fill("t1", at=T0.astimezone(CET))
    assert store.record_fill(first, "binance", Mode.PAPER) is True
    assert store.record_fill(first, "binance", Mode.PAPER) is False
    assert store.record_fill(first, "kraken", Mode.PAPER) is True  # ids are per exchange
    store.record_fill(make_fill("t2", coid="tl-2", at=T0 + timedelta(1)), "binance", "live")
    fills = store.list_fills(client_order_id="tl-1", exchange="binance")
    assert fills == [replace(first, timestamp=T0)]
    assert fills[0].price == BIG and fills[0].fee == Decimal("0.00000123")
    assert [f.trade_id for f in store.list_fills(since=T0 + timedelta(hours=1))] == ["t2"]
    assert [f.trade_id for f in store.list_fills(mode=Mode.LIVE)] == ["t2"]
    assert len(store.list_fills()) == 3


# -- change token -------------------------------------------------------------------------------


def _token_after(reader: Store, before: int) -> int:
    """The reader's change token once it differs from `before` (PostgreSQL delivers a commit's
    notification a moment later); `before` itself if nothing arrives within 20 s."""
    for _ in range(400):
        token = reader.change_token()
        if token != before:
            return token
        time.sleep(0.05)
    return before


def test_every_lone_write_moves_another_stores_change_token(store_url: str) -> None:
    writer, reader = open_store(store_url), open_store(store_url)
    try:
        order = make_order("tl-tok")
        writes: dict[str, Callable[[], object]] = {
            "insert_order": lambda: writer.insert_order(order),
            "update_order": lambda: writer.update_order(order.transition(OrderStatus.OPEN, T0)),
            "record_fill": lambda: writer.record_fill(
                make_fill("t-tok", coid="tl-tok"), "binance", Mode.PAPER
            ),
            "set_control, first": lambda: writer.set_control("k", {"v": 1}, T0, "test"),
            "set_control, again": lambda: writer.set_control("k", {"v": 2}, T0, "test"),
            "upsert_balance": lambda: writer.upsert_balance(
                Balance("binance", "USDT", Decimal(5), Decimal(0)), Mode.PAPER
            ),
        }
        for name, write in writes.items():
            before = reader.change_token()
            write()
            assert _token_after(reader, before) != before, f"{name} was not seen by the reader"
        assert reader.get_control("k") == {"v": 2}
        assert [b.total for b in reader.list_balances(Mode.PAPER).values()] == [Decimal(5)]
    finally:
        writer.close()
        reader.close()


@pytest.mark.postgres
def test_a_write_that_changes_nothing_notifies_nobody(pg_store_url: str) -> None:
    # Notifications from every session arrive in commit order: once the test's own marker
    # (sent after the quiet writes) is in, any notification those writes sent is in too.
    schema = pg_store_url.rsplit("schema=", 1)[1]
    writer = open_store(pg_store_url)
    fill = make_fill("t-q", coid="tl-quiet", qty=str(BIG))
    try:
        order = make_order("tl-quiet")
        writer.insert_order(order)
        writer.record_fill(fill, "binance", "paper")
        writer.update_order(order.apply_fill(fill))
        with psycopg.connect(PG_URL, autocommit=True) as listener:
            listener.execute("LISTEN tradelib_changes")
            listener.execute("LISTEN test_marker")
            assert writer.record_fill(fill, "binance", "paper") is False
            with pytest.raises(IllegalTransition):
                writer.update_order(order.transition(OrderStatus.OPEN, T0))
            writer.set_control("after", {"v": 1}, T0, "test")  # a real write: one notification
            with psycopg.connect(PG_URL, autocommit=True) as other:
                other.execute("NOTIFY test_marker")
            channels = []
            for note in listener.notifies(timeout=20):
                if note.channel == "test_marker":
                    break
                if note.payload == schema:
                    channels.append(note.channel)
            else:
                pytest.fail("the marker notification did not arrive within 20 s")
        assert channels == ["tradelib_changes"]
    finally:
        writer.close()


# -- positions and balances ---------------------------------------------------------------------


def test_positions_one_open_row_and_closed_history(store: Store) -> None:
    position = make_position()
    first = store.upsert_position(position, current_price=Decimal("12345679.12345678"))
    moved = replace(position, quantity=Decimal("50.25"), high_water=Decimal("1.1"))
    assert store.upsert_position(moved) == first
    assert store.list_positions(Mode.PAPER) == [moved]
    [record] = store.list_position_records(Mode.PAPER)
    assert record.id == first and record.position == moved
    assert record.current_price == Decimal("12345679.12345678")  # kept when no price is given
    # unrealized P&L follows the new quantity at the kept price: 1 * 50.25
    assert record.unrealized_pnl == Decimal("50.25")
    store.upsert_position(moved, current_price=BIG - 2, at=T0 + timedelta(hours=1))
    [record] = store.list_position_records(Mode.PAPER)
    assert record.unrealized_pnl == Decimal("-100.5")
    assert record.updated_at == T0 + timedelta(hours=1)

    closed = replace(
        moved, status=PositionStatus.CLOSED, closed_at=T0 + timedelta(1), realized_pnl=BIG
    )
    assert store.upsert_position(closed) == first
    assert store.upsert_position(closed) == first  # re-saving history is idempotent
    assert store.list_positions(Mode.PAPER) == []
    reopened = make_position(opened_at=T0 + timedelta(2))
    second = store.upsert_position(reopened)
    assert second != first
    assert store.list_positions("paper") == [reopened]
    assert store.list_positions("paper", include_closed=True) == [closed, reopened]
    assert store.list_positions("live") == []
    assert store.list_positions("paper", strategy="other") == []


def test_referenced_rows_stay_updatable_inside_one_transaction(store: Store) -> None:
    # DuckDB once checked unique and foreign keys over-eagerly on UPDATE; this pins it down.
    with store.transaction():
        position_id = store.upsert_position(make_position())
        order = make_order()
        store.insert_order(order, position_id=position_id)
        opened = order.transition(OrderStatus.OPEN, T0)
        store.update_order(opened)
        store.update_order(opened.transition(OrderStatus.CANCELLED, T0))
        store.upsert_position(make_position(quantity=Decimal(1)))
        store.set_strategy_parameters("token_unlock", {"v": 2})
    with pytest.raises(DataError, match="position 999999 is not in the store"):
        store.insert_order(make_order("orphan"), position_id=999999)
    closed = make_position(status=PositionStatus.CLOSED, closed_at=T0 + timedelta(1))
    assert store.upsert_position(closed) == position_id
    stored = store.get_order("tl-1")
    assert stored is not None and stored.status is OrderStatus.CANCELLED
    strategy = store.get_strategy("token_unlock")
    assert strategy is not None and strategy.parameters == {"v": 2}


def test_balances_upsert_by_mode_exchange_asset(store: Store) -> None:
    store.upsert_balance(Balance("binance", "USDT", BIG, Decimal("1")), Mode.PAPER, usd_value=BIG)
    store.upsert_balance(Balance("binance", "USDT", Decimal("5"), Decimal("0.5")), Mode.PAPER)
    store.upsert_balance(Balance("binance", "ARB", Decimal("7")), Mode.PAPER)
    store.upsert_balance(Balance("binance", "USDT", Decimal("100")), Mode.LIVE)
    paper = store.list_balances(Mode.PAPER, exchange="binance")
    assert paper == {
        "ARB": Balance("binance", "ARB", Decimal("7")),
        "USDT": Balance("binance", "USDT", Decimal("5"), Decimal("0.5")),
    }
    assert store.list_balances("live") == {"binance:USDT": Balance("binance", "USDT", Decimal(100))}
    row = store._one(
        "SELECT total, usd_value FROM account_balances WHERE mode = 'paper' AND asset = 'USDT'"
    )
    assert row == (Decimal("5.5"), None)


# -- journal tables ----------------------------------------------------------------------------


def test_events_runs_controls_round_trip(store: Store) -> None:
    first = store.append_event("order", {"qty": BIG}, T0.astimezone(CET), source="engine")
    store.append_event("alert", {"text": "hi"}, T0 + timedelta(1))
    store.append_event("order", {"qty": Decimal(2)}, T0 + timedelta(2))
    latest = store.list_events(limit=2)
    assert [e.kind for e in latest] == ["alert", "order"]
    orders = store.list_events(kind="order")
    assert orders[0].id == first and orders[0].at == T0 and orders[0].source == "engine"
    assert orders[0].payload == {"qty": "12345678.12345678"}
    assert [e.payload for e in store.list_events(since=T0 + timedelta(1))] == [
        {"text": "hi"},
        {"qty": "2"},
    ]

    run = store.start_run("daily_report", {"day": date(2024, 3, 1)}, at=T0)
    assert store.get_run(run) is not None
    store.finish_run(run, "succeeded", output_path="/runs/out.ipynb", at=T0 + timedelta(hours=1))
    failed = store.start_run("trading_cycle", {}, at=T0 + timedelta(hours=2))
    store.finish_run(failed, "failed", error="boom")
    runs = store.list_runs(limit=5)
    assert [r.id for r in runs] == [failed, run]
    done = runs[1]
    assert done.status == "succeeded" and done.parameters == {"day": "2024-03-01"}
    assert done.finished_at == T0 + timedelta(hours=1) and done.output_path == "/runs/out.ipynb"
    assert runs[0].error == "boom"
    with pytest.raises(StoreError, match="run 999999"):
        store.finish_run(999999, "failed")

    assert store.get_control("kill_switch") is None
    store.set_control("kill_switch", {"engaged": True, "at": T0}, at=T0, by="alice")
    store.set_control("kill_switch", {"engaged": False}, at=T0 + timedelta(1), by="bob")
    record = store.get_control_record("kill_switch")
    assert record is not None and record.updated_by == "bob"
    assert record.value == {"engaged": False} and record.updated_at == T0 + timedelta(1)
    assert [c.key for c in store.list_controls()] == ["kill_switch"]


def test_audit_and_api_keys_round_trip(store: Store) -> None:
    text = '{"b": 1, "a": "12.50000000"}'
    first = store.append_audit(T0, "engine", "order.sent", text, "0" * 64, "a" * 64)
    second = store.append_audit(T0, "alice", "live.on", {"x": BIG}, "a" * 64, "b" * 64)
    rows = store.list_audit()
    assert [r.id for r in rows] == [first, second]
    assert rows[0].payload_json == text  # byte for byte, so a hash over it verifies
    assert rows[0].payload == {"b": 1, "a": "12.50000000"}
    assert rows[1].payload == {"x": "12345678.12345678"}
    assert store.list_audit(after_id=first) == [rows[1]]
    last = store.last_audit()
    assert last is not None and last.hash == "b" * 64
    with pytest.raises(DataError, match="not valid JSON"):
        store.append_audit(T0, "x", "y", "{not json", "", "c" * 64)

    key_id = store.save_api_key("binance", "main", b"\x00ct", b"n1", b"sct\xff", b"n2", at=T0)
    assert store.save_api_key("binance", "main", b"ct2", b"n3", b"sct2", b"n4") == key_id
    record = store.get_api_key("binance", "main")
    assert record is not None
    assert (record.key_ciphertext, record.key_nonce) == (b"ct2", b"n3")
    assert (record.secret_ciphertext, record.secret_nonce) == (b"sct2", b"n4")
    assert "sct2" not in repr(record)
    assert [k.label for k in store.list_api_keys()] == ["main"]
    assert store.delete_api_key("binance", "main") is True
    assert store.delete_api_key("binance", "main") is False


# -- transactions and threads -----------------------------------------------------------------


def test_transaction_rolls_back_order_and_position_together(store: Store) -> None:
    with pytest.raises(RuntimeError, match="crash"), store.transaction():
        store.insert_order(make_order())
        with store.transaction():  # nested: joins the outer transaction
            store.upsert_position(make_position())
        raise RuntimeError("crash after both writes")
    assert store.get_order("tl-1") is None
    assert store.list_positions(Mode.PAPER, include_closed=True) == []

    with store.transaction():
        position_id = store.upsert_position(make_position())
        store.insert_order(make_order(), position_id=position_id)
    assert store.get_order("tl-1") is not None
    assert len(store.list_positions(Mode.PAPER)) == 1


def test_caught_database_error_still_rolls_back_the_block(store: Store) -> None:
    with pytest.raises(StoreError, match="rolled back"), store.transaction():
        store.insert_order(make_order())
        with pytest.raises(StoreError):
            store._query("INSERT INTO no_such_table VALUES (1)")
    assert store.get_order("tl-1") is None


def test_expected_refusals_do_not_spoil_the_transaction(store: Store) -> None:
    store.insert_order(make_order("first"))
    with store.transaction():
        store.insert_order(make_order("second"))
        with pytest.raises(DuplicateOrder):
            store.insert_order(make_order("first"))
    assert store.get_order("second") is not None


def test_threads_share_a_store_without_lost_updates(store: Store) -> None:
    store.set_control("counter", {"n": 0}, at=T0, by="test")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(10):
                with store.transaction():
                    store.lock("counter")
                    value = store.get_control("counter")
                    assert value is not None
                    store.set_control("counter", {"n": value["n"] + 1}, at=T0, by=str(worker))
                    store.insert_order(make_order(f"w{worker}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.get_control("counter") == {"n": 40}
    assert len(store.list_orders()) == 40


# -- candles ------------------------------------------------------------------------------------


def recorded_candles() -> pd.DataFrame:
    path = repo_data_dir() / "candles" / "1h" / "ARB_USDT-1h.feather"
    frame = pd.read_feather(path).rename(columns={"date": "open_time"})
    frame["symbol"] = "ARB/USDT"
    frame["timeframe"] = "1h"
    return frame


def test_candles_batch_write_read_and_upsert(store: Store) -> None:
    frame = recorded_candles()
    assert store.write_candles("binance", frame) == len(frame)
    back = store.read_candles("binance", "ARB/USDT", "1h")
    assert len(back) == len(frame)
    assert str(back.index.dtype).endswith("UTC]")
    assert list(back.columns) == ["open", "high", "low", "close", "volume"]
    expected = frame.set_index("open_time")[list(back.columns)].round(8)
    pd.testing.assert_frame_equal(back, expected, check_index_type=False, check_names=False)
    first, last = frame["open_time"].iloc[0], frame["open_time"].iloc[-1]
    assert store.candle_range("binance", "ARB/USDT", "1h") == (
        first.to_pydatetime(),
        last.to_pydatetime(),
    )
    assert store.candle_range("binance", "ARB/USDT", "4h") is None

    # Upsert: rewrite 10 candles with a new close, plus one duplicate key in the batch.
    patch = frame.iloc[100:110].copy()
    patch["close"] = patch["high"]
    patch = pd.concat([patch.iloc[[0]].assign(close=patch["low"].iloc[0]), patch])
    assert store.write_candles("binance", patch) == 10
    window = store.read_candles(
        "binance", "ARB/USDT", "1h", start=patch["open_time"].min(), end=patch["open_time"].max()
    )
    assert len(window) == 10  # both bounds inclusive
    assert window["close"].tolist() == patch["high"].iloc[1:].round(8).tolist()
    assert len(store.read_candles("binance", "ARB/USDT", "1h")) == len(frame)

    # What read_candles returns can be written back (open_time index, symbol/timeframe given).
    copied = store.write_candles("kraken", window, symbol="ARB/USD", timeframe="1h")
    assert copied == 10
    pd.testing.assert_frame_equal(store.read_candles("kraken", "ARB/USD", "1h"), window)


def test_candles_with_decimal_values_and_bad_input(store: Store) -> None:
    decimal_frame = pd.DataFrame(
        {
            "open_time": [T0],
            "open": [BIG],
            "high": [BIG],
            "low": [Decimal("0.00000001")],
            "close": [Decimal("1.5")],
            "volume": [Decimal("1234567890123456.12345678")],
            "symbol": ["PEPE/USDT"],
            "timeframe": ["1m"],
        }
    )
    assert store.write_candles("binance", decimal_frame) == 1
    row = store._one("SELECT open, low, volume FROM candles WHERE symbol = 'PEPE/USDT'")
    assert row == (BIG, Decimal("0.00000001"), Decimal("1234567890123456.12345678"))

    no_time = recorded_candles().drop(columns=["open_time"]).assign(date=T0)
    with pytest.raises(DataError, match="rename 'date' to 'open_time'"):
        store.write_candles("binance", no_time)
    naive = decimal_frame.assign(open_time=[datetime(2024, 1, 1)])
    with pytest.raises(DataError, match="timezone-aware"):
        store.write_candles("binance", naive)
    nan = recorded_candles().head(3)
    nan.loc[1, "close"] = float("nan")
    with pytest.raises(DataError, match="close must be a finite positive number"):
        store.write_candles("binance", nan)
    assert store.candle_range("binance", "ARB/USDT", "1h") is None  # nothing half-written


def test_bad_values_are_refused_with_the_field_named(store: Store) -> None:
    with pytest.raises(DataError, match="quantity = 1234567890123 does not fit NUMERIC"):
        store.insert_order(make_order(quantity=Decimal("1234567890123")))
    with pytest.raises(DataError, match="timezone-aware"):
        store.append_event("x", {}, datetime(2024, 1, 1))
    with pytest.raises(DataError, match="cannot store a object"):
        store.append_event("x", {"bad": object()}, T0)
    assert store.list_orders() == [] and store.list_events() == []


# -- several processes ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]

_WAIT_FOR_GO = """
import sys, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.01)
"""

_MIGRATE_WORKER = (
    "from tradelib.store import open_store\n"
    "store = open_store(sys.argv[1], migrate=False)\n" + _WAIT_FOR_GO + "print(store.migrate())\n"
    "store.close()\n"
)

_WRITE_WORKER = (
    "from dataclasses import replace\n"
    "from datetime import UTC, datetime\n"
    "from decimal import Decimal\n"
    "from tradelib.domain import Fill, OrderStatus, Side\n"
    "from tradelib.store import open_store\n"
    "store = open_store(sys.argv[1], migrate=False)\n"
    + _WAIT_FOR_GO
    + """
me, rounds = sys.argv[4], int(sys.argv[5])
for i in range(rounds):
    with store.transaction():
        order = store.get_order("shared", for_update=True)
        store.update_order(replace(order, status=OrderStatus.PARTIALLY_FILLED,
                                   filled_quantity=order.filled_quantity + Decimal("0.00000001")))
    fill = Fill(f"{me}-{i}", order.client_order_id, "ARB/USDT", Side.BUY, Decimal("0.00000001"),
                Decimal("1"), Decimal(0), "USDT", datetime.now(UTC))
    store.record_fill(fill, "binance", "paper")
store.close()
"""
)


def run_together(tmp_path: Path, script: str, args: list[list[str]]) -> list[str]:
    """Start one process per args list, release them at the same moment, return their stdout."""
    go = tmp_path / "go"
    procs = []
    readies = []
    for n, extra in enumerate(args):
        ready = tmp_path / f"ready{n}"
        readies.append(ready)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", "import sys\n" + script, *extra[:1], str(ready), str(go),
                 *extra[1:]],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )  # fmt: skip
    while not all(r.exists() for r in readies):
        if any(p.poll() is not None for p in procs):
            break  # a worker died before it was ready: its stderr says why below
        threading.Event().wait(0.01)
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    return outputs


@pytest.mark.postgres
def test_two_processes_migrating_at_once(pg_store_url: str, tmp_path: Path) -> None:
    outputs = run_together(tmp_path, _MIGRATE_WORKER, [[pg_store_url], [pg_store_url]])
    assert sorted(out.splitlines()[-1] for out in outputs) == sorted([str(SHIPPED), "[]"])
    with open_store(pg_store_url, migrate=False) as store:
        assert store.schema_version() == SHIPPED[-1]
        assert store._query("SELECT count(*) FROM schema_migrations") == [(len(SHIPPED),)]


@pytest.mark.postgres
def test_two_processes_writing_the_same_rows_lose_nothing(
    pg_store_url: str, tmp_path: Path
) -> None:
    rounds = 60
    with open_store(pg_store_url) as store:
        store.insert_order(make_order("shared", quantity=Decimal(1)))
        outputs = run_together(
            tmp_path,
            _WRITE_WORKER,
            [[pg_store_url, "a", str(rounds)], [pg_store_url, "b", str(rounds)]],
        )
        assert outputs == ["", ""]
        order = store.get_order("shared")
        assert order is not None
        assert order.filled_quantity == Decimal("0.00000001") * 2 * rounds
        assert len(store.list_fills(client_order_id="shared")) == 2 * rounds


@pytest.mark.postgres
def test_postgres_password_never_shows(pg_store_url: str) -> None:
    password = "pw-Sekret-4711"
    url = pg_store_url.replace("postgres@", f"postgres:{password}@", 1)
    assert password in url  # trust auth accepts and ignores it
    with open_store(url) as store:
        with pytest.raises(StoreError) as caught:
            store._query("SELECT * FROM no_such_table")
        shown = [repr(store), store.url, str(store.health()), str(caught.value)]
        assert all(password not in text for text in shown)
        assert "postgres:***@" in store.url
    with pytest.raises(StoreError) as unreachable:
        open_store(urlunsplit(urlsplit(url)._replace(netloc=f"u:{password}@127.0.0.1:1")))
    assert password not in str(unreachable.value)


@pytest.mark.postgres
def test_missing_postgres_database_says_how_to_create_it(pg_store_url: str) -> None:
    parts = urlsplit(pg_store_url)
    url = urlunsplit(parts._replace(path="/tl_no_such_database"))
    with pytest.raises(StoreError, match=r"createdb -h .* tl_no_such_database"):
        open_store(url)


def test_second_process_on_a_duckdb_file_uses_it_through_the_holder(duckdb_store_url: str) -> None:
    script = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from tradelib.store import open_store\n"
        "with open_store(sys.argv[1]) as store:\n"
        "    print(type(store).__name__, store.url)\n"
        "    print([e.kind for e in store.list_events()])\n"
        "    store.append_event('from-second', {}, datetime(2024, 3, 2, tzinfo=UTC))\n"
    )
    with open_store(duckdb_store_url) as store:
        store.append_event("held", {}, T0)
        result = subprocess.run(
            [sys.executable, "-c", script, duckdb_store_url],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        first, second = result.stdout.splitlines()[:2]
        assert first.startswith("RemoteStore ") and f"(served by pid {os.getpid()})" in first
        assert second == "['held']"
        assert [e.kind for e in store.list_events()] == ["held", "from-second"]


def test_a_forked_child_does_not_disturb_the_parents_store(store_url: str) -> None:
    import multiprocessing

    outcomes = []
    with open_store(store_url) as store:
        store.append_event("parent", {}, T0)
        ctx = multiprocessing.get_context("fork")
        result = ctx.Queue()
        for target in (_child_closes, _child_writes_event):
            child = ctx.Process(target=target, args=(store, result))
            child.start()
            outcomes.append(result.get(timeout=120))
            child.join()
        kinds = [e.kind for e in store.list_events()]  # the parent's session still works
    assert outcomes[0] == "closed"
    if store_url.startswith("duckdb"):
        assert outcomes[1].startswith("StoreError: this DuckDB store was opened by process")
        assert kinds == ["parent"]
    else:
        assert outcomes[1] == "ok"
        assert kinds == ["parent", "child"]


def _child_closes(store: Store, result: Any) -> None:
    store.close()  # must leave the parent's sessions and file alone
    gc.collect()
    result.put("closed")


def _child_writes_event(store: Store, result: Any) -> None:
    try:
        store.append_event("child", {}, T0 + timedelta(1))
        store.close()
        result.put("ok")
    except StoreError as exc:
        result.put(f"StoreError: {exc}")
