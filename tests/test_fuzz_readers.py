"""Fuzzing the file readers (hypothesis): a one-line error or the correct result, never a
traceback, never a partial result.

Each example is a portfolio built from rows that are either good (a pool of real instruments on
the as-of date) or broken in one field the way a careless file or an attacker breaks it (the
attack classes of issue 15: huge or non-numeric quantities, matured and far-future securities,
out-of-range coupons, formula text, NUL bytes), plus file-level damage (a duplicated column, a
Latin-1 byte, binary garbage, a truncated last line).  The oracle is independent of the reader:

* no damage: the book's positions equal the quantities summed per account and instrument here;
* damage: an :class:`~xmargin.errors.InputError` whose message is one line and, for a row-level
  break, names the first broken row; nothing is returned.

The same rows go through the Parquet reader (same verdict) and the trades-file reader.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmargin.engine.trades import read_events
from xmargin.errors import InputError
from xmargin.masterdata import load_master
from xmargin.portfolio.io import read_portfolio
from xmargin.reference.eligibility import load_eligibility

AS_OF = date(2024, 6, 26)
COLUMNS = ["account", "member", "account_type", "instrument", "quantity"]
GOOD_INSTRUMENTS = {"91282CKQ3": 1_000_000.0, "ZNU24": 1.0, "ZFU24": 1.0, "UST:4.5:2030-05-15": 1_000_000.0,
                    "912797LB1": 1_000_000.0}
#: attack class -> (field, broken values); each class is drawn equally often
BAD: dict[str, tuple[str, list[str]]] = {
    "huge quantity": ("quantity", ["1e308", "-1e308", "1e14", "-10000000000001"]),
    "not a number": ("quantity", ["true", "nan", "inf", "", "1,000", "0x10", "=1+1"]),
    "NUL byte": ("quantity", ["5\x00"]),
    "matured": ("instrument", ["UST:4:0001-01-01", "UST:4:2024-06-26", "ZNH20"]),
    "beyond the bounds": ("instrument", ["UST:5:9999-12-31", "UST:0:2056-01-01", "UST:25:2030-01-01"]),
    "not an instrument": ("instrument", ["=cmd|' /C calc'!A0", "XXXXXXXXX", ""]),
    "account type": ("account_type", ["House?", "", "admin"]),
    "no account": ("account", ["", "  "]),
}
EXAMPLES = 12  # per case


@pytest.fixture(scope="module")
def env(data_dir: Path) -> dict[str, Any]:
    return {"as_of": AS_OF, "master": load_master(data_dir), "eligibility": load_eligibility()}


DAMAGE = ["duplicate", "latin1", "binary", "truncate"]
#: every attack class gets its own run: a row broken that way, a file damaged that way, or none
CASES = ["good", *sorted(BAD), *DAMAGE]


@st.composite
def portfolios(draw: st.DrawFn, case: str = "good") -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    bad_at = draw(st.integers(0, n - 1)) if case in BAD else None
    rows, first_bad = [], None
    for i in range(n):
        inst = draw(st.sampled_from(sorted(GOOD_INSTRUMENTS)))
        lots = draw(st.integers(-50, 50).filter(lambda x: x != 0))
        acc = draw(st.sampled_from(["A1", "A2", "=HYPERLINK(1)", "Ünï"]))
        row = {"account": acc, "member": "M1", "account_type": "house", "instrument": inst,
               "quantity": f"{lots * GOOD_INSTRUMENTS[inst]:.10g}"}
        if i == bad_at:
            fld, values = BAD[case]
            row[fld] = draw(st.sampled_from(values))
            first_bad = i + 2  # header is row 1
        rows.append(row)
    return {"rows": rows, "first_bad": first_bad, "damage": case if case in DAMAGE else "none"}


def _csv_bytes(p: dict[str, Any]) -> bytes:
    header = COLUMNS + (["quantity"] if p["damage"] == "duplicate" else [])
    lines = [",".join(header)]
    for r in p["rows"]:
        cells = [r[c] for c in COLUMNS] + ([r["quantity"]] if p["damage"] == "duplicate" else [])
        lines.append(",".join(f'"{c}"' if ("," in c or '"' in c) else c for c in cells))
    text = "\n".join(lines) + "\n"
    if p["damage"] == "latin1":
        return text.encode("utf-8") + "Z,M1,house,ZNU24,1\n".replace("Z", "É").encode("latin-1")
    if p["damage"] == "binary":
        return bytes(range(256)) * 4 + text.encode("utf-8")
    if p["damage"] == "truncate":
        return text.encode("utf-8") + b"A1,M1,house"
    return text.encode("utf-8")


def _expected(p: dict[str, Any], env: dict[str, Any]) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for r in p["rows"]:
        totals[(r["account"], r["instrument"])] += float(r["quantity"])
    return {k: v for k, v in totals.items() if v != 0}


def _positions(book: Any) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for i, acc in enumerate(book.accounts):
        for inst, qty in book.positions_of(i):
            out[(acc.account, inst)] = qty
    return out


def _check_error(exc: InputError) -> None:
    assert "\n" not in str(exc), str(exc)
    assert str(exc).strip()


@pytest.mark.parametrize("case", CASES)
def test_portfolio_readers_one_line_error_or_correct_result(case: str, env: dict[str, Any], tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))
    @given(p=portfolios(case))
    def run(p: dict[str, Any]) -> None:
        _portfolio_verdict(p, env, tmp_path)

    run()


def _portfolio_verdict(p: dict[str, Any], env: dict[str, Any], tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_bytes(_csv_bytes(p))
    damaged = p["damage"] != "none"
    try:
        book = read_portfolio(f, **env)
    except InputError as exc:
        _check_error(exc)
        assert damaged or p["first_bad"] is not None, f"good file refused: {exc}"
        if not damaged and p["first_bad"] is not None:
            assert exc.row == p["first_bad"], (str(exc), p["first_bad"])
        return
    assert not damaged and p["first_bad"] is None, "a broken file was read"
    got = _positions(book)
    want = _expected(p, env)
    assert set(got) == set(want)
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=1e-12), (k, got[k], v)


@pytest.mark.parametrize("case", ["good", *sorted(BAD)])
def test_parquet_reader_gives_the_csv_verdict(case: str, env: dict[str, Any], tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES // 2, suppress_health_check=list(HealthCheck))
    @given(p=portfolios(case))
    def run(p: dict[str, Any]) -> None:
        _parquet_verdict(p, env, tmp_path)

    run()


def _parquet_verdict(p: dict[str, Any], env: dict[str, Any], tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({c: [r[c] for r in p["rows"]] for c in COLUMNS})
    pq.write_table(table, tmp_path / "p.parquet")
    (tmp_path / "p.csv").write_bytes(_csv_bytes(p))

    def verdict(path: Path) -> Any:
        try:
            return _positions(read_portfolio(path, **env))
        except InputError as exc:
            _check_error(exc)
            return ("error", exc.row, exc.field)

    assert verdict(tmp_path / "p.parquet") == verdict(tmp_path / "p.csv")


@pytest.mark.parametrize("case", CASES)
def test_trades_reader_one_line_error_or_every_row(case: str, env: dict[str, Any], tmp_path: Path) -> None:
    @settings(max_examples=EXAMPLES // 2, suppress_health_check=list(HealthCheck))
    @given(p=portfolios(case))
    def run(p: dict[str, Any]) -> None:
        _trades_verdict(p, env, tmp_path)

    run()


def _trades_verdict(p: dict[str, Any], env: dict[str, Any], tmp_path: Path) -> None:
    body = _csv_bytes(p)
    head, _, rest = body.partition(b"\n")
    lines = [ln for ln in rest.split(b"\n") if ln]
    stamped = [head + b",trade_id,time"] + [ln + f",T{i},2024-06-26T14:00:00Z".encode() for i, ln in enumerate(lines)]
    f = tmp_path / "t.csv"
    f.write_bytes(b"\n".join(stamped) + b"\n")
    try:
        events = read_events(f, as_of=AS_OF, master=env["master"])
    except InputError as exc:
        _check_error(exc)
        assert p["damage"] != "none" or p["first_bad"] is not None, f"good file refused: {exc}"
        return
    assert p["damage"] == "none" and p["first_bad"] is None, "a broken trades file was read"
    assert len(events) == len(p["rows"])
