"""Checks every order passes before it is sent, shared by CcxtExchange and PaperExchange.

Both venues round and refuse in exactly the same way, so a strategy sees the same numbers and
the same messages in paper and live.
"""

from __future__ import annotations

import re
from decimal import Decimal

from tradelib.domain import Market, OrderType, Side, round_down, round_up
from tradelib.errors import InvalidOrder
from tradelib.exchange.base import OrderRequest
from tradelib.exchange.matching import check_order
from tradelib.exchange.venues import Venue, to_wire


def check_request(request: OrderRequest, venue: Venue, exchange_id: str) -> None:
    """Refuse ids, order types and time-in-force values the venue does not take."""
    cid = request.client_order_id
    if not cid or not re.match(venue.client_id_pattern, to_wire(venue, cid)):
        raise InvalidOrder(
            f"client order id {cid!r} is not accepted by {exchange_id} (must match "
            f"{venue.client_id_pattern}); build it with tradelib.domain.client_order_id()"
        )
    if request.type not in venue.order_types:
        raise InvalidOrder(f"order {cid}: {exchange_id} does not take {request.type} orders")
    if request.time_in_force not in venue.time_in_force:
        raise InvalidOrder(
            f"order {cid}: {exchange_id} does not take time-in-force {request.time_in_force}"
        )
    if request.type is OrderType.LIMIT and request.price is None:
        raise InvalidOrder(f"order {cid}: a limit order needs a price")
    if request.type is OrderType.MARKET and request.price is not None:
        raise InvalidOrder(f"order {cid}: a market order takes no price (got {request.price})")


def rounded(request: OrderRequest, market: Market) -> tuple[Decimal, Decimal | None]:
    """Quantity floored to the lot step; limit price rounded toward the passive side."""
    quantity = round_down(request.quantity, market.amount_step)
    price = None
    if request.type is OrderType.LIMIT and request.price is not None:
        toward_passive = round_down if request.side is Side.BUY else round_up
        price = toward_passive(request.price, market.price_tick)
    return quantity, price


def refuse_if_invalid(
    request: OrderRequest,
    market: Market,
    quantity: Decimal,
    price: Decimal | None,
    reference: Decimal | None,
    exchange_id: str,
) -> None:
    """InvalidOrder naming the rule and the numbers when the rounded order breaks a filter."""
    try:
        check_order(market, request.side, request.type, quantity, price, reference)
    except InvalidOrder as exc:
        raise InvalidOrder(
            f"order {request.client_order_id} refused before sending to {exchange_id}: {exc} "
            f"(asked quantity {request.quantity}, price {request.price})"
        ) from None


def duplicate_id_error(client_order_id: str, exchange_id: str, detail: str) -> InvalidOrder:
    """The error for a client order id that another open order already uses."""
    return InvalidOrder(
        f"order {client_order_id} refused by {exchange_id}: this client order id is already "
        f"used by another order ({detail}); use a new intent key or attempt number"
    )
