"""Strategies and their execution state (trading_strategies, strategy_execution_state)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tradelib.domain import Mode
from tradelib.errors import DataError, StoreError
from tradelib.store.core import Row, StoreCore
from tradelib.store.records import (
    ExecutionState,
    StrategyRecord,
    as_mode,
    db_number,
    decode_json,
    encode_json,
    now_utc,
    utc_in,
    utc_out,
)

_STRATEGY_COLUMNS = "id, name, description, parameters, is_active, created_at, updated_at"
_EXECUTION_STATE_COLUMNS = (
    "strategy_id", "mode", "is_running", "last_execution", "total_trades", "winning_trades",
    "losing_trades", "consecutive_losses", "total_pnl", "daily_pnl", "daily_pnl_date",
    "peak_equity", "max_drawdown", "sharpe_ratio", "state", "updated_at",
)  # fmt: skip
_STATE_COLUMNS = (
    "s.name, e.mode, e.is_running, e.last_execution, e.total_trades, e.winning_trades, "
    "e.losing_trades, e.consecutive_losses, e.total_pnl, e.daily_pnl, e.daily_pnl_date, "
    "e.peak_equity, e.max_drawdown, e.sharpe_ratio, e.state, e.updated_at"
)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise DataError(f"strategy name must be 1-100 characters, got {name!r}")
    return name


def _strategy(row: Row) -> StrategyRecord:
    created, updated = utc_out(row[5]), utc_out(row[6])
    assert created is not None and updated is not None  # NOT NULL columns
    return StrategyRecord(
        int(row[0]), row[1], row[2], decode_json(row[3]), bool(row[4]), created, updated
    )


class StrategiesMixin(StoreCore):
    """trading_strategies and strategy_execution_state."""

    def ensure_strategy(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        description: str = "",
        at: datetime | None = None,
    ) -> int:
        """Id of strategy `name`, creating it with `parameters` if missing (existing ones kept)."""
        _check_name(name)
        with self.transaction():
            row = self._one("SELECT id FROM trading_strategies WHERE name = ?", (name,))
            if row:
                return int(row[0])
            stamp = utc_in(at, "strategy created_at") or now_utc()
            row = self._one(
                "INSERT INTO trading_strategies "
                "(name, description, parameters, is_active, created_at, updated_at) "
                "VALUES (?, ?, ?, TRUE, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id",
                (
                    name,
                    description,
                    encode_json(parameters or {}, "strategy parameters"),
                    stamp,
                    stamp,
                ),
            )
            if row is None:  # another process created it between our SELECT and INSERT
                row = self._one("SELECT id FROM trading_strategies WHERE name = ?", (name,))
            assert row is not None
            return int(row[0])

    def _strategy_id(self, name: str) -> int:
        return self.ensure_strategy(name, {}, "created on first use by the store")

    def get_strategy(self, name: str) -> StrategyRecord | None:
        """The strategy row called `name`, or None."""
        row = self._one(
            f"SELECT {_STRATEGY_COLUMNS} FROM trading_strategies WHERE name = ?", (name,)
        )
        return _strategy(row) if row else None

    def list_strategies(self, active_only: bool = False) -> list[StrategyRecord]:
        """Every strategy, by name."""
        where = " WHERE is_active" if active_only else ""
        rows = self._query(
            f"SELECT {_STRATEGY_COLUMNS} FROM trading_strategies{where} ORDER BY name"
        )
        return [_strategy(r) for r in rows]

    def set_strategy_parameters(
        self, name: str, parameters: dict[str, Any], at: datetime | None = None
    ) -> None:
        """Replace the parameters of an existing strategy."""
        self._update_strategy(
            name, "parameters", encode_json(parameters, "strategy parameters"), at
        )

    def set_strategy_active(self, name: str, active: bool, at: datetime | None = None) -> None:
        """Switch a strategy on or off."""
        self._update_strategy(name, "is_active", bool(active), at)

    def _update_strategy(self, name: str, column: str, value: Any, at: datetime | None) -> None:
        stamp = utc_in(at, "strategy updated_at") or now_utc()
        row = self._one(
            f"UPDATE trading_strategies SET {column} = ?, updated_at = ? "
            "WHERE name = ? RETURNING id",
            (value, stamp, name),
        )
        if row is None:
            raise StoreError(
                f"strategy {name!r} is not in the store; create it with ensure_strategy() first"
            )

    def save_execution_state(self, state: ExecutionState) -> None:
        """Insert or replace the execution state of (state.strategy, state.mode)."""
        mode = as_mode(state.mode)
        what = f"execution state of {state.strategy}"
        with self.transaction():
            sid = self._strategy_id(_check_name(state.strategy))
            self._upsert(
                "strategy_execution_state",
                ("strategy_id", "mode"),
                _EXECUTION_STATE_COLUMNS,
                (
                    sid,
                    mode.value,
                    bool(state.is_running),
                    utc_in(state.last_execution, f"{what}: last_execution"),
                    int(state.total_trades),
                    int(state.winning_trades),
                    int(state.losing_trades),
                    int(state.consecutive_losses),
                    db_number(state.total_pnl, f"{what}: total_pnl"),
                    db_number(state.daily_pnl, f"{what}: daily_pnl"),
                    state.daily_pnl_date,
                    db_number(state.peak_equity, f"{what}: peak_equity"),
                    db_number(state.max_drawdown, f"{what}: max_drawdown"),
                    db_number(state.sharpe_ratio, f"{what}: sharpe_ratio"),
                    encode_json(state.state, f"{what}: state"),
                    utc_in(state.updated_at, f"{what}: updated_at") or now_utc(),
                ),
            )

    def load_execution_state(
        self, strategy_name: str, mode: Mode | str = Mode.PAPER
    ) -> ExecutionState | None:
        """The saved execution state of `strategy_name` in `mode`, or None."""
        row = self._one(
            f"SELECT {_STATE_COLUMNS} FROM strategy_execution_state e "
            "JOIN trading_strategies s ON s.id = e.strategy_id WHERE s.name = ? AND e.mode = ?",
            (strategy_name, as_mode(mode).value),
        )
        if row is None:
            return None
        return ExecutionState(
            strategy=row[0],
            mode=Mode(row[1]),
            is_running=bool(row[2]),
            last_execution=utc_out(row[3]),
            total_trades=int(row[4]),
            winning_trades=int(row[5]),
            losing_trades=int(row[6]),
            consecutive_losses=int(row[7]),
            total_pnl=row[8],
            daily_pnl=row[9],
            daily_pnl_date=row[10],
            peak_equity=row[11],
            max_drawdown=row[12],
            sharpe_ratio=row[13],
            state=decode_json(row[14]),
            updated_at=utc_out(row[15]),
        )
