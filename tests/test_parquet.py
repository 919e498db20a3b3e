"""Parquet portfolio files: the same book, warnings and errors as the CSV reader.

Independent reference: :func:`xmargin.portfolio.io.read_portfolio` on the same rows written
as CSV (the contract's reader).  Each Parquet file is written here with pyarrow from the same
cells, with text columns and with typed columns (integers, floats, booleans, dates), and the
two readers' results are compared field by field; for bad files the error message, row and
field must be the CSV reader's (row numbers count the header as row 1 in both).
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xmargin.errors import InputError, UnknownInstrumentError
from xmargin.masterdata import load_master
from xmargin.portfolio import parquet
from xmargin.portfolio.io import read_portfolio
from xmargin.portfolio.parquet import read_parquet
from xmargin.reference.eligibility import load_eligibility

AS_OF = date(2024, 6, 26)
HEADER = ["account", "member", "account_type", "instrument", "quantity", "cross_margin",
          "repo_start", "repo_end", "repo_rate", "cash_amount"]
GOOD = [
    ["H1", "M1", "house", "91282CGA3", "10000000", "true", "", "", "", ""],
    ["H1", "M1", "house", "ZNU24", "-25", "true", "", "", "", ""],
    ["H1", "M1", "house", "912797KP1", "5000000", "true", "", "", "", ""],  # a bill: not eligible
    ["", "", "", "", "", "", "", "", "", ""],  # blank row: skipped
    ["C7", "M1", "customer", "UST:4.375:2034-05-15", "-2000000", "false", "", "", "", ""],
    ["C7", "M1", "customer", "SR3U24", "40", "false", "", "", "", ""],
    ["R2", "M2", "house", "912810QT8", "3000000", "yes", "2024-06-26", "2024-07-26", "5.31", "2400000"],
    ["R2", "M2", "house", "91282CGA3", "0", "yes", "", "", "", ""],  # zero: account kept, no position
    ["Z9", "M3", "HOUSE", "ZNU24", "0", "", "", "", "", ""],  # only a zero row: still an account
    ["H1", "M1", "house", "91282CGA3", "2500000", "1", "", "", "", ""],  # adds to the first row
]


@pytest.fixture(scope="module")
def env(data_dir: Path) -> dict[str, Any]:
    return {"as_of": AS_OF, "master": load_master(data_dir), "eligibility": load_eligibility()}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _text_table(header: list[str], rows: list[list[str]]) -> pa.Table:
    return pa.table({h: pa.array([r[k] for r in rows], type=pa.string()) for k, h in enumerate(header)})


def _typed_table(header: list[str], rows: list[list[str]]) -> pa.Table:
    """The same cells with real types: empty cells become nulls."""
    def col(h: str) -> pa.Array:
        cells = [r[header.index(h)] for r in rows]
        if h == "quantity":
            return pa.array([float(c) if c else None for c in cells], type=pa.float64())
        if h == "cross_margin":
            words = {"true": True, "yes": True, "1": True, "false": False}
            return pa.array([words[c.lower()] if c else None for c in cells], type=pa.bool_())
        if h in ("repo_start", "repo_end"):
            return pa.array([date.fromisoformat(c) if c else None for c in cells], type=pa.date32())
        if h in ("repo_rate", "cash_amount"):
            return pa.array([float(c) if c else None for c in cells], type=pa.float64())
        return pa.array([c or None for c in cells], type=pa.string()).dictionary_encode()
    return pa.table({h: col(h) for h in header})


@pytest.fixture
def fast_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid files must be read by the vectorised path, not by the CSV fallback."""
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the CSV fallback ran on a valid file")

    monkeypatch.setattr(parquet, "_validate_as_csv", fail)


def _same_book(a: Any, b: Any) -> None:
    assert a.accounts == b.accounts
    assert a.universe.ids == b.universe.ids
    assert a.positions.shape == b.positions.shape
    assert (a.positions != b.positions).nnz == 0


