"""Orders and fills (live_orders, order_fills).

An order's `stop_price` (the stop its position takes on the fill) is kept in the row's intent
record under "stop_price", written from the `Order` itself, and read back onto the `Order`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradelib.domain import (
    ClientOrderId,
    ExchangeOrderId,
    Fill,
    Mode,
    Order,
    OrderStatus,
    OrderType,
    Side,
    StrategyId,
    TimeInForce,
)
from tradelib.errors import DataError, DuplicateOrder, IllegalTransition, StoreError
from tradelib.store.core import Row
from tradelib.store.records import (
    as_mode,
    db_number,
    decode_json,
    encode_json,
    now_utc,
    utc_in,
    utc_out,
)
from tradelib.store.strategies import StrategiesMixin

_ORDER_FIELDS = (
    "client_order_id", "symbol", "side", "order_type", "quantity", "created_at", "price",
    "status", "time_in_force", "strategy", "exchange", "mode", "exchange_order_id",
    "filled_quantity", "average_price", "fee", "fee_currency", "reduce_only", "updated_at",
    "reason", "intent",
)  # fmt: skip
_ORDER_COLUMNS = ", ".join("s.name" if f == "strategy" else f"o.{f}" for f in _ORDER_FIELDS)
_ORDER_FROM = "FROM live_orders o JOIN trading_strategies s ON s.id = o.strategy_id"
# insert_order's columns after strategy_id, which comes first.
_INSERT_COLUMNS = (
    "strategy_id, position_id, exchange, symbol, side, order_type, quantity, price, status, "
    "exchange_order_id, created_at, updated_at, filled_at, client_order_id, filled_quantity, "
    "average_price, fee, fee_currency, mode, time_in_force, reduce_only, reason, intent"
)
_INSERT_PLACES = ", ".join("?" for _ in range(_INSERT_COLUMNS.count(",")))
_UPDATE_SET = (
    "UPDATE live_orders SET status = ?, filled_quantity = ?, average_price = ?, fee = ?, "
    "fee_currency = ?, exchange_order_id = ?, updated_at = ?, reason = ?"
)
_INSERT_FILL_INTO = (
    "INSERT INTO order_fills (trade_id, exchange, client_order_id, symbol, side, quantity, "
    "price, fee, fee_currency, is_maker, executed_at, mode)"
)
_INSERT_FILL = f"{_INSERT_FILL_INTO} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_FILL_SELECT = f"{_INSERT_FILL_INTO} SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
_FILL_COLUMNS = (
    "trade_id, client_order_id, symbol, side, quantity, price, fee, fee_currency, executed_at, "
    "is_maker"
)


def _order(row: Row) -> Order:
    r = dict(zip(_ORDER_FIELDS, row, strict=True))
    stop = (decode_json(r["intent"]) or {}).get("stop_price")
    return Order(
        client_order_id=ClientOrderId(r["client_order_id"]),
        symbol=r["symbol"],
        side=Side(r["side"]),
        type=OrderType(r["order_type"]),
        quantity=r["quantity"],
        created_at=r["created_at"],
        price=r["price"],
        status=OrderStatus(r["status"]),
        time_in_force=TimeInForce(r["time_in_force"]),
        strategy_id=StrategyId(r["strategy"]),
        exchange=r["exchange"],
        mode=Mode(r["mode"]),
        exchange_order_id=(
            ExchangeOrderId(r["exchange_order_id"]) if r["exchange_order_id"] is not None else None
        ),
        filled_quantity=r["filled_quantity"],
        average_price=r["average_price"],
        fee=r["fee"],
        fee_currency=r["fee_currency"],
        reduce_only=bool(r["reduce_only"]),
        updated_at=utc_out(r["updated_at"]),
        reason=r["reason"],
        stop_price=None if stop is None else Decimal(stop),
    )


def _fill(row: Row) -> Fill:
    return Fill(
        trade_id=row[0],
        client_order_id=ClientOrderId(row[1]),
        symbol=row[2],
        side=Side(row[3]),
        quantity=row[4],
        price=row[5],
        fee=row[6],
        fee_currency=row[7],
        timestamp=row[8],
        is_maker=bool(row[9]),
    )


def _statuses(values: Iterable[OrderStatus | str]) -> list[str]:
    try:
        return [OrderStatus(v).value for v in values]
    except ValueError as exc:
        raise DataError(f"unknown order status in filter: {exc}") from None


class OrdersMixin(StrategiesMixin):
    """Orders are written before they are sent and then only moved forward."""

    def _for_update(self, alias: str) -> str:
        return f"{self.for_update} OF {alias}" if self.for_update else ""

    def insert_order(
        self, order: Order, intent: dict[str, Any] | None = None, position_id: int | None = None
    ) -> int:
        """Write a new order (row id returned); DuplicateOrder if its client order id exists."""
        what = f"order {order.client_order_id}"
        stamp = order.updated_at or order.created_at
        if order.stop_price is not None or (intent is not None and "stop_price" in intent):
            intent = {**(intent or {}), "stop_price": order.stop_price}  # the order is the truth
        values = (
            position_id,
            order.exchange,
            order.symbol,
            order.side.value,
            order.type.value,
            db_number(order.quantity, f"{what}: quantity"),
            db_number(order.price, f"{what}: price"),
            order.status.value,
            order.exchange_order_id,
            order.created_at,
            utc_in(stamp, f"{what}: updated_at"),
            utc_in(stamp, f"{what}: filled_at") if order.status is OrderStatus.FILLED else None,
            order.client_order_id,
            db_number(order.filled_quantity, f"{what}: filled_quantity"),
            db_number(order.average_price, f"{what}: average_price"),
            db_number(order.fee, f"{what}: fee"),
            order.fee_currency,
            as_mode(order.mode).value,
            order.time_in_force.value,
            bool(order.reduce_only),
            order.reason,
            None if intent is None else encode_json(intent, f"{what}: intent"),
        )
        if position_id is None and not self.in_transaction():
            # The usual case in one statement (one commit, no round trip before it): the row
            # takes its strategy id from the strategy row. No ON CONFLICT here (it doubles
            # DuckDB's cost): a duplicate fails this statement alone, nothing is written, and
            # the full path below finds it. No row back means the strategy is new.
            try:
                row = self._one(
                    f"INSERT INTO live_orders ({_INSERT_COLUMNS}) SELECT s.id, {_INSERT_PLACES} "
                    "FROM trading_strategies s WHERE s.name = ? RETURNING id",
                    (*values, order.strategy_id),
                )
            except StoreError:
                row = None
            if row is not None:
                return int(row[0])
        with self.transaction():
            sid = self._strategy_id(order.strategy_id)
            if position_id is not None and not self._one(
                "SELECT id FROM live_positions WHERE id = ?", (position_id,)
            ):
                raise DataError(
                    f"{what}: position {position_id} is not in the store; pass the id that "
                    "upsert_position() returned"
                )
            row = self._one(
                f"INSERT INTO live_orders ({_INSERT_COLUMNS}) VALUES (?, {_INSERT_PLACES}) "
                "ON CONFLICT (client_order_id) DO NOTHING RETURNING id",
                (sid, *values),
            )
            if row is None:
                existing = self._one(
                    "SELECT status, symbol FROM live_orders WHERE client_order_id = ?",
                    (order.client_order_id,),
                )
                state = f" ({existing[1]}, {existing[0]})" if existing else ""
                raise DuplicateOrder(
                    f"order {order.client_order_id} is already in the store{state}; a client "
                    "order id is used once: reconcile the stored order instead of inserting again"
                )
            return int(row[0])

    def update_order(self, order: Order) -> None:
        """Save the order's full state; IllegalTransition if that moves the stored row backwards."""
        coid = order.client_order_id
        what = f"order {coid}"
        filled = db_number(order.filled_quantity, f"{what}: filled_quantity")
        assert filled is not None
        stamp = utc_in(order.updated_at, f"{what}: updated_at") or now_utc()
        new = order.status
        state = (
            new.value,
            filled,
            db_number(order.average_price, f"{what}: average_price"),
            db_number(order.fee, f"{what}: fee"),
            order.fee_currency,
            order.exchange_order_id,
            stamp,
            order.reason,
        )
        filled_at = stamp if new is OrderStatus.FILLED else None
        # The usual move in one statement: the row's state is checked by the UPDATE itself
        # (atomic, row-locked on PostgreSQL), so no SELECT ... FOR UPDATE goes first. It sets
        # filled_at only on a row that has none (a SET reading the old row, like COALESCE,
        # sends DuckDB down its slow whole-row path); anything else takes the full path below.
        allowed = [s.value for s in OrderStatus if s is new or s.can_become(new)]
        sets, unfilled, stamped = "", "", ()  # type: tuple[str, str, tuple[Any, ...]]
        if filled_at is not None:
            sets, unfilled, stamped = ", filled_at = ?", " AND filled_at IS NULL", (filled_at,)
        if self._changed_rows(
            f"{_UPDATE_SET}{sets} WHERE client_order_id = ?{unfilled} "
            f"AND status IN ({', '.join('?' for _ in allowed)}) AND filled_quantity <= ?",
            (*state, *stamped, coid, *allowed, filled),
        ):
            return
        with self.transaction():  # refused, missing, or filled already: read it under a lock
            row = self._one(
                f"SELECT o.status, o.filled_quantity FROM live_orders o "
                f"WHERE o.client_order_id = ?{self._for_update('o')}",
                (coid,),
            )
            if row is None:
                raise StoreError(f"{what} is not in the store; insert_order() it before updating")
            old = OrderStatus(row[0])
            if old is not new and not old.can_become(new):
                raise IllegalTransition(
                    f"{what} is {old} in the store and cannot become {new}; "
                    "fetch the order from the exchange and reconcile instead"
                )
            if filled < row[1]:
                raise IllegalTransition(
                    f"{what}: filled quantity would go backwards from {row[1]} to {filled}"
                )
            self._query(
                f"{_UPDATE_SET}, filled_at = COALESCE(filled_at, ?) WHERE client_order_id = ?",
                (*state, filled_at, coid),
            )

    def get_order(self, client_order_id: str, for_update: bool = False) -> Order | None:
        """The stored order, or None; `for_update` locks its row until the transaction ends."""
        lock = self._for_update("o") if for_update else ""
        row = self._one(
            f"SELECT {_ORDER_COLUMNS} {_ORDER_FROM} WHERE o.client_order_id = ?{lock}",
            (client_order_id,),
        )
        return _order(row) if row else None

    def get_order_intent(self, client_order_id: str) -> dict[str, Any] | None:
        """The intent stored with an order (None if the order or its intent is missing)."""
        row = self._one(
            "SELECT intent FROM live_orders WHERE client_order_id = ?", (client_order_id,)
        )
        return decode_json(row[0]) if row else None

    def list_orders(
        self,
        statuses: Iterable[OrderStatus | str] | None = None,
        strategy: str | None = None,
        mode: Mode | str | None = None,
        symbol: str | None = None,
        exchange: str | None = None,
    ) -> list[Order]:
        """Orders matching every given filter, oldest first."""
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            wanted = _statuses(statuses)
            if not wanted:
                return []
            where.append(f"o.status IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        for column, value in (("s.name", strategy), ("o.symbol", symbol), ("o.exchange", exchange)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if mode is not None:
            where.append("o.mode = ?")
            params.append(as_mode(mode).value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"SELECT {_ORDER_COLUMNS} {_ORDER_FROM}{clause} ORDER BY o.created_at, o.id", params
        )
        return [_order(r) for r in rows]

    def record_fill(self, fill: Fill, exchange: str, mode: Mode | str) -> bool:
        """Store a fill once; False if (trade_id, exchange) was recorded already."""
        what = f"fill {fill.trade_id}"
        values = (
            fill.trade_id,
            exchange,
            fill.client_order_id,
            fill.symbol,
            fill.side.value,
            db_number(fill.quantity, f"{what}: quantity"),
            db_number(fill.price, f"{what}: price"),
            db_number(fill.fee, f"{what}: fee"),
            fill.fee_currency,
            bool(fill.is_maker),
            fill.timestamp,
            as_mode(mode).value,
        )
        if not self.writers_take_turns:
            return self._one(f"{_INSERT_FILL} ON CONFLICT (trade_id, exchange) DO NOTHING "
                             "RETURNING id", values) is not None  # fmt: skip
        # Writers take turns here, so nobody can record the fill between the check and the
        # insert; ON CONFLICT ... RETURNING would double the INSERT's cost on DuckDB.
        return (
            self._changed_rows(
                f"{_INSERT_FILL_SELECT} WHERE NOT EXISTS "
                "(SELECT 1 FROM order_fills WHERE trade_id = ? AND exchange = ?)",
                (*values, fill.trade_id, exchange),
            )
            == 1
        )

    def list_fills(
        self,
        client_order_id: str | None = None,
        symbol: str | None = None,
        since: datetime | None = None,
        mode: Mode | str | None = None,
        exchange: str | None = None,
    ) -> list[Fill]:
        """Fills matching every given filter (`since` inclusive), oldest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("client_order_id", client_order_id),
            ("symbol", symbol),
            ("exchange", exchange),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("executed_at >= ?")
            params.append(utc_in(since, "list_fills since"))
        if mode is not None:
            where.append("mode = ?")
            params.append(as_mode(mode).value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"SELECT {_FILL_COLUMNS} FROM order_fills{clause} ORDER BY executed_at, id", params
        )
        return [_fill(r) for r in rows]
