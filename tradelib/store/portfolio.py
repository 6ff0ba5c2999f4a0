"""Positions and balances (live_positions, account_balances)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from tradelib.domain import Balance, Mode, Position, PositionStatus, Side, StrategyId
from tradelib.store.core import Row
from tradelib.store.records import (
    PositionRecord,
    as_mode,
    db_number,
    now_utc,
    utc_in,
    utc_out,
)
from tradelib.store.strategies import StrategiesMixin

_POSITION_FIELDS = (
    "strategy", "exchange", "symbol", "side", "quantity", "entry_price", "opened_at", "status",
    "realized_pnl", "fees", "stop_loss", "take_profit", "trailing_stop", "high_water",
    "closed_at", "mode", "id", "current_price", "unrealized_pnl", "updated_at",
)  # fmt: skip
_POSITION_COLUMNS = ", ".join("s.name" if f == "strategy" else f"p.{f}" for f in _POSITION_FIELDS)
_KEY = "p.mode = ? AND p.strategy_id = ? AND p.exchange = ? AND p.symbol = ?"


def _aware(value: datetime) -> datetime:
    out = utc_out(value)
    assert out is not None  # NOT NULL column
    return out


def _named(row: Row) -> dict[str, Any]:
    return dict(zip(_POSITION_FIELDS, row, strict=True))


def _position(r: dict[str, Any]) -> Position:
    return Position(
        strategy_id=StrategyId(r["strategy"]),
        exchange=r["exchange"],
        symbol=r["symbol"],
        side=Side(r["side"]),
        quantity=r["quantity"],
        average_entry=r["entry_price"],
        opened_at=_aware(r["opened_at"]),
        status=PositionStatus(r["status"]),
        realized_pnl=r["realized_pnl"],
        fees=r["fees"],
        stop_loss=r["stop_loss"],
        take_profit=r["take_profit"],
        trailing_stop=r["trailing_stop"],
        high_water=r["high_water"],
        closed_at=utc_out(r["closed_at"]),
        mode=Mode(r["mode"]),
    )


class PortfolioMixin(StrategiesMixin):
    """One row per open position of (mode, strategy, exchange, symbol); closed rows are history."""

    def upsert_position(
        self, position: Position, current_price: Decimal | None = None, at: datetime | None = None
    ) -> int:
        """Save a position: updates its open row (or a closed one with the same opened_at).

        Without `current_price` the row keeps its last marked price and unrealized P&L is
        recomputed from it; a closed position has no unrealized P&L.
        """
        mode = as_mode(position.mode)
        what = f"position {position.strategy_id} {position.exchange} {position.symbol}"
        with self.transaction():
            sid = self._strategy_id(position.strategy_id)
            # Serialises writers of one position key across processes (PostgreSQL); the
            # partial unique index there backs this up, DuckDB has one writing process.
            self.lock(f"position:{mode.value}:{sid}:{position.exchange}:{position.symbol}")
            key = (mode.value, sid, position.exchange, position.symbol)
            found = self._saved_row(f"{_KEY} AND p.status <> 'closed'", key)
            if found is None and position.status is PositionStatus.CLOSED:
                found = self._saved_row(
                    f"{_KEY} AND p.status = 'closed' AND p.opened_at = ?",
                    (*key, position.opened_at),
                )
            price = current_price if current_price is not None else (
                found["current_price"] if found else None
            )  # fmt: skip
            unrealized = (
                position.unrealized_pnl(price)
                if price is not None and position.status is not PositionStatus.CLOSED
                else None
            )
            values: tuple[Any, ...] = (
                position.side.value,
                db_number(position.quantity, f"{what}: quantity"),
                db_number(position.average_entry, f"{what}: average_entry"),
                db_number(price, f"{what}: current_price"),
                db_number(unrealized, f"{what}: unrealized_pnl"),
                db_number(position.realized_pnl, f"{what}: realized_pnl"),
                db_number(position.stop_loss, f"{what}: stop_loss"),
                db_number(position.take_profit, f"{what}: take_profit"),
                position.status.value,
                position.opened_at,
                utc_in(position.closed_at, f"{what}: closed_at"),
                db_number(position.fees, f"{what}: fees"),
                db_number(position.trailing_stop, f"{what}: trailing_stop"),
                db_number(position.high_water, f"{what}: high_water"),
                utc_in(at, f"{what}: updated_at") or now_utc(),
            )
            if found is not None:
                self._query(
                    "UPDATE live_positions SET side = ?, quantity = ?, entry_price = ?, "
                    "current_price = ?, unrealized_pnl = ?, "
                    "realized_pnl = ?, stop_loss = ?, take_profit = ?, status = ?, opened_at = ?, "
                    "closed_at = ?, fees = ?, trailing_stop = ?, high_water = ?, updated_at = ? "
                    "WHERE id = ?",
                    (*values, found["id"]),
                )
                return int(found["id"])
            created = self._one(
                "INSERT INTO live_positions (side, quantity, entry_price, current_price, "
                "unrealized_pnl, realized_pnl, stop_loss, take_profit, status, opened_at, "
                "closed_at, fees, trailing_stop, high_water, updated_at, mode, strategy_id, "
                f"exchange, symbol) VALUES ({', '.join('?' * 19)}) RETURNING id",
                (*values, *key),
            )
            assert created is not None
            (created_id,) = created  # RETURNING id: one column
            return int(created_id)

    def _saved_row(self, where: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        """Id and last marked price of the newest live_positions row matching `where`."""
        names = ("id", "current_price")
        row = self._one(
            f"SELECT {', '.join(f'p.{n}' for n in names)} FROM live_positions p "
            f"WHERE {where} ORDER BY p.id DESC LIMIT 1",
            params,
        )
        return None if row is None else dict(zip(names, row, strict=True))

    def list_positions(
        self,
        mode: Mode | str,
        strategy: str | None = None,
        include_closed: bool = False,
        symbol: str | None = None,
        exchange: str | None = None,
    ) -> list[Position]:
        """Open (and partial) positions of `mode`, oldest first; closed ones too if asked."""
        rows = self._position_rows(mode, strategy, include_closed, symbol, exchange)
        return [_position(r) for r in rows]

    def list_position_records(
        self,
        mode: Mode | str,
        strategy: str | None = None,
        include_closed: bool = False,
        symbol: str | None = None,
        exchange: str | None = None,
    ) -> list[PositionRecord]:
        """Like list_positions, with row id, last marked price, unrealized P&L and updated_at."""
        rows = self._position_rows(mode, strategy, include_closed, symbol, exchange)
        return [
            PositionRecord(
                int(r["id"]), _position(r), r["current_price"], r["unrealized_pnl"],
                _aware(r["updated_at"]),
            )
            for r in rows
        ]  # fmt: skip

    def _position_rows(
        self,
        mode: Mode | str,
        strategy: str | None,
        include_closed: bool,
        symbol: str | None,
        exchange: str | None,
    ) -> list[dict[str, Any]]:
        where = ["p.mode = ?"]
        params: list[Any] = [as_mode(mode).value]
        for column, value in (("s.name", strategy), ("p.symbol", symbol), ("p.exchange", exchange)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if not include_closed:
            where.append("p.status <> 'closed'")
        rows = self._query(
            f"SELECT {_POSITION_COLUMNS} FROM live_positions p "
            "JOIN trading_strategies s ON s.id = p.strategy_id "
            f"WHERE {' AND '.join(where)} ORDER BY p.opened_at, p.id",
            params,
        )
        return [_named(row) for row in rows]

    def upsert_balance(
        self,
        balance: Balance,
        mode: Mode | str,
        usd_value: Decimal | None = None,
        at: datetime | None = None,
    ) -> None:
        """Insert or replace the balance of (mode, exchange, asset)."""
        what = f"balance {balance.exchange} {balance.asset}"
        self._upsert(
            "account_balances",
            ("mode", "exchange", "asset"),
            ("exchange", "asset", "free", "locked", "total", "usd_value", "mode", "updated_at"),
            (
                balance.exchange,
                balance.asset,
                db_number(balance.free, f"{what}: free"),
                db_number(balance.locked, f"{what}: locked"),
                db_number(balance.total, f"{what}: total"),
                db_number(usd_value, f"{what}: usd_value"),
                as_mode(mode).value,
                utc_in(at, f"{what}: updated_at") or now_utc(),
            ),
        )

    def list_balances(self, mode: Mode | str, exchange: str | None = None) -> dict[str, Balance]:
        """Balances of `mode` keyed by asset; without `exchange` keyed "exchange:asset"."""
        params: list[Any] = [as_mode(mode).value]
        clause = ""
        if exchange is not None:
            clause = " AND exchange = ?"
            params.append(exchange)
        names = ("exchange", "asset", "free", "locked")
        rows = self._query(
            f"SELECT {', '.join(names)} FROM account_balances "
            f"WHERE mode = ?{clause} ORDER BY exchange, asset",
            params,
        )
        result: dict[str, Balance] = {}
        for row in rows:
            balance = Balance(**dict(zip(names, row, strict=True)))
            key = balance.asset if exchange is not None else f"{balance.exchange}:{balance.asset}"
            result[key] = balance
        return result

    def balance_usd_values(self, mode: Mode | str) -> dict[str, Decimal | None]:
        """USD value last stored with each balance, keyed "exchange:asset"."""
        names = ("exchange", "asset", "usd_value")
        rows = self._query(
            f"SELECT {', '.join(names)} FROM account_balances WHERE mode = ?",
            (as_mode(mode).value,),
        )
        named = [dict(zip(names, row, strict=True)) for row in rows]
        return {f"{r['exchange']}:{r['asset']}": r["usd_value"] for r in named}
