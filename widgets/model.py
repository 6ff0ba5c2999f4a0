"""What the dashboard shows, as plain frozen values: built by `widgets.data`, drawn by the views.

Nothing here touches the store or a widget, so a snapshot can be compared with the previous
one (only the parts that changed are redrawn) and every number can be tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from tradelib.config import RiskSettings
from tradelib.domain import Mode, OrderStatus, OrderType, Side
from tradelib.operations import ModeRequest, PauseState
from tradelib.operations.valuation import AccountValuation
from tradelib.risk import KillSwitchState, Trip
from tradelib.store import CommandStatus, Liveness


@dataclass(frozen=True, slots=True)
class Account:
    """The exchange account the dashboard follows, the mode it trades in, its strategy."""

    exchange: str
    mode: Mode
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One open position as the table shows it; P&L in the quote currency."""

    strategy: str
    symbol: str
    side: Side
    quantity: Decimal
    entry: Decimal
    price: Decimal | None
    unrealised: Decimal | None
    unrealised_pct: Decimal | None
    stop: Decimal | None
    target: Decimal | None
    trailing: Decimal | None
    opened_at: datetime
    age: timedelta

    @property
    def key(self) -> str:
        """How a person picks this position in the override controls."""
        return f"{self.symbol} · {self.strategy}"


class Verdict(StrEnum):
    """How a metric stands against its target."""

    MET = "met"
    MISSED = "missed"
    NONE = "none"  # no target, or too little data to judge


@dataclass(frozen=True, slots=True)
class Metric:
    """One strategy metric beside its target (`target` is display text, e.g. "> 40 %")."""

    key: str
    label: str
    value: Decimal | None
    unit: str  # "usd", "pct", "count", "ratio"
    target: str
    verdict: Verdict
    note: str = ""


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """One asset of the account."""

    asset: str
    free: Decimal
    locked: Decimal
    usd: Decimal | None
    stable: bool

    @property
    def total(self) -> Decimal:
        """Free plus locked."""
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class BalancesView:
    """Balances in USD, the stablecoin reserve against its floor, the minimum balance."""

    rows: tuple[BalanceRow, ...]
    total_usd: Decimal
    stable_usd: Decimal
    reserve_floor_pct: Decimal
    min_balance_usd: Decimal
    source: str
    as_of: datetime | None
    unpriced: tuple[str, ...] = ()

    @property
    def stable_pct(self) -> Decimal | None:
        """Stablecoins as a share of the account, in percent (None for an empty account)."""
        return None if self.total_usd <= 0 else self.stable_usd / self.total_usd * 100

    @property
    def reserve_ok(self) -> bool:
        """True when the stablecoin share is at or above its floor."""
        share = self.stable_pct
        return share is not None and share >= self.reserve_floor_pct

    @property
    def min_balance_ok(self) -> bool:
        """True when the account is worth at least the minimum balance."""
        return self.total_usd >= self.min_balance_usd


@dataclass(frozen=True, slots=True)
class EngineView:
    """A running (or stopped) engine as its heartbeat says, judged at the snapshot time."""

    mode: Mode
    exchange: str
    strategy: str
    state: str
    liveness: Liveness
    pid: int
    host: str
    started_at: datetime
    beat_at: datetime
    last_cycle_at: datetime | None
    cycles: int
    silent: timedelta


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything that says whether the account may trade, and who changed it last."""

    account: Account
    engine: EngineView | None
    engines: tuple[EngineView, ...]
    kill: KillSwitchState
    trips: tuple[Trip, ...]
    halt: str | None
    pause: PauseState
    mode_request: ModeRequest | None
    limits: RiskSettings
    overrides: tuple[tuple[str, str], ...] = ()
    live_capital_usd: Decimal = Decimal(0)

    @property
    def engine_alive(self) -> bool:
        """True when the account's engine beat recently."""
        return self.engine is not None and self.engine.liveness is Liveness.ALIVE


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The account's equity (and daily P&L, when known) at one moment of the engine clock."""

    at: datetime
    equity: Decimal
    daily_pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PnlView:
    """The P&L chart's data: equity and daily P&L points, the daily loss limit and alert lines."""

    points: tuple[EquityPoint, ...]
    loss_limit_usd: Decimal | None
    alert_level_usd: Decimal | None
    daily_pnl_usd: Decimal | None
    day_start_equity_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One line of the alert feed: an alert or a person's action on the account."""

    id: int
    at: datetime
    severity: str  # "info", "warning", "critical"
    kind: str
    message: str
    source: str


class HistoryView(StrEnum):
    """Which history the table shows."""

    ORDERS = "orders"
    TRADES = "trades"


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """What a person asked the history table for; `page` counts from 0."""

    view: HistoryView = HistoryView.ORDERS
    symbol: str | None = None
    status: str | None = None
    mode: Mode | None = None
    start: date | None = None
    end: date | None = None
    page: int = 0
    page_size: int = 15


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order of the history (or of the cancel list)."""

    client_order_id: str
    created_at: datetime
    mode: Mode
    strategy: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    filled: Decimal
    average_price: Decimal | None
    fee: Decimal
    fee_currency: str | None
    status: OrderStatus
    reduce_only: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One closed position (a round trip) of the history; P&L net of fees."""

    opened_at: datetime
    closed_at: datetime | None
    mode: Mode
    strategy: str
    symbol: str
    side: Side
    quantity: Decimal
    entry: Decimal
    realised: Decimal
    fees: Decimal

    @property
    def return_pct(self) -> Decimal | None:
        """Realised P&L as a percentage of the entry value."""
        cost = self.entry * self.quantity
        return None if cost <= 0 else self.realised / cost * 100


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of the filtered history, and what the filters can offer."""

    filter: HistoryFilter
    rows: tuple[OrderRow | TradeRow, ...]
    total: int
    symbols: tuple[str, ...]

    @property
    def pages(self) -> int:
        """Number of pages (at least 1)."""
        return max(1, -(-self.total // self.filter.page_size))


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A command a person sent the engine, and what became of it."""

    id: int
    kind: str
    target: str
    status: CommandStatus
    by: str
    reason: str
    created_at: datetime
    result: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the dashboard shows at one refresh; sections compare by value."""

    at: datetime
    status: StatusView
    positions: tuple[PositionRow, ...]
    metrics: tuple[Metric, ...]
    balances: BalancesView
    pnl: PnlView
    history: HistoryPage
    alerts: tuple[AlertRow, ...]
    commands: tuple[CommandRow, ...]
    open_orders: tuple[OrderRow, ...]
    valuation: AccountValuation | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
