"""The store's own tests again, against a `RemoteStore`: another process owns each DuckDB file.

Every test below is imported from test_store.py / test_operations.py and runs here with the
`store` fixture replaced: a helper process opens (owns and serves) a fresh file per test, and
this process gets the store through `open_store`, as a second process would. Same assertions,
same error classes and messages, one transport more.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_operations import (  # noqa: F401  (collected here with the remote `store` fixture)
    test_commands_are_claimed_once_expire_and_end_once,
    test_heartbeat_is_one_row_per_account_and_says_alive_stale_or_stopped,
)
from test_store import (  # noqa: F401  (collected here with the remote `store` fixture)
    test_audit_and_api_keys_round_trip,
    test_bad_values_are_refused_with_the_field_named,
    test_balances_upsert_by_mode_exchange_asset,
    test_candles_batch_write_read_and_upsert,
    test_candles_with_decimal_values_and_bad_input,
    test_caught_database_error_still_rolls_back_the_block,
    test_duplicate_client_order_id_is_refused_and_loses_nothing,
    test_events_runs_controls_round_trip,
    test_execution_state_round_trip,
    test_expected_refusals_do_not_spoil_the_transaction,
    test_fills_are_recorded_once,
    test_list_orders_filters,
    test_order_moves_forward_and_never_backwards,
    test_order_round_trip_is_exact,
    test_positions_one_open_row_and_closed_history,
    test_referenced_rows_stay_updatable_inside_one_transaction,
    test_strategy_round_trip,
    test_threads_share_a_store_without_lost_updates,
    test_transaction_rolls_back_order_and_position_together,
)

from tradelib.store import RemoteStore, Store, open_store

ROOT = Path(__file__).resolve().parents[2]
_HOLDER = """
import sys
from tradelib.store import open_store
stores = {}
for line in sys.stdin:
    verb, url = line.split()
    if verb == "open":
        stores[url] = open_store(url)
    else:
        stores.pop(url).close()
    print(">> done", flush=True)
"""


class Holder:
    """One process that opens and closes DuckDB files on request (and so serves them)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def do(self, verb: str, url: str) -> None:
        """Open or close `url` in the holder and wait until it is done."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{verb} {url}\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(">> "):
                return
        raise AssertionError(f"the holder exited with {self.proc.wait(120)}")


@pytest.fixture(scope="module")
def holder() -> Iterator[Holder]:
    """The owning process shared by this module's tests."""
    running = Holder()
    try:
        yield running
    finally:
        assert running.proc.stdin is not None
        running.proc.stdin.close()
        running.proc.wait(120)


@pytest.fixture
def store(holder: Holder, tmp_path: Path) -> Iterator[Store]:
    """A migrated store whose file another process owns: a RemoteStore."""
    url = f"duckdb:///{tmp_path / 'remote.duckdb'}"
    holder.do("open", url)
    remote = open_store(url)
    assert isinstance(remote, RemoteStore)
    try:
        yield remote
    finally:
        remote.close()
        holder.do("close", url)
