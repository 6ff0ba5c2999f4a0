"""The `Store` interface (every table's methods) and `open_store`, which picks a backend by URL."""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tradelib.config import default_store_url
from tradelib.domain import require_utc, to_decimal
from tradelib.errors import DataError, StoreError
from tradelib.store.core import open_backend
from tradelib.store.journal import JournalMixin
from tradelib.store.operations import OperationsMixin
from tradelib.store.orders import OrdersMixin
from tradelib.store.portfolio import PortfolioMixin
from tradelib.store.records import utc_out
from tradelib.store.security import SecurityMixin

if TYPE_CHECKING:  # pandas costs ~1 s at import; only the candle methods need it
    import pandas as pd

STORE_URL_ENV = "TRADELIB_STORE_URL"
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
CANDLE_INPUT_COLUMNS = ("open_time", *PRICE_COLUMNS, "symbol", "timeframe")
CANDLE_KEY = ("symbol", "timeframe", "open_time")


class Store(OrdersMixin, PortfolioMixin, JournalMixin, OperationsMixin, SecurityMixin):
    """Persistent state of tradelib; see tradelib.store for the backends and their threading."""

    @abstractmethod
    def _write_candle_frame(self, conn: Any, frame: pd.DataFrame) -> None:
        """Upsert a prepared candle frame (columns exchange + CANDLE_INPUT_COLUMNS)."""

    def write_candles(
        self,
        exchange: str,
        candles: pd.DataFrame,
        symbol: str | None = None,
        timeframe: str | None = None,
    ) -> int:
        """Upsert candles in one batch; returns the number of distinct candles written.

        `candles` has columns open_time (aware), open, high, low, close, volume, symbol and
        timeframe; open_time may be the index, and `symbol`/`timeframe` fill missing columns.
        """
        frame = prepare_candles(exchange, candles, symbol, timeframe)
        if frame.empty:
            return 0
        with self.transaction():
            try:
                self._write_candle_frame(self._tx.conn, frame)
            except (StoreError, DataError) as exc:  # the backend's transaction is now aborted
                self._tx.broken = exc
                raise
            self._tx.wrote = True
        return len(frame)

    def read_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Candles with open_time in [start, end] (both inclusive), indexed by UTC open_time.

        Columns open/high/low/close/volume are float64: this is research and market data, the
        DataFrame path trades exactness for vectorised speed. Money never comes from here.
        """
        where = ["exchange = ?", "symbol = ?", "timeframe = ?"]
        params: list[Any] = [exchange, symbol, timeframe]
        if start is not None:
            where.append("open_time >= ?")
            params.append(require_utc(start, "read_candles start"))
        if end is not None:
            where.append("open_time <= ?")
            params.append(require_utc(end, "read_candles end"))
        doubles = ", ".join(f"CAST({c} AS DOUBLE PRECISION)" for c in PRICE_COLUMNS)
        sql = (
            f"SELECT open_time, {doubles} FROM candles WHERE {' AND '.join(where)} "
            "ORDER BY open_time"
        )
        with self.transaction():
            try:
                frame = self._select_frame(self._tx.conn, sql, params)
            except StoreError as exc:
                self._tx.broken = exc
                raise
        return candle_frame(frame)

    def _select_frame(self, conn: Any, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        """Rows of a SELECT as a DataFrame; backends with a columnar fetch override this."""
        import pandas as pd

        rows = self._execute(conn, sql, params)
        return pd.DataFrame(rows, columns=["open_time", *PRICE_COLUMNS])

    def candle_range(
        self, exchange: str, symbol: str, timeframe: str
    ) -> tuple[datetime, datetime] | None:
        """First and last stored open_time of a series, or None when it has no candles."""
        row = self._one(
            "SELECT min(open_time), max(open_time) FROM candles "
            "WHERE exchange = ? AND symbol = ? AND timeframe = ?",
            (exchange, symbol, timeframe),
        )
        if row is None or row[0] is None:
            return None
        first, last = utc_out(row[0]), utc_out(row[1])
        assert first is not None and last is not None
        return first, last


def candle_frame(selected: pd.DataFrame) -> pd.DataFrame:
    """open_time + price columns as the documented frame: UTC index (us), float64 columns."""
    import pandas as pd

    frame = selected.set_axis(["open_time", *PRICE_COLUMNS], axis=1)
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True).astype("datetime64[us, UTC]")
    for column in PRICE_COLUMNS:
        frame[column] = frame[column].astype("float64")
    return frame.set_index("open_time")


def prepare_candles(
    exchange: str,
    candles: pd.DataFrame,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> pd.DataFrame:
    """Validate a candle DataFrame and return exchange + CANDLE_INPUT_COLUMNS, one row per key."""
    import numpy as np
    import pandas as pd

    if not isinstance(candles, pd.DataFrame):
        raise DataError(f"write_candles needs a pandas DataFrame, got {type(candles).__name__}")
    if "open_time" not in candles.columns and candles.index.name == "open_time":
        candles = candles.reset_index()  # what read_candles returns
    for column, value in (("symbol", symbol), ("timeframe", timeframe)):
        if value is not None and column not in candles.columns:
            candles = candles.assign(**{column: value})
    missing = [c for c in CANDLE_INPUT_COLUMNS if c not in candles.columns]
    if missing:
        hint = " (rename 'date' to 'open_time')" if "date" in candles.columns else ""
        raise DataError(
            f"write_candles: the DataFrame lacks column(s) {missing}{hint}; expected "
            f"{list(CANDLE_INPUT_COLUMNS)}"
        )
    frame = candles.loc[:, list(CANDLE_INPUT_COLUMNS)].copy()
    times = pd.to_datetime(frame["open_time"])
    if getattr(times.dt, "tz", None) is None:
        raise DataError("write_candles: open_time must be timezone-aware UTC (got naive times)")
    frame["open_time"] = times.dt.tz_convert("UTC")
    for column in PRICE_COLUMNS:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series):
            values = series.astype("float64")
            bad = ~np.isfinite(values.to_numpy())
            if column != "volume":
                bad |= values.to_numpy() <= 0
            else:
                bad |= values.to_numpy() < 0
            frame[column] = values
        else:
            # Decimal or string input keeps every digit: it travels as text to the NUMERIC cast.
            frame[column] = series.map(lambda v, c=column: _decimal_text(v, c))
            bad = np.zeros(len(series), dtype=bool)
        if bad.any():
            where = frame["open_time"].iloc[int(np.argmax(bad))]
            raise DataError(
                f"write_candles: {column} must be a finite positive number; bad value "
                f"{series.iloc[int(np.argmax(bad))]!r} at {utc_out(where.to_pydatetime())}"
            )
    for column in ("symbol", "timeframe"):
        if frame[column].isna().any():
            raise DataError(f"write_candles: column {column} has empty values")
    # ON CONFLICT cannot touch one key twice in a statement: the last duplicate wins.
    frame = frame.drop_duplicates(subset=list(CANDLE_KEY), keep="last")
    frame.insert(0, "exchange", exchange)
    return frame.reset_index(drop=True)


def _decimal_text(value: Any, column: str) -> str:
    number = to_decimal(value, f"candle {column}")
    if number < 0 or (column != "volume" and number == 0):
        raise DataError(f"write_candles: {column} must be positive, got {value!r}")
    return str(number)


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open the store at `url` (default: $TRADELIB_STORE_URL, else the user's DuckDB file).

    Migrations are applied unless `migrate=False`.
    """
    chosen = url or os.environ.get(STORE_URL_ENV) or default_store_url()
    store = open_backend(chosen)
    if not isinstance(store, Store):
        raise StoreError(f"backend for {store.url} does not implement the Store interface")
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
