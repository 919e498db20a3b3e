"""Portfolio files in Parquet: the CSV contract's columns, validated the same way, vectorised.

Columns are those of the CSV contract (:mod:`xmargin.portfolio.io`)::

    account,member,account_type,instrument,quantity[,cross_margin][,archetype]
    [,repo_start,repo_end,repo_rate,cash_amount]

Any primitive column type is accepted where the CSV reader reads text: a value means what
its text would mean in the CSV file (``str(value)``; a null is an empty cell).  Numbers may be
stored as numbers or text, ``cross_margin`` as a boolean or the CSV words, repo dates as
``date32`` or ``YYYY-MM-DD`` text.

**Row numbers** in errors and warnings are those of the same rows in the CSV export of the
file: the header counts as row 1, so record ``i`` (0-based) is row ``i + 2``.  A problem in
a Parquet file and in its CSV export is therefore reported with the same message.

How it validates: every check of the CSV reader is run over whole columns (instrument
identifiers parsed once per distinct text), which is what makes a book of millions of rows
readable in seconds.  When any check flags a row, the file is handed, as its CSV export, to
:func:`xmargin.portfolio.io.read_portfolio` itself, so the error raised (the first bad row,
its field and message) is exactly the CSV reader's; only the file name is this one.

``read_parquet`` needs ``pyarrow`` (``pip install pyarrow``; the ``parquet`` extra).
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.errors import InputError, XMarginError
from xmargin.portfolio import text as csv_io
from xmargin.portfolio.book import ACCOUNT_TYPES, Account, Book
from xmargin.portfolio.fields import (
    FALSE_WORDS,
    MAX_QUANTITY,
    REPO_FIELDS,
    TRUE_WORDS,
    date_field,
    number_field,
    quantity_field,
)
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.eligibility import EligibilityRules, clearinghouse
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument, instrument_id, parse_instrument
from xmargin.reference.repo import make_repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

COLUMNS = (*csv_io.REQUIRED, *csv_io.OPTIONAL)
FIRST_ROW = 2  # the CSV export's header is row 1


class _Flagged(Exception):
    """A check found a bad row: let the CSV reader say which and why."""


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is installed with the parquet extra
        raise InputError("reading Parquet needs pyarrow: pip install pyarrow", source="portfolio") from None
    return pq


def _read_table(path: Path) -> tuple[list[str], dict[str, Any], int]:
    """Header (stripped names, file order), the columns (pyarrow arrays) and the row count."""
    pq = _pyarrow()
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", source=path) from None
    header = [name.strip() for name in table.column_names]
    missing = [c for c in csv_io.REQUIRED if c not in header]
    if missing:
        raise InputError(f"missing column(s) {missing}; expected {list(csv_io.REQUIRED)}", source=path, row=1,
                         field=missing[0])
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise InputError(f"unknown column(s) {unknown}", source=path, row=1, field=unknown[0])
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise InputError(f"duplicate column(s) {dupes}", source=path, row=1, field=dupes[0])
    columns: dict[str, Any] = {}
    for name, col in zip(header, table.columns, strict=True):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        kind = col.type
        if pa.types.is_dictionary(kind):
            col = col.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise InputError(f"column type {kind} is not supported (expected text, numbers, booleans or dates)",
                             source=path, row=1, field=name)
        columns[name] = col
    return header, columns, table.num_rows


def _cell(value: Any) -> str:
    """What the CSV export holds in this cell."""
    return "" if value is None else str(value)


def _write_csv(header: Sequence[str], columns: dict[str, Any], n: int, dest: Path) -> None:
    with dest.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        cols = [columns[h].to_pylist() for h in header]
        for i in range(n):
            out.writerow([_cell(c[i]) for c in cols])


def _as_csv_error(exc: InputError, path: Path, tmp: Path) -> InputError:
    source = str(path) if exc.source == str(tmp) else exc.source
    err = type(exc).__new__(type(exc))
    InputError.__init__(err, exc.reason.replace(str(tmp), str(path)), source=source, row=exc.row, field=exc.field)
    return err


def _validate_as_csv(
    header: Sequence[str], columns: dict[str, Any], n: int, path: Path, *, as_of: date,
    master: SecuritiesMaster, eligibility: EligibilityRules,
) -> Book:
    """The CSV reader's verdict on this file (raises its first error)."""
    with tempfile.TemporaryDirectory(prefix="xmargin-parquet-") as tmpdir:
        tmp = Path(tmpdir) / "portfolio.csv"
        _write_csv(header, columns, n, tmp)
        try:
            book = csv_io.read_text_portfolio(tmp, as_of=as_of, master=master, eligibility=eligibility)
        except InputError as exc:
            raise _as_csv_error(exc, path, tmp) from None
    warnings = tuple(w.replace(str(tmp), str(path)) for w in book.warnings)
    return Book(book.accounts, book.universe, book.positions, str(path), warnings)


def _flag(mask: Any) -> None:
    if np.any(mask):
        raise _Flagged


