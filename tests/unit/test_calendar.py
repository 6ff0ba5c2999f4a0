"""Unlock calendar: the bundled data, validation errors, queries and imports."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tradelib.errors import DataError
from tradelib.strategy.calendar import (
    COLUMNS,
    default_calendar_path,
    import_events,
    load_calendar,
    read_events,
)

CANDLES = Path(__file__).resolve().parents[2] / "data" / "candles" / "1h"


def _rows() -> list[dict[str, str]]:
    with default_calendar_path().open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_bundled_calendar_has_25_plus_sourced_events_with_candles() -> None:
    calendar = load_calendar()
    assert len(calendar) >= 25
    for event in calendar:
        assert event.source_url.startswith("https://")
        candles = pd.read_feather(CANDLES / f"{event.symbol}_USDT-1h.feather")
        t = pd.Timestamp(event.unlock_time)
        window = candles.loc[
            (candles["date"] >= t - pd.Timedelta(days=10))
            & (candles["date"] <= t + pd.Timedelta(days=10))
        ]
        assert len(window) >= 480, f"{event.symbol} {t}: {len(window)} hourly candles"


def test_low_confidence_rows_are_left_out_by_default() -> None:
    everything = load_calendar(min_confidence="low")
    default = load_calendar()
    dropped = {(e.symbol, e.unlock_time.date().isoformat()) for e in everything} - {
        (e.symbol, e.unlock_time.date().isoformat()) for e in default
    }
    assert ("SUI", "2024-05-31") in dropped
    assert all(e.confidence in {"high", "medium"} for e in default)


def test_events_for_and_upcoming() -> None:
    calendar = load_calendar()
    arb = calendar.events_for("arb")
    assert [e.unlock_time for e in arb] == sorted(e.unlock_time for e in arb)
    assert arb[0].unlock_time == datetime(2024, 3, 16, tzinfo=UTC)
    now = datetime(2024, 3, 10, tzinfo=UTC)
    soon = calendar.upcoming(now, timedelta(days=7))
    assert {(e.symbol, e.unlock_time.day) for e in soon} == {("APT", 12), ("ARB", 16)}
    with pytest.raises(DataError, match="timezone-aware"):
        calendar.upcoming(datetime(2024, 3, 10), timedelta(days=7))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("symbol", "DOGEX", "unknown symbol"),
        ("source_url", "", "value is missing"),
        ("unlock_time_utc", "2024-05", "lacks a time|cannot parse"),
        ("unlock_time_utc", "16/03/2024", "cannot parse"),
        ("unlock_time_utc", "2024-03-16T00:00:00", "lacks a time or a UTC offset"),
        ("pct_circulating", "1500", "out of range"),
        ("pct_circulating", "0", "out of range"),
        ("amount_tokens", "-5", "negative"),
        ("usd_value_approx", "lots", "not a number"),
        ("category", "whales", "unknown"),
    ],
)
def test_bad_row_names_file_row_and_column(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    rows = _rows()
    rows[4][column] = value
    if column == "pct_circulating":
        rows[4]["pct_basis"] = "circulating"
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=message) as info:
        load_calendar(path, min_confidence="low")
    text = str(info.value)
    assert str(path) in text
    assert "row 6" in text  # header is row 1, rows[4] is the fifth data row
    assert repr(column) in text


def test_duplicate_event_names_both_rows(tmp_path: Path) -> None:
    rows = _rows()
    rows.append(dict(rows[2], notes="same event again"))
    path = _write(tmp_path / "dup.csv", rows)
    with pytest.raises(DataError, match=r"duplicate event .*\(same as row 4\)") as info:
        load_calendar(path)
    assert f"row {len(rows) + 1}" in str(info.value)


def test_missing_header_column(tmp_path: Path) -> None:
    path = tmp_path / "nohead.csv"
    path.write_text("token,symbol,unlock_time_utc\nArbitrum,ARB,2024-03-16T00:00:00Z\n")
    with pytest.raises(DataError, match=r"row 1 \(header\) lacks column"):
        load_calendar(path)


def test_add_events_merges_and_rejects_duplicates(tmp_path: Path) -> None:
    calendar = load_calendar()
    new = dict(
        _rows()[0],
        symbol="ARB",
        token="Arbitrum",
        unlock_time_utc="2026-03-16T00:00:00Z",
        notes="upcoming monthly unlock",
    )
    merged = calendar.add_events(_write(tmp_path / "new.csv", [new]))
    assert len(merged) == len(calendar) + 1
    assert len(calendar) == len(load_calendar())  # the original is unchanged
    assert merged.upcoming(datetime(2026, 3, 1, tzinfo=UTC), timedelta(days=30))[0].symbol == "ARB"
    again = _write(tmp_path / "again.csv", [_rows()[0]])
    with pytest.raises(DataError, match=r"row 2.*duplicate event"):
        calendar.add_events(again)


def test_import_events_writes_valid_rows_only(tmp_path: Path) -> None:
    dst = _write(tmp_path / "calendar.csv", _rows())
    before = dst.read_text()
    good = dict(_rows()[0], unlock_time_utc="2026-04-16T00:00:00Z", symbol="ARB")
    bad = dict(good, unlock_time_utc="2026-05-16T00:00:00Z", source_url="")
    with pytest.raises(DataError, match="source_url"):
        import_events(_write(tmp_path / "bad.csv", [good, bad]), dst)
    assert dst.read_text() == before
    assert import_events(_write(tmp_path / "good.csv", [good]), dst) == 1
    events = read_events(dst)
    assert len(events) == len(_rows()) + 1
    assert any(e.unlock_time == datetime(2026, 4, 16, tzinfo=UTC) for e in events)


def test_a_non_utf8_calendar_names_its_row_and_writes_nothing(tmp_path: Path) -> None:
    dst = _write(tmp_path / "calendar.csv", _rows())
    before = dst.read_bytes()
    row = dict(_rows()[0], unlock_time_utc="2026-04-16T00:00:00Z", notes="Zürich desk")
    src = _write(tmp_path / "latin1.csv", [row])
    src.write_bytes(src.read_text().encode("latin-1"))  # what "Save as CSV" may write
    with pytest.raises(DataError) as info:
        import_events(src, dst)
    message = str(info.value)
    assert f"{src}: row 2 is not UTF-8 text (byte 0xfc" in message
    assert "Save the file as UTF-8" in message
    assert dst.read_bytes() == before


def test_an_excel_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain.csv", _rows())
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_events(marked) == read_events(plain)


def test_a_field_too_large_for_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "huge.csv", [dict(_rows()[0], notes="x" * 200_000)])
    with pytest.raises(DataError, match=r"huge\.csv: line \d+ is not valid CSV \(field larger"):
        read_events(path)


def test_a_horizon_beyond_the_calendar_s_dates_means_every_future_event() -> None:
    calendar = load_calendar()
    now = datetime(2024, 3, 10, tzinfo=UTC)
    everything = [e for e in calendar.events if e.unlock_time >= now]
    assert calendar.upcoming(now, timedelta(days=999_999_999)) == everything
