"""What a running engine says about its account each cycle, carried in its heartbeat.

The store's balances are written at reconciliation and a position's price when it fills or
its stop moves, so between those only the engine knows what the account is worth. The
engine service puts `AccountValuation.to_detail()` under `HEARTBEAT_KEY` in every heartbeat's
detail; the dashboard and `tradelib status` read it back with `AccountValuation.from_detail`.
Times are the engine's clock (a replay runs on the data's clock); numbers are exact text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from tradelib.domain import Balance, require_utc
from tradelib.errors import DataError

if TYPE_CHECKING:
    from tradelib.position.portfolio import PortfolioSnapshot

HEARTBEAT_KEY = "valuation"


@dataclass(frozen=True, slots=True)
class AccountValuation:
    """The account as the engine valued it at `at`: equity, daily P&L, balances and marks."""

    at: datetime
    equity_usd: Decimal
    cash_usd: Decimal
    stablecoin_usd: Decimal
    unrealised_usd: Decimal
    daily_pnl_usd: Decimal
    day_start_equity_usd: Decimal
    peak_equity_usd: Decimal
    marks: dict[str, Decimal] = field(default_factory=dict)
    prices_usd: dict[str, Decimal] = field(default_factory=dict)
    balances: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    @classmethod
    def from_snapshot(
        cls,
        snapshot: PortfolioSnapshot,
        balances: Sequence[Balance],
        marks: Mapping[str, Decimal],
        prices_usd: Mapping[str, Decimal],
    ) -> AccountValuation:
        """The valuation of one engine cycle: its snapshot plus what it was computed from."""
        held: dict[str, tuple[Decimal, Decimal]] = {}
        for balance in balances:
            free, locked = held.get(balance.asset, (Decimal(0), Decimal(0)))
            held[balance.asset] = (free + balance.free, locked + balance.locked)
        return cls(
            at=snapshot.at,
            equity_usd=snapshot.equity_usd,
            cash_usd=snapshot.cash_usd,
            stablecoin_usd=snapshot.stablecoin_usd,
            unrealised_usd=snapshot.unrealised_usd,
            daily_pnl_usd=snapshot.daily_pnl_usd,
            day_start_equity_usd=snapshot.day.start_equity,
            peak_equity_usd=snapshot.peak_equity_usd,
            marks=dict(marks),
            prices_usd=dict(prices_usd),
            balances=held,
        )

    def to_detail(self) -> dict[str, Any]:
        """JSON-ready form for `HeartbeatRecord.detail[HEARTBEAT_KEY]`."""
        return {
            "at": self.at.isoformat(),
            "equity_usd": str(self.equity_usd),
            "cash_usd": str(self.cash_usd),
            "stablecoin_usd": str(self.stablecoin_usd),
            "unrealised_usd": str(self.unrealised_usd),
            "daily_pnl_usd": str(self.daily_pnl_usd),
            "day_start_equity_usd": str(self.day_start_equity_usd),
            "peak_equity_usd": str(self.peak_equity_usd),
            "marks": {k: str(v) for k, v in self.marks.items()},
            "prices_usd": {k: str(v) for k, v in self.prices_usd.items()},
            "balances": {k: [str(f), str(lk)] for k, (f, lk) in self.balances.items()},
        }

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> AccountValuation | None:
        """The valuation in a heartbeat's detail; None when the engine published none.

        Raises DataError naming the field when the published valuation is malformed.
        """
        data = detail.get(HEARTBEAT_KEY)
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise DataError(f"heartbeat {HEARTBEAT_KEY} must be an object, got {data!r}")
        try:
            at = require_utc(datetime.fromisoformat(str(data["at"])), "valuation at")
            balances = {
                str(k): (_number(v[0], f"balance {k}"), _number(v[1], f"balance {k}"))
                for k, v in dict(data.get("balances") or {}).items()
            }
            return cls(
                at=at,
                marks=_numbers(data.get("marks"), "mark"),
                prices_usd=_numbers(data.get("prices_usd"), "USD price"),
                balances=balances,
                **{
                    name: _number(data[name], name)
                    for name in (
                        "equity_usd",
                        "cash_usd",
                        "stablecoin_usd",
                        "unrealised_usd",
                        "daily_pnl_usd",
                        "day_start_equity_usd",
                        "peak_equity_usd",
                    )
                },
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise DataError(f"heartbeat {HEARTBEAT_KEY} is malformed: {exc!r}") from None


def _number(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise DataError(f"heartbeat valuation: {what} = {value!r} is not a number") from None
    if not number.is_finite():
        raise DataError(f"heartbeat valuation: {what} = {value!r} is not finite")
    return number


def _numbers(values: Any, what: str) -> dict[str, Decimal]:
    return {str(k): _number(v, f"{what} {k}") for k, v in dict(values or {}).items()}
