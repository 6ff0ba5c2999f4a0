"""Persistent state: one `Store` interface, DuckDB (embedded default) and PostgreSQL backends.

    store = open_store()                                   # $TRADELIB_STORE_URL or user DuckDB
    store = open_store("duckdb:///:memory:")
    store = open_store("postgresql://postgres@127.0.0.1:5432/test?schema=paper")
    with store.transaction():                              # one atomic unit, nests
        store.insert_order(order, intent)
        store.upsert_position(position)

Backends register by URL scheme (`register_backend`). Decimals are NUMERIC(20,8), rounded
half-even to 8 places on write; times come back aware UTC; JSON columns store Decimal and
datetime as strings (see tradelib.store.records).

Several processes on one DuckDB file: the process that opened it serves it to the others over
a Unix socket, and `open_store` elsewhere returns a `RemoteStore` that calls into that owner
(tradelib.store.share_server / share_client). `store.change_token()` on any store is a number
that changes after every committed write, for dashboards that poll instead of re-reading.
"""

from tradelib.store import postgres_store as _postgres_store  # noqa: F401  (registers postgresql://)
from tradelib.store import share_client as _share_client  # noqa: F401  (registers duckdb://)
from tradelib.store.base import STORE_URL_ENV, Store, candle_frame, open_store, prepare_candles
from tradelib.store.core import redact_url, register_backend, registered_schemes
from tradelib.store.duckdb_store import DuckDBStore
from tradelib.store.postgres_store import PostgresStore
from tradelib.store.records import (
    ApiKeyRecord,
    AuditAnchorRecord,
    AuditRecord,
    CommandKind,
    CommandRecord,
    CommandStatus,
    ControlRecord,
    EngineState,
    EventRecord,
    ExecutionState,
    HeartbeatRecord,
    Liveness,
    PositionRecord,
    RunRecord,
    RunStatus,
    StrategyRecord,
    decode_json,
    encode_json,
)
from tradelib.store.security import KeyCheckRecord, TotpUseRecord
from tradelib.store.share_client import RemoteStore

__all__ = [
    "STORE_URL_ENV",
    "ApiKeyRecord",
    "AuditAnchorRecord",
    "AuditRecord",
    "CommandKind",
    "CommandRecord",
    "CommandStatus",
    "ControlRecord",
    "DuckDBStore",
    "EngineState",
    "EventRecord",
    "ExecutionState",
    "HeartbeatRecord",
    "KeyCheckRecord",
    "Liveness",
    "PositionRecord",
    "PostgresStore",
    "RemoteStore",
    "RunRecord",
    "RunStatus",
    "Store",
    "StrategyRecord",
    "TotpUseRecord",
    "candle_frame",
    "decode_json",
    "encode_json",
    "open_store",
    "prepare_candles",
    "redact_url",
    "register_backend",
    "registered_schemes",
]
