"""Market history loaders: validation of bad files, as-of lookups, and the real files.

Independent references: the row counts, quirks and spot values documented in
``yields/SOURCE.md``, ``sofr/SOURCE.md`` and ``fedfunds/SOURCE.md`` (values read from
Treasury, the New York Fed and FRED, cross-checked there against independent copies).
Bad files are written to ``tmp_path``; every error must name the file, the 1-based row
(header = row 1) and the field, as promised in :mod:`xmargin.errors`.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import InputError, MissingMarketDataError
from xmargin.market.history import TENORS, load_par_yields, load_rate_series
from xmargin.market.snapshot import load_snapshot

HEADER = "date," + ",".join(TENORS)
GOOD_ROWS = [
    "2024-06-24," + ",".join(["5.5"] * len(TENORS)),
    "2024-06-25," + ",".join(["5.4"] * len(TENORS)),
    "2024-06-26," + ",".join(["5.3"] * len(TENORS)),
]


def _write(tmp_path: Path, name: str, lines: list[str], newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path


def _assert_names(exc: InputError, path: Path, row: int, field: str) -> None:
    message = str(exc)
    assert str(path.resolve()) in message or str(path) in message, message
    assert f"row {row}" in message, message
    assert f"field '{field}'" in message, message
    assert (exc.row, exc.field) == (row, field)


# ---------------------------------------------------------------------------------------------
# par yields: bad inputs
# ---------------------------------------------------------------------------------------------

BAD_PAR_FILES = {
    # name: (lines, row, field, words expected in the message)
    "bad_date": ([HEADER, GOOD_ROWS[0], "2024-13-45," + ",".join(["5"] * 13)], 3, "date", "not a date"),
    "us_date": ([HEADER, "06/26/24," + ",".join(["5"] * 13)], 2, "date", "YYYY-MM-DD"),
    "non_numeric": ([HEADER, GOOD_ROWS[0], "2024-06-25," + ",".join(["5"] * 6 + ["N/A"] + ["5"] * 6)], 3, "2Y", "not a number"),
    "duplicate": ([HEADER, GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[0]], 4, "date", "duplicate"),
    "too_high": ([HEADER, GOOD_ROWS[0], "2024-06-25," + ",".join(["5"] * 12 + ["30.5"])], 3, "30Y", "outside"),
    "too_low": ([HEADER, "2024-06-25,-5.01," + ",".join(["5"] * 12)], 2, "1M", "outside"),
    "nan_text": ([HEADER, "2024-06-25," + ",".join(["5"] * 10 + ["nan", "5", "5"])], 2, "10Y", "outside"),
    "unknown_tenor": (["date,1M,3M,15Y", "2024-06-25,5,5,5"], 1, "15Y", "unknown tenor"),
    "first_column": (["day,1M,3M", "2024-06-25,5,5"], 1, "day", "first column must be 'date'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAR_FILES))
def test_bad_par_yield_file_names_file_row_and_field(tmp_path: Path, case: str) -> None:
    lines, row, field, words = BAD_PAR_FILES[case]
    path = _write(tmp_path, f"{case}.csv", lines)
    with pytest.raises(InputError) as info:
        load_par_yields(path)
    _assert_names(info.value, path, row, field)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ("2024-06-25," + ",".join(["5"] * 12), "30Y"),  # one field short: the first missing column
        ("2024-06-25," + ",".join(["5"] * 14), "column 15"),  # one too many: the first extra one
    ],
)
def test_wrong_column_count_names_file_row_and_field(tmp_path: Path, record: str, field: str) -> None:
    path = _write(tmp_path, "columns.csv", [HEADER, GOOD_ROWS[0], record])
    with pytest.raises(InputError, match="expected 14 fields") as info:
        load_par_yields(path)
    _assert_names(info.value, path, 3, field)


def test_boundary_yields_accepted_and_rows_sorted(tmp_path: Path) -> None:
    """[-5, 30] is inclusive; rows may come newest first (Treasury's archive); CRLF is fine."""
    lines = [HEADER, "2024-06-26,-5," + ",".join(["30"] * 12), GOOD_ROWS[1], GOOD_ROWS[0]]
    history = load_par_yields(_write(tmp_path, "edge.csv", lines, newline="\r\n"))
    assert list(history.dates.astype(object)) == [date(2024, 6, 24), date(2024, 6, 25), date(2024, 6, 26)]
    assert history.yields_pct[-1, 0] == -5.0 and history.yields_pct[-1, -1] == 30.0


def test_empty_cells_are_nan_and_empty_rows_remembered(tmp_path: Path) -> None:
    lines = [HEADER, GOOD_ROWS[0], "2024-06-25" + "," * 13, "2024-06-26,,5.2," + ",".join(["5.3"] * 11)]
    history = load_par_yields(_write(tmp_path, "gaps.csv", lines))
    assert history.empty_rows == (date(2024, 6, 25),)
    assert len(history.dates) == 2
    assert math.isnan(history.yields_pct[1, 0]) and history.yields_pct[1, 1] == 5.2


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(MissingMarketDataError, match="not found"):
        load_par_yields(tmp_path / "nope.csv")
    empty = _write(tmp_path, "empty.csv", [])
    with pytest.raises(InputError, match="empty") as info:
        load_par_yields(empty)
    assert info.value.row == 1 and str(empty.resolve()) in str(info.value)
    header_only = _write(tmp_path, "header_only.csv", [HEADER])
    with pytest.raises(InputError, match="no data rows"):
        load_par_yields(header_only)


# ---------------------------------------------------------------------------------------------
# par yields: as-of lookups
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def small_history(tmp_path: Path):
    """2024-06-14 (Fri), 06-17 (Mon), 06-18 (Tue), [06-19 Juneteenth], 06-20 (Thu)."""
    rows = [
        "2024-06-14," + ",".join(["5.0"] * 13),
        "2024-06-17," + ",".join(["5.1"] * 13),
        "2024-06-18," + ",".join(["5.2"] * 13),
        "2024-06-20," + ",".join(["5.3"] * 13),
    ]
    return load_par_yields(_write(tmp_path, "small.csv", [HEADER, *rows]))


@pytest.mark.parametrize(
    ("as_of", "why"),
    [
        (date(2024, 6, 15), "a Saturday"),
        (date(2024, 6, 16), "a Sunday"),
        (date(2024, 6, 19), "holiday"),
        (date(2024, 6, 13), "before the first date in the data (2024-06-14)"),
        (date(2024, 6, 21), "after the last date in the data (2024-06-20)"),
        (date(2024, 7, 31), "after the last date in the data (2024-06-20)"),
    ],
)
def test_as_of_without_curve_says_why_and_suggests_previous_business_day(small_history, as_of: date, why: str) -> None:
    """The --previous-business-day hint is given only where it would find a curve: not before
    the data, not more than a week after it."""
    with pytest.raises(MissingMarketDataError) as info:
        small_history.curve(as_of)
    message = str(info.value)
    assert why in message
    assert str(as_of) in message
    helps = date(2024, 6, 14) <= as_of <= date(2024, 6, 27)
    assert ("--previous-business-day" in message) == helps
    assert str(small_history.source) in message


@pytest.mark.parametrize(
    ("as_of", "used"),
    [
        (date(2024, 6, 15), date(2024, 6, 14)),
        (date(2024, 6, 16), date(2024, 6, 14)),
        (date(2024, 6, 19), date(2024, 6, 18)),
        (date(2024, 6, 18), date(2024, 6, 18)),
        (date(2024, 6, 21), date(2024, 6, 20)),  # within a week after the data
    ],
)
def test_previous_business_day_uses_nearest_prior_curve(small_history, as_of: date, used: date) -> None:
    curve_date, yields = small_history.curve(as_of, previous_business_day=True)
    assert curve_date == used
    row = int(np.flatnonzero(small_history.dates == np.datetime64(used, "D"))[0])
    np.testing.assert_array_equal(yields, small_history.yields_pct[row])


def test_previous_business_day_cannot_reach_before_or_far_after_the_data(small_history) -> None:
    with pytest.raises(MissingMarketDataError, match="before the first date") as info:
        small_history.curve(date(2024, 6, 13), previous_business_day=True)
    assert "--previous-business-day" not in str(info.value)
    with pytest.raises(MissingMarketDataError, match="after the last date"):
        small_history.curve(date(2024, 7, 31), previous_business_day=True)


# ---------------------------------------------------------------------------------------------
# rate series (SOFR, effective fed funds): same validation
# ---------------------------------------------------------------------------------------------

BAD_RATE_FILES = {
    "bad_date": (["date,sofr_pct", "2024-06-25,5.33", "2024-02-30,5.31"], 3, "date"),
    "non_numeric": (["date,sofr_pct", "2024-06-25,5.33", "2024-06-26,five"], 3, "sofr_pct"),
    "duplicate": (["date,sofr_pct", "2024-06-25,5.33", "2024-06-25,5.31"], 3, "date"),
    "out_of_range": (["date,sofr_pct", "2024-06-25,533"], 2, "sofr_pct"),
    "too_many": (["date,sofr_pct", "2024-06-25,5.33,5.34"], 2, "column 3"),
    "too_few": (["date,sofr_pct", "2024-06-25,5.33", "2024-06-26"], 3, "sofr_pct"),
}


@pytest.mark.parametrize("case", sorted(BAD_RATE_FILES))
def test_bad_rate_file_names_file_row_and_field(tmp_path: Path, case: str) -> None:
    lines, row, field = BAD_RATE_FILES[case]
    path = _write(tmp_path, f"rate_{case}.csv", lines)
    with pytest.raises(InputError) as info:
        load_rate_series(path, "SOFR")
    _assert_names(info.value, path, row, field)


def test_rate_series_bad_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "rate_header.csv", ["day,rate,extra", "2024-06-25,5.33,1"])
    with pytest.raises(InputError, match="header") as info:
        load_rate_series(path, "SOFR")
    assert info.value.row == 1 and str(path.resolve()) in str(info.value)