def _raw_coded(col: Any) -> tuple[npt.NDArray[np.int64], list[str]]:
    """A column as its CSV cells, as written: ``(codes per row, distinct cells)``.

    pyarrow finds the distinct values (integers as their decimal text); each becomes
    ``str(value)``, the CSV export's cell; a type pyarrow cannot encode goes value by value.
    A null is ``""``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(col.type):
        col = pc.cast(col, pa.string())
    try:
        enc = col.dictionary_encode()
    except pa.ArrowNotImplementedError:
        cells = [_cell(v) for v in col.to_pylist()]
        raw = list(dict.fromkeys(cells))
        pos = {v: k for k, v in enumerate(raw)}
        return np.fromiter((pos[c] for c in cells), dtype=np.int64, count=len(cells)), raw
    raw = [_cell(v) for v in enc.dictionary.to_pylist()]
    codes = enc.indices.fill_null(len(raw)).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, [*raw, ""]


def _coded(col: Any) -> tuple[npt.NDArray[np.int64], list[str]]:
    """The column's cells stripped, as the CSV reader reads them: ``(codes, distinct values)``."""
    codes, raw = _raw_coded(col)
    stripped = [v.strip() for v in raw]
    values = list(dict.fromkeys(stripped))
    if len(values) < len(stripped):  # cells that differ only by blanks around them are one value
        pos = {v: k for k, v in enumerate(values)}
        codes = np.array([pos[v] for v in stripped], dtype=np.int64)[codes]
    return codes, values


def _lookup(codes: npt.NDArray[np.int64], table: Sequence[Any] | npt.NDArray[Any], dtype: Any) -> npt.NDArray[Any]:
    return np.asarray(table, dtype=dtype)[codes] if len(codes) else np.zeros(0, dtype=dtype)


