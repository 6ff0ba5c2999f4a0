"""Store sharing without processes: socket paths, frames, errors on the wire, the session."""

from __future__ import annotations

import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradelib.errors import (
    DataError,
    DuplicateOrder,
    StoreError,
    StoreLocked,
    StoreUnavailable,
    Temporary,
    TradelibError,
)
from tradelib.store import RemoteStore, Store, open_store
from tradelib.store import share_wire as wire
from tradelib.store.share_client import _KEPT
from tradelib.store.share_server import Session, served_methods

T0 = datetime(2024, 3, 1, tzinfo=UTC)


# -- where the socket lives -------------------------------------------------------------------


def test_socket_path_is_short_private_and_the_same_for_every_spelling(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 12)
    deep.mkdir(parents=True)
    db = deep / "tradelib.duckdb"
    path = wire.socket_path(str(db))
    assert len(str(db)) > 300 and len(path.encode()) < 100  # AF_UNIX allows ~107 bytes
    assert os.path.dirname(path) == f"/tmp/tradelib-{os.getuid()}"
    link = tmp_path / "link"
    link.symlink_to(deep)
    assert wire.socket_path(str(link / "tradelib.duckdb")) == path
    assert wire.socket_path(str(deep / "other.duckdb")) != path


def test_private_dir_is_created_0700_and_anything_else_is_refused(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    wire.ensure_private_dir(str(fresh))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    wire.ensure_private_dir(str(fresh))  # twice is fine

    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    with pytest.raises(StoreError, match="mode 0755; store sockets need a folder of uid"):
        wire.ensure_private_dir(str(loose))

    pointer = tmp_path / "pointer"
    pointer.symlink_to(fresh)
    with pytest.raises(StoreError, match="is a non-folder"):
        wire.ensure_private_dir(str(pointer))


# -- frames -----------------------------------------------------------------------------------


def test_frames_round_trip_and_a_bad_one_leaves_the_line_in_step() -> None:
    a, b = socket.socketpair()
    with a, b:
        wire.send(a, ("call", ("get_order", ("x",), {})))
        assert wire.receive(b) == ("call", ("get_order", ("x",), {}))
        wire.send_frame(a, b"\x80\x05not a pickle")
        wire.send(a, "next")
        with pytest.raises(wire.Undecodable):
            wire.receive(b)
        assert wire.receive(b) == "next"


def test_silence_partial_frames_and_closed_peers_are_told_apart() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.05)
        with pytest.raises(TimeoutError):  # nothing arrived: an idle peer
            wire.receive(b)
        a.sendall((100).to_bytes(8, "big") + b"abc")  # 3 of 100 bytes, then nothing
        with pytest.raises(wire.PeerGone, match="stalled in the middle"):
            wire.receive(b)
    c, d = socket.socketpair()
    d.close()
    with c, pytest.raises(wire.NotDelivered):
        wire.send(c, "hello?")


# -- errors -----------------------------------------------------------------------------------


def _through_the_wire(exc: BaseException) -> TradelibError:
    ok, info = wire.decode(wire.answer(False, wire.describe(exc)))
    assert ok is False
    return wire.rebuild(info)


def test_tradelib_errors_arrive_as_the_same_class_with_the_same_message() -> None:
    for original in (
        DuplicateOrder("order tl-1 is already in the store"),
        DataError("mode must be 'paper' or 'live', got 'moon'"),
        StoreLocked("the DuckDB store /x is in use by process 7 (python)"),
        StoreUnavailable("process 7 went away"),
    ):
        arrived = _through_the_wire(original)
        assert type(arrived) is type(original) and str(arrived) == str(original)
    assert isinstance(_through_the_wire(StoreUnavailable("gone")), Temporary)


def test_odd_exceptions_arrive_as_a_clear_store_error() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Heavy(TradelibError):  # not importable by name: defined inside a test
        def __init__(self, message: str, lock: object) -> None:
            super().__init__(message)
            self.lock = lock

    cases = [
        (ValueError("bad value"), "ValueError in the process that serves the store: bad value"),
        (Unprintable(), "Unprintable in the process that serves the store: <a"),
        (Heavy("x", socket.socket()), "Heavy in the process that serves the store: x"),
    ]
    for original, text in cases:
        arrived = _through_the_wire(original)
        assert type(arrived) is StoreError and str(arrived).startswith(text), arrived
    garbled = wire.rebuild("not a dict")
    assert isinstance(garbled, StoreError) and "cannot read" in str(garbled)
    outside = wire.rebuild({"module": "os", "name": "system", "message": "rm"})
    assert type(outside) is StoreError  # a peer never makes us import or call anything else


def test_a_result_that_cannot_be_pickled_becomes_an_error_not_a_broken_line() -> None:
    ok, info = wire.decode(wire.answer(True, lambda: None))
    assert ok is False
    error = wire.rebuild(info)
    assert isinstance(error, StoreError) and "cannot send a function over the socket" in str(error)


# -- the interface and the session ------------------------------------------------------------


def test_remote_store_forwards_every_public_store_method() -> None:
    public = {n for n in dir(Store) if not n.startswith("_") and callable(getattr(Store, n))}
    assert served_methods() == public - {"close", "transaction", "migrate"}
    for name in sorted(public):
        mine, base = getattr(RemoteStore, name), getattr(Store, name)
        assert mine is not base or name in _KEPT, f"RemoteStore.{name} is the local implementation"


def test_session_holds_one_transaction_and_reports_an_owner_side_rollback() -> None:
    store = open_store("duckdb:///:memory:")
    try:
        session = Session(store)
        session.handle("begin", ())
        session.handle("call", ("append_event", ("inside", {}, T0), {}))
        with pytest.raises(StoreError, match="begin inside an open transaction"):
            session.handle("begin", ())
        session.abort("the client was idle for more than 10 s")
        assert store.list_events() == []  # rolled back, and the lock is free again
        for _ in range(2):  # until the client ends its block, every call in it is refused
            with pytest.raises(StoreError, match="transaction rolled back: the client was idle"):
                session.handle("call", ("append_event", ("late", {}, T0), {}))
        with pytest.raises(StoreError, match="transaction rolled back"):
            session.handle("commit", ())
        assert store.list_events() == []

        session.handle("begin", ())
        session.handle("call", ("append_event", ("kept", {}, T0), {}))
        session.handle("commit", ())
        assert [e.kind for e in store.list_events()] == ["kept"]
        with pytest.raises(StoreError, match="'close' is not a store method this owner serves"):
            session.handle("call", ("close", (), {}))
        with pytest.raises(StoreError, match="unknown store request 'drop'"):
            session.handle("drop", ())
    finally:
        store.close()
