"""What is wrong with an API key for live trading, from its permissions (pure: no I/O).

A key tradelib trades with should be able to read the account and trade spot, should NOT be
able to withdraw, and should only work from whitelisted IP addresses: then a leaked key can
at worst trade, never empty the account from somewhere else. Each deviation is a
`KeyProblem` with a code a person can name in an override:

* FATAL problems (cannot read, cannot trade) cannot be overridden: live trading would not work.
* REFUSE problems (withdrawals on, no IP whitelist, or the venue not saying) stop live trading
  unless a person accepts that code explicitly (audited).
* WARN problems (internal transfers on) are reported and never stop anything.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

from tradelib.domain import ApiKeyRestrictions


class KeyProblemCode(StrEnum):
    """Names of the problems, as a person writes them in an override."""

    WITHDRAWALS_ENABLED = "withdrawals_enabled"
    WITHDRAWALS_UNKNOWN = "withdrawals_unknown"
    NO_IP_RESTRICTION = "no_ip_restriction"
    IP_RESTRICTION_UNKNOWN = "ip_restriction_unknown"
    TRADING_DISABLED = "trading_disabled"
    TRADING_UNKNOWN = "trading_unknown"
    READING_DISABLED = "reading_disabled"
    TRANSFER_ENABLED = "transfer_enabled"


class KeySeverity(StrEnum):
    """What a problem does to live trading."""

    FATAL = "fatal"  # refused, no override possible
    REFUSE = "refuse"  # refused unless a person accepts this code
    WARN = "warn"  # reported only


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """One thing wrong with a key: its code, how bad, and what to do about it."""

    code: KeyProblemCode
    severity: KeySeverity
    message: str

    def as_json(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"code": self.code.value, "severity": self.severity.value, "message": self.message}


OVERRIDABLE = frozenset(
    {
        KeyProblemCode.WITHDRAWALS_ENABLED,
        KeyProblemCode.WITHDRAWALS_UNKNOWN,
        KeyProblemCode.NO_IP_RESTRICTION,
        KeyProblemCode.IP_RESTRICTION_UNKNOWN,
        KeyProblemCode.TRADING_UNKNOWN,
    }
)


def evaluate_key(r: ApiKeyRestrictions) -> list[KeyProblem]:
    """Every problem of the key described by `r`, worst first."""
    ex = r.exchange
    found: list[KeyProblem] = []

    def add(code: KeyProblemCode, severity: KeySeverity, message: str) -> None:
        found.append(KeyProblem(code, severity, message))

    if r.can_read is False:
        add(KeyProblemCode.READING_DISABLED, KeySeverity.FATAL,
            f"the key may not read the account: enable reading for it on {ex}")  # fmt: skip
    if r.can_trade_spot is False:
        add(KeyProblemCode.TRADING_DISABLED, KeySeverity.FATAL,
            f"the key may not trade spot: enable spot trading for it on {ex} "
            "(Binance: 'Enable Spot & Margin Trading')")  # fmt: skip
    elif r.can_trade_spot is None:
        add(KeyProblemCode.TRADING_UNKNOWN, KeySeverity.REFUSE,
            f"{ex} does not report whether the key may trade spot")  # fmt: skip
    if r.can_withdraw is True:
        add(KeyProblemCode.WITHDRAWALS_ENABLED, KeySeverity.REFUSE,
            "the key may withdraw funds: whoever obtains it can empty the account. Turn "
            f"withdrawals off for this key on {ex} (tradelib never withdraws)")  # fmt: skip
    elif r.can_withdraw is None:
        add(KeyProblemCode.WITHDRAWALS_UNKNOWN, KeySeverity.REFUSE,
            f"{ex} does not report whether the key may withdraw: check on {ex} that "
            "withdrawals are off for it")  # fmt: skip
    if r.ip_restricted is False:
        add(KeyProblemCode.NO_IP_RESTRICTION, KeySeverity.REFUSE,
            "the key works from any IP address: restrict it to this machine's public IP on "
            f"{ex} (Binance: 'Restrict access to trusted IPs only')")  # fmt: skip
    elif r.ip_restricted is None:
        add(KeyProblemCode.IP_RESTRICTION_UNKNOWN, KeySeverity.REFUSE,
            f"{ex} does not report whether the key is restricted to trusted IP addresses: "
            f"check its IP allowlist on {ex}")  # fmt: skip
    if r.can_transfer is True and r.can_withdraw is False:
        add(KeyProblemCode.TRANSFER_ENABLED, KeySeverity.WARN,
            "the key may transfer between your own accounts (not a withdrawal); turn it off "
            "if you do not need it")  # fmt: skip
    return found


def parse_codes(codes: Iterable[str]) -> frozenset[KeyProblemCode]:
    """Problem codes from text; ValueError naming the unknown and the overridable ones."""
    out: set[KeyProblemCode] = set()
    allowed = ", ".join(sorted(c.value for c in OVERRIDABLE))
    for code in codes:
        try:
            parsed = KeyProblemCode(code.strip())
        except ValueError:
            raise ValueError(f"unknown key problem {code!r}: one of {allowed}") from None
        if parsed not in OVERRIDABLE:
            raise ValueError(
                f"{parsed.value} cannot be overridden (live trading would not work); "
                f"overridable: {allowed}"
            )
        out.add(parsed)
    return frozenset(out)


def refusing(problems: Iterable[KeyProblem], accepted: Collection[str]) -> list[KeyProblem]:
    """The problems that still stop live trading when the codes in `accepted` are accepted."""
    return [
        p
        for p in problems
        if p.severity is KeySeverity.FATAL
        or (p.severity is KeySeverity.REFUSE and p.code.value not in accepted)
    ]
