"""Real market history: Treasury par yield curves, SOFR and effective fed funds.

Loaders validate as they read and raise :class:`~xmargin.errors.InputError` naming the file,
the row (1-based, header = row 1) and the field.  Rows are kept as NumPy arrays:
``dates`` (``datetime64[D]``, ascending) and values in percent, NaN where a tenor was not
published that day.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from xmargin.config import file_stamp
from xmargin.errors import InputError, MissingMarketDataError

T = TypeVar("T")

#: Tenors of Treasury's daily par yield curve, as column labels and in months.
TENORS: tuple[str, ...] = ("1M", "2M", "3M", "4M", "6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y", "20Y", "30Y")
TENOR_MONTHS: tuple[int, ...] = (1, 2, 3, 4, 6, 12, 24, 36, 60, 84, 120, 240, 360)

#: Yields outside this range (percent) are rejected as data errors.
YIELD_RANGE_PCT = (-5.0, 30.0)

FloatArray = npt.NDArray[np.float64]
DateArray = npt.NDArray[np.datetime64]


def _parse_date(text: str, *, source: Path, row: int, field_name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"'{text}' is not a date (expected YYYY-MM-DD)", source=source, row=row, field=field_name
        ) from None


def _parse_pct(text: str, *, source: Path, row: int, field_name: str, lo: float, hi: float) -> float:
    text = text.strip()
    if text == "":
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"'{text}' is not a number", source=source, row=row, field=field_name) from None
    if not np.isfinite(value) or not lo <= value <= hi:
        raise InputError(
            f"{value} percent is outside the accepted range [{lo}, {hi}]",
            source=source,
            row=row,
            field=field_name,
        )
    return value


@dataclass(frozen=True, eq=False)
class ParYieldHistory:
    """Daily par yield curves, one row per published day.

    ``yields_pct[d, k]`` is the bond-equivalent par yield in percent of tenor ``TENORS[k]``
    on ``dates[d]``, NaN where Treasury did not publish that tenor.
    """

    source: Path
    dates: DateArray
    yields_pct: FloatArray
    empty_rows: tuple[date, ...] = field(default=())

    def __post_init__(self) -> None:
        self.yields_pct.setflags(write=False)
        self.dates.setflags(write=False)

    @property
    def first_date(self) -> date:
        return self.dates[0].astype(date)  # type: ignore[no-any-return]

    @property
    def last_date(self) -> date:
        return self.dates[-1].astype(date)  # type: ignore[no-any-return]

    def index_of(self, as_of: date, *, previous_business_day: bool = False) -> int:
        """Row index of ``as_of``; with ``previous_business_day`` the nearest earlier row.

        Raises :class:`MissingMarketDataError` saying why the date has no curve (weekend,
        holiday, before or after the data) and what to do.
        """
        target = np.datetime64(as_of, "D")
        i = int(np.searchsorted(self.dates, target, side="right")) - 1
        if i >= 0 and self.dates[i] == target:
            return i
        if previous_business_day and i >= 0 and as_of <= self.last_date + timedelta(days=7):
            return i
        if as_of < self.first_date:
            why = f"before the first date in the data ({self.first_date})"
        elif as_of > self.last_date:
            why = f"after the last date in the data ({self.last_date}); run 'xmargin data fetch' for newer data"
        elif as_of.weekday() >= 5:
            why = f"a {as_of.strftime('%A')}"
        elif as_of in self.empty_rows:
            why = "a day Treasury lists with no rates (bond market holiday)"
        else:
            why = "a bond-market holiday (no curve published)"
        helps = i >= 0 and as_of <= self.last_date + timedelta(days=7)  # suggested only where it works
        hint = "" if previous_business_day or not helps else "; pass --previous-business-day to use the nearest earlier curve"
        raise MissingMarketDataError(f"{self.source}: no par yield curve for {as_of}: {why}{hint}")

    def curve(self, as_of: date, *, previous_business_day: bool = False) -> tuple[date, FloatArray]:
        """``(curve date, yields in percent for every tenor, NaN where not published)``."""
        i = self.index_of(as_of, previous_business_day=previous_business_day)
        return self.dates[i].astype(date), self.yields_pct[i].copy()


def load_par_yields(path: str | Path) -> ParYieldHistory:
    """Read Treasury's daily par yield curve file (columns ``date,1M,...,30Y``, percent).

    Rows may come in any order (Treasury's archive is newest first); duplicates, bad dates,
    non-numeric cells and yields outside ``YIELD_RANGE_PCT`` are errors naming file, row and
    field.  A row with every tenor empty (Treasury lists some holidays that way) is kept out
    of the history and remembered in ``empty_rows``.
    """
    path = Path(path).resolve()
    return _load_par_yields_cached(path, file_stamp(path))


@lru_cache(maxsize=8)
def _load_par_yields_cached(path: Path, stamp: int) -> ParYieldHistory:
    return _on_disk("par-yields", path, {}, lambda: _read_par_yields(path))


def _on_disk(namespace: str, path: Path, extra: dict[str, str], build: Callable[[], T]) -> T:
    """``build()`` through the on-disk context cache, keyed by the file's SHA-256 (a parse of
    the whole history is a good part of a warm start; a missing file is never cached)."""
    from xmargin.diskcache import cached, files_key

    if not path.is_file():
        return build()
    return cached(namespace, {"file": files_key([path]), **extra}, build)


def _read_par_yields(path: Path) -> ParYieldHistory:
    if not path.is_file():
        raise MissingMarketDataError(f"{path}: par yield file not found")
    lo, hi = YIELD_RANGE_PCT
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError("file is empty", source=path, row=1) from None
        if not header or header[0].lower() != "date":
            raise InputError("first column must be 'date'", source=path, row=1, field=header[0] if header else None)
        unknown = [h for h in header[1:] if h not in TENORS]
        if unknown:
            raise InputError(
                f"unknown tenor column(s) {unknown}; expected a subset of {list(TENORS)}",
                source=path,
                row=1,
                field=unknown[0],
            )
        columns = [TENORS.index(h) for h in header[1:]]
        dates: list[date] = []
        rows: list[list[float]] = []
        empty: list[date] = []
        seen: dict[date, int] = {}
        for rownum, record in enumerate(reader, start=2):
            if not record or all(not c.strip() for c in record):
                continue
            if len(record) != len(header):
                raise InputError(
                    f"expected {len(header)} fields, found {len(record)}",
                    source=path,
                    row=rownum,
                    field=header[len(record)] if len(record) < len(header) else f"column {len(header) + 1}",
                )
            d = _parse_date(record[0], source=path, row=rownum, field_name="date")
            if d in seen:
                raise InputError(
                    f"duplicate date {d} (first seen in row {seen[d]})", source=path, row=rownum, field="date"
                )
            seen[d] = rownum
            values = [float("nan")] * len(TENORS)
            for col, text in zip(columns, record[1:], strict=True):
                values[col] = _parse_pct(text, source=path, row=rownum, field_name=TENORS[col], lo=lo, hi=hi)
            if all(np.isnan(values)):
                empty.append(d)
                continue
            dates.append(d)
            rows.append(values)
    if not dates:
        raise InputError("no data rows", source=path)
    order = np.argsort(np.array(dates, dtype="datetime64[D]"), kind="stable")
    return ParYieldHistory(
        source=path,
        dates=np.array(dates, dtype="datetime64[D]")[order],
        yields_pct=np.array(rows, dtype=np.float64)[order],
        empty_rows=tuple(sorted(empty)),
    )


@dataclass(frozen=True, eq=False)
class RateHistory:
    """A daily overnight rate series (SOFR, effective fed funds) in percent."""

    source: Path
    name: str
    dates: DateArray
    rates_pct: FloatArray

    def on_or_before(self, d: date) -> tuple[date, float]:
        """The latest published fixing on or before ``d``."""
        i = int(np.searchsorted(self.dates, np.datetime64(d, "D"), side="right")) - 1
        if i < 0:
            raise MissingMarketDataError(f"{self.source}: no {self.name} fixing on or before {d}")
        return self.dates[i].astype(date), float(self.rates_pct[i])

    def fixings(self, start: date, end: date) -> tuple[DateArray, FloatArray]:
        """Fixings with ``start <= date < end``."""
        lo = int(np.searchsorted(self.dates, np.datetime64(start, "D"), side="left"))
        hi = int(np.searchsorted(self.dates, np.datetime64(end, "D"), side="left"))
        return self.dates[lo:hi], self.rates_pct[lo:hi]


def load_rate_series(path: str | Path, name: str) -> RateHistory:
    """Read a two-column ``date,<rate>_pct`` file (SOFR, DFF); same validation as yields."""
    path = Path(path).resolve()
    return _load_rate_series_cached(path, name, file_stamp(path))


@lru_cache(maxsize=8)
def _load_rate_series_cached(path: Path, name: str, stamp: int) -> RateHistory:
    return _on_disk("rate-series", path, {"name": name}, lambda: _read_rate_series(path, name))


def _read_rate_series(path: Path, name: str) -> RateHistory:
    if not path.is_file():
        raise MissingMarketDataError(f"{path}: {name} file not found")
    lo, hi = YIELD_RANGE_PCT
    dates: list[date] = []
    values: list[float] = []
    seen: dict[date, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or len(header) != 2 or header[0].strip().lower() != "date":
            raise InputError("expected a header 'date,<rate>_pct'", source=path, row=1)
        field_name = header[1].strip()
        for rownum, record in enumerate(reader, start=2):
            if not record or all(not c.strip() for c in record):
                continue
            if len(record) != 2:
                raise InputError(
                    f"expected 2 fields, found {len(record)}",
                    source=path,
                    row=rownum,
                    field=("date", field_name)[len(record)] if len(record) < 2 else "column 3",
                )
            d = _parse_date(record[0], source=path, row=rownum, field_name="date")
            if d in seen:
                raise InputError(
                    f"duplicate date {d} (first seen in row {seen[d]})", source=path, row=rownum, field="date"
                )
            seen[d] = rownum
            v = _parse_pct(record[1], source=path, row=rownum, field_name=field_name, lo=lo, hi=hi)
            if np.isnan(v):
                continue
            dates.append(d)
            values.append(v)
    if not dates:
        raise InputError("no data rows", source=path)
    dt_arr = np.array(dates, dtype="datetime64[D]")
    order = np.argsort(dt_arr, kind="stable")
    return RateHistory(source=path, name=name, dates=dt_arr[order], rates_pct=np.array(values)[order])