@pytest.mark.parametrize("make_table", [_text_table, _typed_table], ids=["text", "typed"])
def test_same_book_and_warnings_as_csv(tmp_path: Path, env: dict[str, Any], make_table: Any, fast_only: None) -> None:
    csv_path = _write_csv(tmp_path / "book.csv", HEADER, GOOD)
    pq_path = tmp_path / "book.parquet"
    pq.write_table(make_table(HEADER, GOOD), pq_path)
    expected = read_portfolio(csv_path, **env)
    book = read_parquet(pq_path, **env)
    _same_book(book, expected)
    assert [a.account for a in book.accounts] == ["H1", "C7", "R2", "Z9"]
    assert book.positions[0, book.universe.index("91282CGA3")] == 12_500_000.0
    assert book.positions[3].nnz == 0
    assert book.source == str(pq_path)
    # the bill in cross-margining H1 is warned about, at its CSV row number (header = 1)
    assert len(book.warnings) == 1 and f"{pq_path}, row 4: 912797KP1" in book.warnings[0]
    assert book.warnings == tuple(w.replace(str(csv_path), str(pq_path)) for w in expected.warnings)


def test_only_required_columns_and_integer_types(tmp_path: Path, env: dict[str, Any], fast_only: None) -> None:
    header = ["quantity", "instrument", "account", "member", "account_type"]  # any order
    table = pa.table({
        "quantity": pa.array([5_000_000, -3], type=pa.int64()),
        "instrument": ["91282CGA3", "ZFU24"],
        "account": pa.array([101, 101], type=pa.int32()),  # numeric account ids read as their text
        "member": ["M", "M"],
        "account_type": ["house", "house"],
    }).select(header)
    pq.write_table(table, tmp_path / "b.parquet")
    book = read_parquet(tmp_path / "b.parquet", **env)
    assert [a.account for a in book.accounts] == ["101"] and book.accounts[0].cross_margin
    assert book.positions.toarray().tolist() == [[5_000_000.0, -3.0]]