# ---------------------------------------------------------------------------------------------
# the real files
# ---------------------------------------------------------------------------------------------

YIELD_SPOT_CHECKS_10Y = {  # yields/SOURCE.md, "Spot checks (10Y)"
    date(2008, 12, 30): 2.11,
    date(2020, 3, 9): 0.54,
    date(2023, 10, 19): 4.98,
    date(1990, 1, 2): 7.94,
    date(2025, 7, 11): 4.43,
    date(2025, 10, 31): 4.11,
}


def test_real_par_yield_file(data_dir: Path) -> None:
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    # 8,966 rows in the file, less the empty 2010-10-11 row
    assert len(history.dates) == 8966 - 1
    assert history.empty_rows == (date(2010, 10, 11),)
    assert (history.first_date, history.last_date) == (date(1990, 1, 2), date(2025, 10, 31))
    assert np.all(np.diff(history.dates).astype(int) > 0)
    ten = TENORS.index("10Y")
    for d, value in YIELD_SPOT_CHECKS_10Y.items():
        _, yields = history.curve(d)
        assert yields[ten] == value, d


def test_real_par_yield_tenor_availability(data_dir: Path) -> None:
    """The quirks listed in yields/SOURCE.md: when each tenor starts or pauses."""
    history = load_par_yields(data_dir / "yields" / "par_yield_curve.csv")
    published = ~np.isnan(history.yields_pct)
    dates = history.dates

    def first_published(tenor: str) -> date:
        return dates[np.argmax(published[:, TENORS.index(tenor)])].astype(date)

    assert first_published("1M") == date(2001, 7, 31)
    assert first_published("2M") == date(2018, 10, 16)
    assert first_published("4M") == date(2022, 10, 19)
    col20, col30 = TENORS.index("20Y"), TENORS.index("30Y")
    gap20 = (dates >= np.datetime64("1990-01-02")) & (dates <= np.datetime64("1993-09-30"))
    assert not published[gap20, col20].any() and published[~gap20, col20].all()
    gap30 = (dates >= np.datetime64("2002-02-19")) & (dates <= np.datetime64("2006-02-08"))
    assert not published[gap30, col30].any() and published[~gap30, col30].all()
    # 6M ... 10Y are published every day; 3M every day but three in December 2008 (bill
    # yields at zero; a quirk SOURCE.md does not list, checked against the raw file here)
    core = [TENORS.index(t) for t in ("6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y")]
    assert published[:, core].all()
    no_3m = dates[~published[:, TENORS.index("3M")]].astype(object).tolist()
    assert no_3m == [date(2008, 12, 10), date(2008, 12, 18), date(2008, 12, 24)]
    raw = (data_dir / "yields" / "par_yield_curve.csv").read_text().splitlines()
    assert "2008-12-10,0,,,,0.21,0.49,0.86,1.21,1.62,2.05,2.69,3.39,3.09" in raw


