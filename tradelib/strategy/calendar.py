"""Token-unlock calendar: load, validate, query and extend a CSV of sourced unlock events.

Every row must carry a source; a bad row raises DataError naming the file, the row number as a
spreadsheet shows it (header = row 1), the column, what is wrong and what to do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from tradelib.config import repo_data_dir
from tradelib.domain import require_utc
from tradelib.errors import DataError

COLUMNS: tuple[str, ...] = (
    "token",
    "symbol",
    "unlock_time_utc",
    "amount_tokens",
    "pct_circulating",
    "pct_basis",
    "category",
    "usd_value_approx",
    "source_url",
    "confidence",
    "notes",
)
REQUIRED: tuple[str, ...] = ("token", "symbol", "unlock_time_utc", "category", "source_url")
CATEGORIES = frozenset({"team", "investors", "ecosystem", "community", "mixed", "unknown"})
# What `pct_circulating` is a percentage of. market_cap and supply_increase are, like
# circulating, "new tokens / circulating tokens"; total is a lower bound of that figure.
PCT_BASES = frozenset({"circulating", "supply_increase", "market_cap", "total"})
CONFIDENCE_ORDER = {"low": 0, "medium": 1, "high": 2}
# An unlock can exceed the circulating supply (PYTH's first cliff was 142 %), but a value above
# 1,000 % (ten times the float) is far more likely a token amount typed into the percent column.
MAX_PCT = Decimal(1000)


def default_calendar_path() -> Path:
    """The bundled calendar, data/unlocks.csv."""
    return repo_data_dir() / "unlocks.csv"


def default_known_symbols() -> frozenset[str]:
    """Symbols with bundled 1h candles (data/candles/1h/{SYM}_USDT-1h.feather)."""
    folder = repo_data_dir() / "candles" / "1h"
    return frozenset(p.name.split("_", 1)[0] for p in folder.glob("*_USDT-1h.feather"))


@dataclass(frozen=True, slots=True)
class UnlockEvent:
    """One scheduled release of locked tokens, with where the facts come from."""

    token: str
    symbol: str
    unlock_time: datetime
    category: str
    source_url: str
    amount_tokens: Decimal | None = None
    pct_circulating: Decimal | None = None
    pct_basis: str | None = None
    usd_value_approx: Decimal | None = None
    confidence: str = "high"
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "unlock_time", require_utc(self.unlock_time, "unlock_time"))

    @property
    def key(self) -> tuple[str, datetime]:
        """Identity of an event: two rows with the same symbol and time are duplicates."""
        return (self.symbol, self.unlock_time)


def _fail(path: Path, row: int, column: str, problem: str, todo: str) -> DataError:
    return DataError(f"{path}: row {row}, column {column!r}: {problem}. {todo}")


def _decimal(path: Path, row: int, column: str, raw: str) -> Decimal | None:
    if raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _fail(
            path, row, column, f"{raw!r} is not a number", "Write a plain number like 92650000"
        ) from None
    if not value.is_finite():
        raise _fail(path, row, column, f"{raw!r} is not finite", "Write a plain number")
    if value < 0:
        raise _fail(path, row, column, f"negative value {raw}", "Amounts and values must be >= 0")
    return value


def _time(path: Path, row: int, raw: str) -> datetime:
    todo = "Write ISO 8601 UTC like 2024-03-16T13:00:00Z (date-only events: T00:00:00Z + a note)"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _fail(path, row, "unlock_time_utc", f"cannot parse {raw!r}", todo) from None
    if "T" not in raw or value.tzinfo is None:
        raise _fail(path, row, "unlock_time_utc", f"{raw!r} lacks a time or a UTC offset", todo)
    return value.astimezone(UTC)


def _parse_row(path: Path, row: int, rec: dict[str, str], known: frozenset[str]) -> UnlockEvent:
    for column in REQUIRED:
        if not rec.get(column, "").strip():
            todo = (
                "Every event needs a link to the article or page that states it; never invent one"
                if column == "source_url"
                else f"Fill in {column}"
            )
            raise _fail(path, row, column, "value is missing", todo)
    symbol = rec["symbol"].strip().upper()
    if symbol not in known:
        raise _fail(
            path,
            row,
            "symbol",
            f"unknown symbol {symbol!r}",
            f"Use one of the known markets ({', '.join(sorted(known))}) or add the market first",
        )
    source = rec["source_url"].strip()
    if not source.startswith(("http://", "https://")):
        raise _fail(path, row, "source_url", f"{source!r} is not a URL", "Give an http(s) link")
    category = rec["category"].strip().lower()
    if category not in CATEGORIES:
        raise _fail(
            path, row, "category", f"unknown {category!r}", f"Use one of {sorted(CATEGORIES)}"
        )
    pct = _decimal(path, row, "pct_circulating", rec.get("pct_circulating", "").strip())
    basis = rec.get("pct_basis", "").strip().lower() or None
    if pct is not None:
        if not (0 < pct <= MAX_PCT):
            raise _fail(
                path,
                row,
                "pct_circulating",
                f"{pct} is out of range",
                f"Write a percentage with 0 < pct <= {MAX_PCT} (2 means 2 %)",
            )
        if basis not in PCT_BASES:
            raise _fail(
                path,
                row,
                "pct_basis",
                f"{basis!r} is not a known basis for the percentage",
                f"Say what the percentage is of: one of {sorted(PCT_BASES)}",
            )
    confidence = rec.get("confidence", "").strip().lower() or "high"
    if confidence not in CONFIDENCE_ORDER:
        raise _fail(path, row, "confidence", f"unknown {confidence!r}", "Use high, medium or low")
    return UnlockEvent(
        token=rec["token"].strip(),
        symbol=symbol,
        unlock_time=_time(path, row, rec["unlock_time_utc"].strip()),
        category=category,
        source_url=source,
        amount_tokens=_decimal(path, row, "amount_tokens", rec.get("amount_tokens", "").strip()),
        pct_circulating=pct,
        pct_basis=basis if pct is not None else None,
        usd_value_approx=_decimal(
            path, row, "usd_value_approx", rec.get("usd_value_approx", "").strip()
        ),
        confidence=confidence,
        notes=rec.get("notes", "").strip(),
    )


def read_events(
    path: Path | str,
    known_symbols: Iterable[str] | None = None,
    existing: Iterable[UnlockEvent] = (),
) -> list[UnlockEvent]:
    """Parse and validate every row of a calendar CSV; duplicates of `existing` are errors too."""
    path = Path(path)
    known = frozenset(s.upper() for s in known_symbols) if known_symbols is not None else None
    if known is None:
        known = default_known_symbols()
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DataError(
                f"{path}: row 1 (header) lacks column(s) {missing}. "
                f"The header must hold {', '.join(COLUMNS)}"
            )
        seen = {e.key: f"an existing calendar event ({e.source_url})" for e in existing}
        events: list[UnlockEvent] = []
        for row, rec in enumerate(reader, start=2):
            if None in rec:
                raise _fail(path, row, "(extra)", "more fields than the header", "Quote commas")
            event = _parse_row(path, row, {k: v or "" for k, v in rec.items()}, known)
            if event.key in seen:
                raise _fail(
                    path,
                    row,
                    "unlock_time_utc",
                    f"duplicate event {event.symbol} at {event.unlock_time.isoformat()} "
                    f"(same as {seen[event.key]})",
                    "Keep one row per symbol and time; merge the sources into notes",
                )
            seen[event.key] = f"row {row}"
            events.append(event)
    except csv.Error as exc:
        raise DataError(
            f"{path}: line {reader.line_num} is not valid CSV ({exc}). Save it as plain "
            "comma-separated text"
        ) from None
    return events


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, an Excel byte-order mark allowed); DataError says where not."""
    if not path.is_file():
        raise DataError(f"{path}: calendar file not found. Check the path")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the calendar file ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: row {line} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}). Save the file as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from None


