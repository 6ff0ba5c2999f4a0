"""The dashboard in one process, the paper engine holding the DuckDB file in another.

The default store is a DuckDB file; the engine's process holds it and serves it to the
dashboard's process (tradelib's store sharing). The dashboard must see the engine's
positions and heartbeat, and its emergency stop must empty the book on the emulator while
the engine hangs — the engine's process keeps serving the store from its own thread.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from dashboard_rig import processes, start_rig, until  # noqa: F401  (fixture)

from tradelib.config import Settings
from tradelib.control import KILL_CONTROL
from tradelib.domain import Mode, OrderStatus
from widgets import Dashboard

pytestmark = pytest.mark.slow


def test_dashboard_follows_and_stops_an_engine_that_holds_the_duckdb_file(
    tmp_path: Path,
    processes: list[subprocess.Popen[Any]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_url = f"duckdb:///{tmp_path / 'tradelib.duckdb'}"
    rig = start_rig(store_url, tmp_path, processes, monkeypatch)
    dash = Dashboard(store_url, settings=Settings(store_url=store_url), operator="ops",
                     paper_venue_url=rig.venue, start=False)  # fmt: skip
    try:
        until(lambda: (dash.refresh(), dash.connection.ok)[1], "the dashboard to read the store")
        snap = dash.snapshot
        assert snap is not None and snap.status.engine_alive
        assert {p.symbol for p in snap.positions} == {"ARB/USDT", "OP/USDT"}
        assert len(snap.open_orders) == 2 and snap.valuation is not None

        rig.freeze_engine()
        report = dash.actions.emergency_stop(Mode.PAPER, flatten=False, reason="drill")
        assert report.error is None and not report.failed, report.summary()
        assert rig.open_on_venue() == []  # the emulator's own book
        dash.refresh()
        snap = dash.snapshot
        assert snap is not None and snap.open_orders == ()
        assert snap.status.kill.engaged and snap.status.kill.by == "ops"
        store = dash.actions.store
        assert (store.get_control(KILL_CONTROL) or {}).get("reason") == "drill"
        cancelled = store.list_orders(statuses=[OrderStatus.CANCELLED], mode=Mode.PAPER)
        assert len(cancelled) == 2
    finally:
        dash.close()