def _quantities(col: Any) -> npt.NDArray[np.float64]:
    """Floats as the CSV reader would parse the cells; NaN marks any it would reject."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = col.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # unsafe: a huge integer rounds to the nearest float, as float() of its text does
        out = pc.cast(col, pa.float64(), safe=False).fill_null(math.nan).to_numpy(zero_copy_only=False)
        out = out.astype(np.float64)
    else:
        codes, values = _coded(col)
        parsed = []
        for v in values:
            try:
                parsed.append(float(v) if v else math.nan)
            except ValueError:
                parsed.append(math.nan)
        out = _lookup(codes, parsed, np.float64)
    out[~np.isfinite(out) | (np.abs(out) > MAX_QUANTITY)] = np.nan  # the CSV reader names the error
    return out


def _elections(col: Any | None, n: int) -> npt.NDArray[np.int8]:
    """``cross_margin`` per row: 1 yes, 0 no, -1 not a word the CSV reader accepts."""
    import pyarrow as pa

    if col is None:
        return np.ones(n, dtype=np.int8)
    if pa.types.is_boolean(col.type):
        return col.fill_null(True).to_numpy(zero_copy_only=False).astype(np.int8)
    codes, values = _coded(col)
    table = [1 if v.lower() in TRUE_WORDS or v == "" else 0 if v.lower() in FALSE_WORDS else -1 for v in values]
    return _lookup(codes, table, np.int8)


def _first_rows(keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each row, the number of its key in order of first appearance, and each key's first row."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), first[order].astype(np.int64)


def _empty_cells(col: Any) -> npt.NDArray[np.bool_]:
    import pyarrow as pa

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        codes, values = _coded(col)
        return _lookup(codes, [v == "" for v in values], bool)
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)  # str() of a value is never blank


def _fast(
    header: Sequence[str], columns: dict[str, Any], n: int, path: Path, *, as_of: date,
    master: SecuritiesMaster, eligibility: EligibilityRules,
) -> Book:
    """Build the book with whole-column checks; raise :class:`_Flagged` at any doubt."""
    coded = {h: _coded(columns[h]) for h in header if h not in ("quantity", "cross_margin")}
    blank = np.ones(n, dtype=bool)
    for h in header:
        if h in coded:
            codes, values = coded[h]
            blank &= _lookup(codes, [v == "" for v in values], bool)
        else:
            blank &= _empty_cells(columns[h])
    keep = np.flatnonzero(~blank)
    acc_codes, acc_values = coded["account"][0][keep], coded["account"][1]
    mem_codes, mem_values = coded["member"][0][keep], coded["member"][1]
    kind_codes, kind_values = coded["account_type"][0][keep], coded["account_type"][1]
    kind_of_value = [ACCOUNT_TYPES.index(v.lower()) if v.lower() in ACCOUNT_TYPES else -1 for v in kind_values]
    kind = _lookup(kind_codes, kind_of_value, np.int64)
    _flag(_lookup(acc_codes, [not v for v in acc_values], bool))
    _flag(_lookup(mem_codes, [not v for v in mem_values], bool))
    _flag(kind < 0)
    xm = _elections(columns.get("cross_margin"), n)[keep]
    _flag(xm < 0)

    # one declaration per account (member, type, election), as in the CSV reader
    acc_of, first = _first_rows(acc_codes)
    _flag((mem_codes != mem_codes[first][acc_of]) | (kind != kind[first][acc_of]) | (xm != xm[first][acc_of]))
    if "archetype" in coded:
        arche = [coded["archetype"][1][c] for c in coded["archetype"][0][keep][first]]
    else:
        arche = [""] * len(first)
    accounts = [Account(acc_values[a], mem_values[m], ACCOUNT_TYPES[k], bool(x), t)
                for a, m, k, x, t in zip(acc_codes[first], mem_codes[first], kind[first], xm[first], arche,
                                         strict=True)]
    if not accounts:
        raise _Flagged

    qty = _quantities(columns["quantity"])[keep]
    _flag(np.isnan(qty))
    inst_codes, inst_values = coded["instrument"][0][keep], coded["instrument"][1]
    present = np.bincount(inst_codes, minlength=len(inst_values)) > 0
    parsed: list[Instrument | None] = []
    for text, used in zip(inst_values, present, strict=True):
        if not used:
            parsed.append(None)
            continue
        if not text:
            raise _Flagged
        try:
            parsed.append(parse_instrument(text, as_of=as_of, master=master, source=str(path)))
        except XMarginError:
            raise _Flagged from None
    insts: list[Instrument] = [parsed[c] for c in inst_codes]  # type: ignore[misc]
    inst_key = inst_codes.copy()  # one key per distinct text; each distinct repo gets its own below

    given = np.zeros(len(keep), dtype=bool)
    repo_cols = [c for c in REPO_FIELDS if c in coded]
    for c in repo_cols:
        codes, values = coded[c]
        given |= _lookup(codes[keep], [v != "" for v in values], bool)
    repo_keys: dict[str, int] = {}
    for r in np.flatnonzero(given):
        i = int(keep[r])
        row = {c: coded[c][1][coded[c][0][i]] for c in repo_cols}
        inst = insts[r]
        if any(not row.get(f) for f in REPO_FIELDS) or not isinstance(inst, TreasuryBill | TreasuryBond):
            raise _Flagged
        try:
            repo = make_repo(
                inst,
                start=date_field(row, "repo_start", path, i + FIRST_ROW),
                end=date_field(row, "repo_end", path, i + FIRST_ROW),
                rate_pct=number_field(row, "repo_rate", path, i + FIRST_ROW),
                cash_amount=quantity_field(row, path, i + FIRST_ROW, "cash_amount"),
                face=float(qty[r]),
                as_of=as_of,
                source=str(path),
                row=i + FIRST_ROW,
            )
        except XMarginError:
            raise _Flagged from None
        insts[r] = repo
        inst_key[r] = len(inst_values) + repo_keys.setdefault(instrument_id(repo), len(repo_keys))
    is_future = np.array([isinstance(x, TreasuryFuture | RateFuture) for x in parsed], dtype=bool)
    _flag(_lookup(inst_codes, is_future, bool) & ~given & (qty != np.round(qty)))

    # the book as build_book makes it: instruments in order of their first nonzero holding
    held = np.flatnonzero(qty != 0.0)
    rank, first_held = _first_rows(inst_key[held])
    reps = [insts[held[j]] for j in first_held]  # one instrument per key, in order of appearance
    universe = InstrumentUniverse.of(reps)
    col_of_rank = np.array([universe.index(inst) for inst in reps], dtype=np.int64)
    cols = col_of_rank[rank] if len(held) else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((qty[held], (acc_of[held], cols)), shape=(len(accounts), len(universe)))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()

    warnings: list[str] = []
    eligible = np.array([eligibility.is_eligible(inst, as_of) for inst in reps], dtype=bool)
    warn = xm[held].astype(bool) & ~(eligible[rank] if len(held) else np.zeros(0, dtype=bool))
    if warn.any():  # the warning quotes the cell as written
        raw_codes, raw_values = _raw_coded(columns["instrument"])
        raw_codes = raw_codes[keep]
    for j in np.flatnonzero(warn):
        r = held[j]
        warnings.append(
            f"{path}, row {keep[r] + FIRST_ROW}: {raw_values[raw_codes[r]]} is not cross-margin eligible at "
            f"{clearinghouse(insts[r])} ({eligibility.why(insts[r], as_of)[1]}); margined stand-alone in account "
            f"{accounts[acc_of[r]].account}"
        )
    return Book(tuple(accounts), universe, matrix, str(path), tuple(warnings))


def read_parquet(
    path: str | Path,
    *,
    as_of: date,
    master: SecuritiesMaster,
    eligibility: EligibilityRules,
) -> Book:
    """Read and validate a Parquet portfolio file into a :class:`Book` (see the module doc).

    The same book, warnings and errors as :func:`xmargin.portfolio.text.read_text_portfolio` on the
    file's CSV export (row numbers count the header as row 1).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("portfolio file not found", source=path)
    header, columns, n = _read_table(path)
    try:
        return _fast(header, columns, n, path, as_of=as_of, master=master, eligibility=eligibility)
    except _Flagged:
        return _validate_as_csv(header, columns, n, path, as_of=as_of, master=master, eligibility=eligibility)
