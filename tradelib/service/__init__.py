"""The engine as a service: `tradelib run` and the trading cycle of a scheduled notebook.

`runner` keeps one account's engine running (and switches it between paper and live),
`session` is one engine from lock to "stopped", `live` is what live trading needs first,
`venue` opens the paper or live venue, `setup` says what the engine trades, `commands`
carries out what people ask a running engine to do, `heartbeat` tells everyone it is alive,
`clock` is the market's clock, `cycle` is one cycle for a notebook.
"""

from tradelib.service.heartbeat import STALE_AFTER_SECONDS, TICK_SECONDS, describe_heartbeat
from tradelib.service.runner import EngineService, run_service
from tradelib.service.setup import StrategyConfig

__all__ = [
    "STALE_AFTER_SECONDS",
    "TICK_SECONDS",
    "EngineService",
    "StrategyConfig",
    "describe_heartbeat",
    "run_service",
]
