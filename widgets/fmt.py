"""Number, time and HTML formatting for the dashboard: aligned, signed, coloured, escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape

DASH = "—"


def money(value: Decimal | None, signed: bool = False, places: int = 2) -> str:
    """1,234.56 (or +1,234.56 / −1,234.56 when `signed`); a dash for None."""
    if value is None:
        return DASH
    text = f"{abs(value):,.{places}f}"
    if value < 0 and text.strip("0.,"):
        return f"−{text}"
    return f"+{text}" if signed and value > 0 else text


def pct(value: Decimal | None, signed: bool = False, places: int = 2) -> str:
    """12.34 % (signed like `money`)."""
    return DASH if value is None else f"{money(value, signed, places)} %"


def price(value: Decimal | None) -> str:
    """A price with the decimals its size needs (0.5123, 1.2345, 61,234.50)."""
    if value is None:
        return DASH
    size = abs(value)
    if size >= 1000:
        places = 2
    elif size >= 10:
        places = 3
    elif size >= Decimal("0.1"):
        places = 4
    elif size >= Decimal("0.001"):
        places = 6
    else:
        places = 8
    return money(value, places=places)


def qty(value: Decimal | None, places: int | None = None) -> str:
    """A quantity, grouped: without trailing zeros (1,234.5), or with `places` decimals."""
    if value is None:
        return DASH
    if places is not None:
        return money(value, places=places)
    return f"{value.normalize():,f}"


def age(span: timedelta) -> str:
    """2d 03h, 3h 07m, 12m 05s, 8s."""
    seconds = int(span.total_seconds())
    days, rest = divmod(max(seconds, 0), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def age_coarse(span: timedelta) -> str:
    """Like `age` but never with seconds past the first minute (a table that redraws less)."""
    seconds = int(span.total_seconds())
    if seconds < 60:
        return "<1m"
    return age(timedelta(seconds=seconds - seconds % 60)).replace(" 00s", "")


def minute(at: datetime | None) -> str:
    """YYYY-MM-DD HH:MM (UTC)."""
    return DASH if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def short(at: datetime | None) -> str:
    """MM-DD HH:MM:SS (UTC), for feeds where the year is obvious."""
    return DASH if at is None else at.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def stamp(at: datetime | None) -> str:
    """YYYY-MM-DD HH:MM:SS UTC."""
    return DASH if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def hms(at: datetime | None) -> str:
    """HH:MM:SS (UTC)."""
    return DASH if at is None else at.astimezone(UTC).strftime("%H:%M:%S")


def sign_class(value: Decimal | None) -> str:
    """CSS class for a P&L number: green above zero, red below, plain at zero or unknown."""
    if value is None or value == 0:
        return "tl-flat"
    return "tl-up" if value > 0 else "tl-down"


def esc(value: object) -> str:
    """HTML-escaped text."""
    return escape(str(value), quote=True)
