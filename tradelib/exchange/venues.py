"""Per-venue differences described as data: parameter names, capabilities, header names.

`CcxtExchange` reads a `Venue` instead of branching on the exchange id, so adding a venue is
adding an entry here (checked against the installed ccxt 4.5.90 source).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from tradelib.domain import OrderType, TimeInForce
from tradelib.errors import ConfigError


class ClientIdCodec(StrEnum):
    """How our client order id is written in the exchange's field."""

    AS_IS = "as_is"
    # Kraken's cl_ord_id takes a UUID (32 hex or 36 with hyphens) or free text of <= 18 chars:
    # tradelib's "tl-" + 29 hex becomes the 29 hex + "000", and back.
    SHORT_UUID = "short_uuid"


_OURS = re.compile(r"^tl-([0-9a-f]{29})$")
_SHORT_UUID = re.compile(r"^([0-9a-f]{29})000$")


class Lookup(StrEnum):
    """How an order is found by its client order id."""

    PARAM = "param"  # fetch_order(None, symbol, {param: cid}) asks the exchange directly
    SCAN = "scan"  # list open + closed orders and match ccxt's parsed `clientOrderId`


@dataclass(frozen=True, slots=True)
class Venue:
    """What differs between exchanges that ccxt does not hide."""

    ccxt_id: str
    # params key that makes ccxt send OUR client order id with a new order
    create_client_id_param: str
    # the exchange's own name of that field (what reaches the wire), for documentation/tests
    wire_client_id_field: str
    lookup: Lookup
    lookup_param: str | None
    cancel_by_client_id_param: str | None  # None: look the exchange id up, cancel by it
    order_types: frozenset[OrderType] = frozenset({OrderType.LIMIT, OrderType.MARKET})
    time_in_force: frozenset[TimeInForce] = frozenset(TimeInForce)
    client_id_pattern: str = r"^[.A-Z:/a-z0-9_-]{1,36}$"  # checked on the wire form
    client_id_codec: ClientIdCodec = ClientIdCodec.AS_IS
    # market orders: must a buy carry a price (ccxt computes the quote cost from it)?
    market_buy_needs_price: bool = False
    # rate-limit headers (name prefix, lower-case) the exchange reports usage in
    weight_header: str | None = None
    order_count_header_prefix: str | None = None
    # ccxt options that keep load_markets on the spot endpoints only
    ccxt_options: dict[str, object] = field(default_factory=dict)
    # error texts meaning "this client order id is already in use"
    duplicate_id_markers: tuple[str, ...] = ()
    # params key that narrows fetch_my_trades to one exchange order id (None: filter locally)
    trades_by_order_param: str | None = None
    # seconds after which a request the exchange has not seen can no longer be accepted
    # (None: ccxt's options['recvWindow']); a lost create is only called "not placed" after it
    late_arrival_seconds: float | None = 5.0
    # ccxt method that reads the API key's permissions, and the parser of its answer
    # (`tradelib.exchange.key_restrictions`); None: the venue does not publish them
    restrictions_call: str | None = None
    restrictions_format: str | None = None


BINANCE = Venue(
    ccxt_id="binance",
    create_client_id_param="newClientOrderId",
    wire_client_id_field="newClientOrderId",
    lookup=Lookup.PARAM,
    lookup_param="origClientOrderId",
    cancel_by_client_id_param="origClientOrderId",
    weight_header="x-mbx-used-weight-1m",
    order_count_header_prefix="x-mbx-order-count-",
    ccxt_options={
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    },
    duplicate_id_markers=("Duplicate order sent",),
    trades_by_order_param="orderId",
    late_arrival_seconds=None,
    restrictions_call="sapi_get_account_apirestrictions",  # GET /sapi/v1/account/apiRestrictions
    restrictions_format="binance",
)

KRAKEN = Venue(
    ccxt_id="kraken",
    # kraken.create_order maps params.clientOrderId -> cl_ord_id; `userref` would need an int32
    create_client_id_param="clientOrderId",
    wire_client_id_field="cl_ord_id",
    # kraken.fetch_order maps clientOrderId -> userref (int), which our string ids are not
    lookup=Lookup.SCAN,
    lookup_param=None,
    cancel_by_client_id_param="clientOrderId",  # -> cl_ord_id, txid omitted
    client_id_pattern=(
        r"^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        r"|[!-~]{1,18})$"
    ),
    client_id_codec=ClientIdCodec.SHORT_UUID,
    ccxt_options={},
    duplicate_id_markers=("EOrder:Duplicate",),
)

COINBASE = Venue(
    ccxt_id="coinbase",
    # coinbase.create_order sets client_order_id = 'ccxt-<uuid>' and drops params.clientOrderId;
    # only a `client_order_id` param overrides it (request is extended with the params)
    create_client_id_param="client_order_id",
    wire_client_id_field="client_order_id",
    lookup=Lookup.SCAN,
    lookup_param=None,
    cancel_by_client_id_param=None,
    client_id_pattern=r"^[!-~]{1,128}$",
    market_buy_needs_price=True,
    ccxt_options={},
    duplicate_id_markers=("duplicate client_order_id", "DUPLICATE"),
    restrictions_call="v3_private_get_brokerage_key_permissions",  # GET .../key_permissions
    restrictions_format="coinbase",
)

VENUES: dict[str, Venue] = {
    "binance": BINANCE,
    "kraken": KRAKEN,
    "coinbase": COINBASE,
}


def to_wire(venue: Venue, client_order_id: str) -> str:
    """Our client order id as the venue's field holds it."""
    if venue.client_id_codec is ClientIdCodec.SHORT_UUID:
        match = _OURS.match(client_order_id)
        if match:
            return match.group(1) + "000"
    return client_order_id


def from_wire(venue: Venue, wire_id: str) -> str:
    """The venue's client order id field back as our client order id."""
    if venue.client_id_codec is ClientIdCodec.SHORT_UUID:
        match = _SHORT_UUID.match(wire_id.replace("-", "").lower())
        if match:
            return "tl-" + match.group(1)
    return wire_id


def venue_for(exchange_id: str) -> Venue:
    """The venue description for a ccxt exchange id, or ConfigError listing the supported ones."""
    try:
        return VENUES[exchange_id]
    except KeyError:
        raise ConfigError(
            f"exchange {exchange_id!r} is not supported by CcxtExchange; "
            f"use one of {sorted(VENUES)}"
        ) from None
