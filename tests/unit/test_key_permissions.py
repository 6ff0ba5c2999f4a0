"""The key rules (pure) and the venue answers they read, parsed from Binance's documented shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tradelib.domain import ApiKeyRestrictions
from tradelib.errors import ExchangeError
from tradelib.exchange.key_restrictions import not_reported, parse_restrictions
from tradelib.risk.key_permissions import (
    KeyProblemCode,
    KeySeverity,
    evaluate_key,
    parse_codes,
    refusing,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
C = KeyProblemCode


def _key(**flags: bool | None) -> ApiKeyRestrictions:
    base: dict[str, bool | None] = {
        "can_read": True,
        "can_trade_spot": True,
        "can_withdraw": False,
        "ip_restricted": True,
    }
    base.update(flags)
    return ApiKeyRestrictions("binance", NOW, **base)  # type: ignore[arg-type]


def _codes(r: ApiKeyRestrictions) -> list[KeyProblemCode]:
    return [p.code for p in evaluate_key(r)]


def test_a_careful_key_has_no_problem() -> None:
    assert evaluate_key(_key()) == []
    assert refusing(evaluate_key(_key()), frozenset()) == []


@pytest.mark.parametrize(
    ("flags", "code", "severity"),
    [
        ({"can_withdraw": True}, C.WITHDRAWALS_ENABLED, KeySeverity.REFUSE),
        ({"can_withdraw": None}, C.WITHDRAWALS_UNKNOWN, KeySeverity.REFUSE),
        ({"ip_restricted": False}, C.NO_IP_RESTRICTION, KeySeverity.REFUSE),
        ({"ip_restricted": None}, C.IP_RESTRICTION_UNKNOWN, KeySeverity.REFUSE),
        ({"can_trade_spot": False}, C.TRADING_DISABLED, KeySeverity.FATAL),
        ({"can_trade_spot": None}, C.TRADING_UNKNOWN, KeySeverity.REFUSE),
        ({"can_read": False}, C.READING_DISABLED, KeySeverity.FATAL),
        ({"can_transfer": True}, C.TRANSFER_ENABLED, KeySeverity.WARN),
    ],
)
def test_each_deviation_is_one_named_problem(
    flags: dict[str, bool | None], code: KeyProblemCode, severity: KeySeverity
) -> None:
    [problem] = evaluate_key(_key(**flags))
    assert problem.code is code and problem.severity is severity
    assert problem.message  # says what to do
    blocking = refusing([problem], frozenset())
    assert blocking == ([] if severity is KeySeverity.WARN else [problem])


def test_overrides_cover_only_what_they_name_and_never_fatal_problems() -> None:
    problems = evaluate_key(_key(can_withdraw=True, ip_restricted=False))
    assert [p.code for p in refusing(problems, {"no_ip_restriction"})] == [C.WITHDRAWALS_ENABLED]
    assert refusing(problems, {"no_ip_restriction", "withdrawals_enabled"}) == []
    fatal = evaluate_key(_key(can_trade_spot=False))
    assert refusing(fatal, {"trading_disabled"}) == fatal


def test_problem_codes_from_text() -> None:
    assert parse_codes([" no_ip_restriction"]) == frozenset({C.NO_IP_RESTRICTION})
    with pytest.raises(ValueError, match="unknown key problem 'no_ip'"):
        parse_codes(["no_ip"])
    with pytest.raises(ValueError, match="trading_disabled cannot be overridden"):
        parse_codes(["trading_disabled"])


BINANCE_ANSWER = {  # the documented shape of GET /sapi/v1/account/apiRestrictions
    "ipRestrict": False,
    "createTime": 1698645219000,
    "enableReading": True,
    "enableWithdrawals": True,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": True,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": True,
    "enableSpotAndMarginTrading": True,
    "enablePortfolioMarginTrading": False,
}


def test_binance_answer_is_read_field_by_field() -> None:
    r = parse_restrictions("binance", "binance", BINANCE_ANSWER, NOW)
    assert (r.can_read, r.can_trade_spot, r.can_withdraw, r.ip_restricted, r.can_transfer) == (
        True,
        True,
        True,
        False,
        True,
    )
    assert r.created_at == datetime(2023, 10, 30, 5, 53, 39, tzinfo=UTC)
    assert r.details["enableFutures"] is False and "ipRestrict" not in r.details
    assert _codes(r) == [C.WITHDRAWALS_ENABLED, C.NO_IP_RESTRICTION]
    missing = parse_restrictions("binance", "binance", {"enableReading": True}, NOW)
    assert set(_codes(missing)) == {
        C.TRADING_UNKNOWN,
        C.WITHDRAWALS_UNKNOWN,
        C.IP_RESTRICTION_UNKNOWN,
    }


def test_coinbase_answer_and_venues_that_say_nothing() -> None:
    answer = {"can_view": True, "can_trade": True, "can_transfer": False, "portfolio_uuid": "p1"}
    r = parse_restrictions("coinbase", "coinbase", answer, NOW)
    assert (r.can_trade_spot, r.can_withdraw, r.ip_restricted) == (True, False, None)
    assert _codes(r) == [C.IP_RESTRICTION_UNKNOWN]
    assert set(_codes(not_reported("kraken", NOW))) == {
        C.TRADING_UNKNOWN,
        C.WITHDRAWALS_UNKNOWN,
        C.IP_RESTRICTION_UNKNOWN,
    }
    with pytest.raises(ExchangeError, match="answered the API key permission request with list"):
        parse_restrictions("binance", "binance", [], NOW)