def test_real_rate_series(data_dir: Path) -> None:
    sofr = load_rate_series(data_dir / "sofr" / "sofr.csv", "SOFR")
    assert len(sofr.dates) == 2109
    for d, v in {date(2019, 9, 17): 5.25, date(2020, 3, 16): 0.26, date(2024, 3, 1): 5.31,
                 date(2025, 12, 31): 3.87, date(2026, 9, 11): 3.62}.items():
        assert sofr.on_or_before(d) == (d, v)
    dff = load_rate_series(data_dir / "fedfunds" / "dff.csv", "EFFR")
    assert len(dff.dates) == 18481
    for d, v in {date(1980, 1, 7): 14.0, date(2008, 12, 16): 0.17, date(2015, 12, 17): 0.37,
                 date(2019, 9, 17): 2.30, date(2023, 8, 1): 5.33, date(2025, 12, 31): 3.64}.items():
        assert dff.on_or_before(d) == (d, v)
    with pytest.raises(MissingMarketDataError):
        sofr.on_or_before(date(2018, 4, 2))


def test_real_snapshot_and_previous_business_day(data_dir: Path) -> None:
    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    assert snap.as_of == date(2024, 6, 26) and snap.settle == date(2024, 6, 27)
    assert snap.tenors == TENORS
    assert snap.par_yields[TENORS.index("10Y")] == pytest.approx(0.0432, abs=1e-15)
    with pytest.raises(MissingMarketDataError, match="Saturday.*--previous-business-day"):
        load_snapshot(date(2024, 6, 29), data_dir=data_dir)
    with pytest.raises(MissingMarketDataError, match="Columbus|holiday"):
        load_snapshot(date(2010, 10, 11), data_dir=data_dir)
    friday = load_snapshot(date(2024, 6, 29), data_dir=data_dir, previous_business_day=True)
    assert friday.as_of == date(2024, 6, 28)
    # 2005: 30Y not published, so the snapshot's nodes omit it
    gap = load_snapshot(date(2005, 3, 15), data_dir=data_dir)
    assert "30Y" not in gap.tenors and "1M" in gap.tenors