class UnlockCalendar:
    """An immutable, time-sorted set of unlock events with queries the strategy needs."""

    def __init__(
        self, events: Iterable[UnlockEvent], known_symbols: Iterable[str] | None = None
    ) -> None:
        self._events = tuple(sorted(events, key=lambda e: (e.unlock_time, e.symbol)))
        self._known = (
            frozenset(known_symbols)
            if known_symbols is not None
            else frozenset(e.symbol for e in self._events)
        )
        keys = [e.key for e in self._events]
        if len(set(keys)) != len(keys):
            raise DataError("calendar holds duplicate events (same symbol and unlock time)")

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[UnlockEvent]:
        return iter(self._events)

    def __repr__(self) -> str:
        return f"UnlockCalendar({len(self._events)} events, symbols={sorted(self.symbols)})"

    @property
    def events(self) -> tuple[UnlockEvent, ...]:
        """All events, sorted by unlock time."""
        return self._events

    @property
    def symbols(self) -> frozenset[str]:
        """Symbols that have at least one event."""
        return frozenset(e.symbol for e in self._events)

    @property
    def known_symbols(self) -> frozenset[str]:
        """Symbols a newly added event may use."""
        return self._known

    def events_for(self, symbol: str) -> list[UnlockEvent]:
        """Events of one symbol, oldest first."""
        wanted = symbol.upper()
        return [e for e in self._events if e.symbol == wanted]

    def upcoming(self, now: datetime, horizon: timedelta) -> list[UnlockEvent]:
        """Events with now <= unlock_time < now + horizon."""
        now = require_utc(now, "now")
        if horizon < timedelta(0):
            raise DataError(f"horizon must be >= 0, got {horizon}")
        try:
            end = now + horizon
        except OverflowError:  # beyond year 9999: every event from now on
            end = datetime.max.replace(tzinfo=UTC)
        return [e for e in self._events if now <= e.unlock_time < end]

    def between(self, start: datetime, end: datetime) -> list[UnlockEvent]:
        """Events with start <= unlock_time < end."""
        start, end = require_utc(start, "start"), require_utc(end, "end")
        return [e for e in self._events if start <= e.unlock_time < end]

    def filter(
        self,
        min_confidence: str = "medium",
        symbols: Iterable[str] | None = None,
    ) -> UnlockCalendar:
        """A calendar keeping events at least as confident as `min_confidence` (and `symbols`)."""
        if min_confidence not in CONFIDENCE_ORDER:
            raise DataError(f"min_confidence must be high, medium or low, got {min_confidence!r}")
        floor = CONFIDENCE_ORDER[min_confidence]
        wanted = None if symbols is None else {s.upper() for s in symbols}
        kept = [
            e
            for e in self._events
            if CONFIDENCE_ORDER[e.confidence] >= floor and (wanted is None or e.symbol in wanted)
        ]
        return UnlockCalendar(kept, self._known)

    def add_events(self, csv_path: Path | str) -> UnlockCalendar:
        """A new calendar with the rows of another CSV merged in, validated like load_calendar."""
        added = read_events(csv_path, self._known, existing=self._events)
        return UnlockCalendar([*self._events, *added], self._known)

    def to_rows(self) -> list[dict[str, str]]:
        """Events as CSV rows in COLUMNS order."""
        return [_to_row(e) for e in self._events]

    def save(self, path: Path | str) -> None:
        """Write the calendar as CSV (COLUMNS header), atomically."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.to_rows())
        tmp.replace(path)


def _fmt(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _to_row(e: UnlockEvent) -> dict[str, str]:
    return {
        "token": e.token,
        "symbol": e.symbol,
        "unlock_time_utc": e.unlock_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "amount_tokens": _fmt(e.amount_tokens),
        "pct_circulating": _fmt(e.pct_circulating),
        "pct_basis": e.pct_basis or "",
        "category": e.category,
        "usd_value_approx": _fmt(e.usd_value_approx),
        "source_url": e.source_url,
        "confidence": e.confidence,
        "notes": e.notes,
    }


def load_calendar(
    path: Path | str | None = None,
    known_symbols: Iterable[str] | None = None,
    min_confidence: str = "medium",
) -> UnlockCalendar:
    """Load and validate a calendar CSV; low-confidence rows are dropped unless asked for.

    `known_symbols` defaults to the symbols with bundled 1h candles; pass the exchange's
    markets for live use.
    """
    path = Path(path) if path is not None else default_calendar_path()
    known = (
        frozenset(s.upper() for s in known_symbols)
        if known_symbols is not None
        else default_known_symbols()
    )
    calendar = UnlockCalendar(read_events(path, known), known)
    return calendar.filter(min_confidence=min_confidence)


def import_events(
    src: Path | str, dst: Path | str, known_symbols: Iterable[str] | None = None
) -> int:
    """Validate `src` and merge its rows into the calendar file `dst`; return how many were added.

    Nothing is written when any row of `src` is invalid or duplicates a row of `dst`.
    """
    dst = Path(dst)
    known = (
        frozenset(s.upper() for s in known_symbols)
        if known_symbols is not None
        else default_known_symbols()
    )
    current = read_events(dst, known) if dst.exists() else []
    added = read_events(src, known, existing=current)
    UnlockCalendar([*current, *added], known).save(dst)
    return len(added)
