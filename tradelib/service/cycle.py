"""One engine cycle now, the way a scheduled production notebook runs it.

    report = await run_cycle(settings, StrategyConfig(params_file="params.json"))

The same engine as `tradelib run` (same lock, venue, reconciliation, kill switch, commands,
pause and limit overrides), for exactly one cycle: a notebook started by the scheduler every
hour trades like the service would, and refuses to run while a service already trades the
account. Live mode needs a second factor like the service (a TOTP code or an unused go-live
grant), which makes it unsuited to unattended schedules: run live accounts with `tradelib run`.
"""

from __future__ import annotations

from tradelib.config import Settings
from tradelib.domain import Mode
from tradelib.engine.core import CycleReport
from tradelib.errors import CycleHalted
from tradelib.service.clock import MarketClock, market_clock
from tradelib.service.runner import service_actor
from tradelib.service.session import EngineSession, Outcome
from tradelib.service.setup import StrategyConfig
from tradelib.store import open_store

KILL_HALT = "kill switch engaged"  # Engine.run_once's report while the switch holds it


async def run_cycle(
    settings: Settings,
    config: StrategyConfig | None = None,
    *,
    mode: Mode = Mode.PAPER,
    totp_code: str | None = None,
    clock: MarketClock | None = None,
    fail_on_halt: bool = True,
) -> CycleReport:
    """Lock the account, reconcile, run one cycle, persist, beat 'stopped'; returns the report.

    With `fail_on_halt`, a cycle that could not trade (exchange unavailable, reconciliation
    failed) raises CycleHalted after everything is persisted, so the scheduled run is recorded
    as failed and alerted; a cycle held by the kill switch is the switch working, not a failure.
    """
    store = open_store(settings.store_url)
    try:
        session = EngineSession(
            settings, store, config or StrategyConfig(), mode, clock or market_clock(settings),
            service_actor(), totp_code,
        )  # fmt: skip
        await session.open(purpose="trading-cycle notebook", streams=False)
        outcome = Outcome("one cycle done (scheduled notebook)")
        try:
            report = await session.cycle_once()
        except BaseException as exc:
            outcome = Outcome(f"cycle failed: {exc}", failed=True)
            raise
        finally:
            await session.close(outcome)
    finally:
        store.close()
    if fail_on_halt and report.halted and report.halted != KILL_HALT:
        raise CycleHalted(f"the trading cycle at {report.at.isoformat()} did not trade: "
                          f"{report.halted}")  # fmt: skip
    return report