BAD_CASES = {
    # name: (row index in GOOD, column, new cell)
    "empty account": (4, "account", ""),
    "empty member": (1, "member", ""),
    "bad account type": (5, "account_type", "omnibus"),
    "bad election": (0, "cross_margin", "maybe"),
    "member disagrees": (9, "member", "M9"),
    "election disagrees": (5, "cross_margin", "true"),
    "quantity not a number": (2, "quantity", "ten"),
    "quantity not finite": (1, "quantity", "inf"),
    "fractional contracts": (5, "quantity", "40.5"),
    "unknown CUSIP": (4, "instrument", "912828ZZ9"),
    "bad check digit": (0, "instrument", "91282CGA4"),
    "TIPS": (0, "instrument", "912810FD5"),
    "expired future": (1, "instrument", "ZNH24"),
    "repo field missing": (6, "cash_amount", ""),
    "repo ends before start": (6, "repo_end", "2024-06-20"),
    "repo bad date": (6, "repo_start", "2024-13-01"),
    "repo on a future": (1, "repo_start", "2024-06-26"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_errors_are_the_csv_readers(tmp_path: Path, env: dict[str, Any], case: str) -> None:
    i, column, cell = BAD_CASES[case]
    rows = [list(r) for r in GOOD]
    rows[i][HEADER.index(column)] = cell
    if case == "repo on a future":
        rows[i][HEADER.index("repo_end")] = "2024-07-26"
        rows[i][HEADER.index("repo_rate")] = "5"
        rows[i][HEADER.index("cash_amount")] = "100"
    rows.append(["LATE", "M", "house", "not-an-instrument", "1", "", "", "", "", ""])  # a later error
    csv_path = _write_csv(tmp_path / "bad.csv", HEADER, rows)
    pq_path = tmp_path / "bad.parquet"
    pq.write_table(_text_table(HEADER, rows), pq_path)
    with pytest.raises(InputError) as want:
        read_portfolio(csv_path, **env)
    with pytest.raises(InputError) as got:
        read_parquet(pq_path, **env)
    assert type(got.value) is type(want.value)
    assert (got.value.row, got.value.field) == (want.value.row, want.value.field)
    assert got.value.row == i + 2  # the first bad row wins, numbered as in the CSV export
    assert str(got.value) == str(want.value).replace(str(csv_path), str(pq_path))
    assert got.value.source == str(pq_path)


def test_typed_column_errors(tmp_path: Path, env: dict[str, Any]) -> None:
    table = pa.table({
        "account": ["A", "A", "B"],
        "member": ["M", "M", "M"],
        "account_type": ["house", "house", "house"],
        "instrument": ["91282CGA3", "ZNU24", "ZNU24"],
        "quantity": pa.array([1e6, float("nan"), None], type=pa.float64()),
    })
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(InputError) as err:
        read_parquet(tmp_path / "t.parquet", **env)
    assert (err.value.row, err.value.field) == (3, "quantity") and "not a finite number" in str(err.value)


def test_file_level_errors(tmp_path: Path, env: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="not found"):
        read_parquet(tmp_path / "missing.parquet", **env)
    junk = tmp_path / "junk.parquet"
    junk.write_text("account,member\n")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_parquet(junk, **env)
    pq.write_table(pa.table({"account": ["A"], "member": ["M"], "instrument": ["ZNU24"], "quantity": [1]}),
                   tmp_path / "nocol.parquet")
    with pytest.raises(InputError) as err:
        read_parquet(tmp_path / "nocol.parquet", **env)
    assert (err.value.row, err.value.field) == (1, "account_type")
    pq.write_table(_text_table([*HEADER[:5], "desk"], [[*GOOD[0][:5], "rates"]]), tmp_path / "extra.parquet")
    with pytest.raises(InputError, match="unknown column") as err:
        read_parquet(tmp_path / "extra.parquet", **env)
    assert err.value.field == "desk"
    nested = pa.table({"account": ["A"], "member": ["M"], "account_type": ["house"], "instrument": ["ZNU24"],
                       "quantity": pa.array([[1, 2]])})
    pq.write_table(nested, tmp_path / "nested.parquet")
    with pytest.raises(InputError, match="not supported") as err:
        read_parquet(tmp_path / "nested.parquet", **env)
    assert err.value.field == "quantity"
    empty = _text_table(HEADER[:5], [])
    pq.write_table(empty, tmp_path / "empty.parquet")
    with pytest.raises(InputError, match="no positions"):
        read_parquet(tmp_path / "empty.parquet", **env)


def test_unknown_instrument_type_kept(tmp_path: Path, env: dict[str, Any]) -> None:
    pq.write_table(_text_table(HEADER[:5], [["A", "M", "house", "XYZ", "1"]]), tmp_path / "u.parquet")
    with pytest.raises(UnknownInstrumentError):
        read_parquet(tmp_path / "u.parquet", **env)


def test_large_book_round_trip(tmp_path: Path, env: dict[str, Any], fast_only: None) -> None:
    """A few thousand rows, random: Parquet and CSV give the same book."""
    rng = np.random.default_rng(7)
    ids = ["91282CGA3", "91282CED9", "912810QT8", "912810SF6", "ZNU24", "ZBU24", "SR3U24", "912797KP1"]
    rows = []
    for a in range(800):
        for j in rng.choice(len(ids), size=int(rng.integers(1, 6)), replace=False):
            qty = int(rng.integers(-50, 50)) * (1 if ids[j][0].isalpha() else 100_000)
            name = f"A{a:04d}" if rng.random() < 0.8 else f"  A{a:04d} "  # blanks around: the same account
            inst = ids[j] if rng.random() < 0.9 else f" {ids[j]}  "  # warnings quote the cell as written
            rows.append([name, f"M{a % 7}", "house" if a % 3 else "customer", inst, str(qty),
                         "true" if a % 4 else "false", "", "", "", ""])
        if a % 9 == 0:  # repos: the same terms in several accounts (one instrument), and distinct ones
            face = 1_000_000 * int(rng.integers(1, 5))
            cash = face * (0.98 if a % 2 else 0.97)
            rows.append([f"A{a:04d}", f"M{a % 7}", "house" if a % 3 else "customer", "91282CGA3", str(face),
                         "true" if a % 4 else "false", "2024-06-25", "2024-07-25", "5.3", repr(cash)])
    order = rng.permutation(len(rows))
    rows = [rows[k] for k in order]
    csv_path = _write_csv(tmp_path / "big.csv", HEADER, rows)
    pq.write_table(_typed_table(HEADER, rows), tmp_path / "big.parquet", row_group_size=1000)
    expected = read_portfolio(csv_path, **env)
    book = read_parquet(tmp_path / "big.parquet", **env)
    _same_book(book, expected)
    assert book.warnings == tuple(w.replace(str(csv_path), str(tmp_path / "big.parquet")) for w in expected.warnings)
    assert len(book.warnings) > 0
    assert sum(i.startswith("REPO:") for i in book.universe.ids) == 2  # two distinct repo terms
