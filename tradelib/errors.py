"""One error hierarchy for tradelib, split by what the operator has to do.

`NeedsPerson` errors (configuration, authentication, a rejected order) will not go away by
retrying; `Temporary` errors (network, rate limit, exchange maintenance) may be retried by
callers that know the call is safe to repeat.
"""

from __future__ import annotations


class TradelibError(Exception):
    """Base of every error tradelib raises on purpose."""


class NeedsPerson(TradelibError):
    """Raised when a person has to act (fix a setting, a key, an order) before retrying."""


class Temporary(TradelibError):
    """Raised when the same call may succeed later without anybody changing anything."""


class ConfigError(NeedsPerson):
    """Raised when a setting, a config file or an environment variable is invalid."""


class DataError(NeedsPerson):
    """Raised when input data (candles, trades, calendar, book) is malformed or unusable."""


class StaleDataError(DataError):
    """Raised when market data is older than the configured staleness bound."""


class StoreError(TradelibError):
    """Raised when the store cannot be opened, migrated, read or written."""


class StoreLocked(StoreError, NeedsPerson):
    """Raised when another process holds the DuckDB file and does not serve it to this one."""

    def __init__(self, message: str, holder: str = "another process") -> None:
        super().__init__(message)
        self.holder = holder


class StoreUnavailable(StoreError, Temporary):
    """Raised when the process serving a DuckDB store went away or stopped answering mid-call."""


class DuplicateOrder(StoreError):
    """Raised when an order is inserted with a client order id the store already holds."""


class SecretError(NeedsPerson):
    """Raised when a secret is missing, cannot be decrypted, or a TOTP code is wrong."""


class AuditError(NeedsPerson):
    """Raised when the audit key is missing, unusable or not the key the store's chain uses."""


class IllegalTransition(TradelibError):
    """Raised when an order is asked to move to a status its current status cannot reach."""


class ExchangeError(TradelibError):
    """Base of errors that come from talking to an exchange."""


class ExchangeUnavailable(ExchangeError, Temporary):
    """Raised when the exchange cannot be reached, times out or answers 5xx."""


class RateLimited(ExchangeUnavailable):
    """Raised when the exchange answered 429: slow down and retry after `retry_after`."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExchangeBanned(ExchangeError, NeedsPerson):
    """Raised when the exchange answered 418 (IP banned): trading stops until the ban ends."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationError(ExchangeError, NeedsPerson):
    """Raised when the exchange refuses the API key, signature or timestamp."""


class OrderUnknown(ExchangeError, Temporary):
    """Raised when an order was sent but its outcome is not known yet (answer lost)."""


class OrderRejected(ExchangeError, NeedsPerson):
    """Raised when the exchange (or the pre-send check) refuses an order."""


class InsufficientFunds(OrderRejected):
    """Raised when the account lacks the balance an order needs."""


class InvalidOrder(OrderRejected):
    """Raised when an order breaks the market's rules (precision, minimum size, notional)."""


class OrderNotFound(ExchangeError, NeedsPerson):
    """Raised when the exchange does not know the order asked about."""


class UnknownSymbol(ExchangeError, NeedsPerson):
    """Raised when a symbol is not listed on the exchange."""


class RiskRejected(NeedsPerson):
    """Raised when the risk manager refuses an intent; `reasons` says why."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


class KillSwitchEngaged(RiskRejected):
    """Raised when a new order is attempted while the kill switch is engaged."""


class BreakerTripped(RiskRejected):
    """Raised when a circuit breaker blocks new entries."""


class ReconciliationError(NeedsPerson):
    """Raised when the store and the exchange cannot be brought into agreement."""


class NoApiKey(ExchangeError, NeedsPerson):
    """Raised when a venue is asked about its API key but trades without one (paper, no key)."""


class UnsafeApiKey(NeedsPerson):
    """Raised when live trading is refused: the API key can withdraw, cannot trade or is unbound."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class AlreadyRunning(NeedsPerson):
    """Raised when a run lock (an account's engine, a scheduled job) is held by another process."""


class LockLost(TradelibError):
    """Raised when a held run lock is gone (its database session died): stop acting at once."""


class CommandRefused(NeedsPerson):
    """Raised when an engine command cannot apply to the account (no such position or order)."""


class CycleHalted(Temporary):
    """Raised when a scheduled trading cycle could not trade (exchange down, reconciliation)."""
