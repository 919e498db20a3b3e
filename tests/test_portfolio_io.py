"""Portfolio files (CSV and JSON): valid books, and every bad input named by file, row, field.

Rows: a CSV's line number (the header is row 1); a JSON file's position number (1-based,
counted across accounts in the ``{"accounts": [...]}`` form).  A bad row anywhere, even the
last one, means no book at all (no partial output).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xmargin.errors import (
    ExpiredContractError,
    InputError,
    NotSupportedError,
    UnknownInstrumentError,
)
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Book
from xmargin.portfolio.io import read_portfolio
from xmargin.reference.eligibility import EligibilityRules, load_eligibility
from xmargin.reference.repo import Repo
from xmargin.reference.securities import SecuritiesMaster

AS_OF = date(2024, 6, 26)
HEADER = "account,member,account_type,instrument,quantity,cross_margin"
GOOD = ["A1,M1,house,91282CKQ3,10000000,true", "A1,M1,house,ZNU24,-129,true"]


@pytest.fixture(scope="module")
def master(data_dir: Path) -> SecuritiesMaster:
    return load_master(data_dir)


@pytest.fixture(scope="module")
def eligibility() -> EligibilityRules:
    return load_eligibility()


def read(path: Path, master: SecuritiesMaster, eligibility: EligibilityRules) -> Book:
    return read_portfolio(path, as_of=AS_OF, master=master, eligibility=eligibility)


def write_csv(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "book.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def write_json(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "book.json"
    path.write_text(json.dumps(data))
    return path


def position(instrument: str, quantity: Any, account: str = "A1") -> dict[str, Any]:
    return {"account": account, "member": "M1", "account_type": "house", "instrument": instrument,
            "quantity": quantity}


def nested(positions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"accounts": [{"account": "A1", "member": "M1", "account_type": "house", "cross_margin": True,
                          "positions": positions}]}


# --- valid books ------------------------------------------------------------------------------

def test_csv_book(tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules) -> None:
    path = write_csv(tmp_path, [*GOOD, "C9,M2,customer,ZFU24,40,false"])
    book = read(path, master, eligibility)
    assert [a.account for a in book.accounts] == ["A1", "C9"]
    assert [(a.account_type, a.cross_margin) for a in book.accounts] == [("house", True), ("customer", False)]
    assert book.positions_of(0) == [("91282CKQ3", 10_000_000.0), ("ZNU24", -129.0)]
    assert book.positions_of(1) == [("ZFU24", 40.0)]
    assert book.warnings == ()


def test_csv_and_both_json_forms_give_the_same_book(
    tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules
) -> None:
    csv_book = read(write_csv(tmp_path, GOOD), master, eligibility)
    flat = read(write_json(tmp_path, [position("91282CKQ3", 1e7), position("ZNU24", -129)]), master, eligibility)
    deep = read(write_json(tmp_path, nested([{"instrument": "91282CKQ3", "quantity": 1e7},
                                             {"instrument": "ZNU24", "quantity": -129}])), master, eligibility)
    for other in (flat, deep):
        assert other.universe.ids == csv_book.universe.ids
        assert np.array_equal(other.positions.toarray(), csv_book.positions.toarray())


def test_repeated_rows_add_up_and_zero_rows_are_dropped(
    tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules
) -> None:
    """Two rows of ZNU24 (-100 and -29) make -129; a zero quantity holds nothing."""
    path = write_csv(tmp_path, ["A1,M1,house,ZNU24,-100,true", "A1,M1,house,ZNU24,-29,true",
                                "A1,M1,house,ZFU24,0,true"])
    assert read(path, master, eligibility).positions_of(0) == [("ZNU24", -129.0)]


def test_repo_row(tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules) -> None:
    """$10m face repo'd for $9.9m at 5.30%: cash per 100 face = 9.9m / 10m x 100 = 99.00."""
    header = HEADER + ",repo_start,repo_end,repo_rate,cash_amount"
    path = write_csv(tmp_path, ["A1,M1,house,91282CKQ3,10000000,true,2024-06-25,2024-07-25,5.30,9900000"],
                     header=header)
    book = read(path, master, eligibility)
    (repo,) = book.universe.instruments
    assert isinstance(repo, Repo)
    assert repo.cash_per_100 == pytest.approx(99.0)
    assert repo.rate == pytest.approx(0.053)
    assert book.warnings == ()  # repo on a note is eligible


def test_ineligible_bill_in_cross_margin_account_warns(
    tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules
) -> None:
    """A bill in a cross-margining account is accepted with a warning naming the file, row,
    instrument and account; in an account that has not elected cross-margining, no warning."""
    path = write_csv(tmp_path, [*GOOD, "A1,M1,house,912797LB1,20000000,true", "B1,M1,house,912797LB1,5000000,false"])
    book = read(path, master, eligibility)
    assert len(book.warnings) == 1
    for part in (str(path), "row 4", "912797LB1", "not cross-margin eligible", "FICC", "A1"):
        assert part in book.warnings[0]
    assert book.positions_of(0)[-1] == ("912797LB1", 20_000_000.0)


# --- errors: file, row and field --------------------------------------------------------------

CSV_ERRORS = [
    # (bad row, error class, field, words in the message)
    ("A1,M1,house,91282CKQ4,1000000,true", UnknownInstrumentError, "instrument", "check digit"),
    ("A1,M1,house,037833100,1000000,true", UnknownInstrumentError, "instrument", "not in the securities master"),
    ("A1,M1,house,XXZ24,1,true", UnknownInstrumentError, "instrument", "unknown futures root"),
    ("A1,M1,house,ZNF24,1,true", UnknownInstrumentError, "instrument", "month code"),
    ("A1,M1,house,912828WU0,1000000,true", NotSupportedError, "instrument", "TIPS"),
    ("A1,M1,house,ZNM24,1,true", ExpiredContractError, "instrument", "expired"),
    ("A1,M1,house,ZNU24,abc,true", InputError, "quantity", "not a number"),
    ("A1,M1,house,ZNU24,,true", InputError, "quantity", "not a number"),
    ("A1,M1,house,ZNU24,inf,true", InputError, "quantity", "finite"),
    ("A1,M1,house,ZNU24,1.5,true", InputError, "quantity", "whole number"),
    ("A1,M1,firm,ZNU24,1,true", InputError, "account_type", "house"),
    ("A1,M1,house,ZNU24,1,maybe", InputError, "cross_margin", "true/false"),
    (",M1,house,ZNU24,1,true", InputError, "account", "empty"),
    ("A1,M1,house,,1,true", InputError, "instrument", "empty"),
    ("A1,M2,house,ZNU24,1,true", InputError, "member", "declared in row 2"),
]


@pytest.mark.parametrize(("line", "error", "field", "words"), CSV_ERRORS)
def test_csv_errors_name_file_row_and_field(
    line: str, error: type[Exception], field: str, words: str,
    tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules,
) -> None:
    """The bad row is the fourth line (after the header and two good rows) and the last one:
    the whole read fails, nothing is returned."""
    path = write_csv(tmp_path, [*GOOD, line])
    with pytest.raises(error) as err:
        read(path, master, eligibility)
    exc = err.value
    assert isinstance(exc, InputError)
    assert (exc.source, exc.row, exc.field) == (str(path), 4, field)
    assert words in str(exc)
    assert str(exc).startswith(f"{path}, row 4, field '{field}': ")


JSON_ERRORS = [
    ("91282CKQ4", 1e6, UnknownInstrumentError, "instrument"),
    ("ZNM24", 1, ExpiredContractError, "instrument"),
    ("ZNU24", "abc", InputError, "quantity"),
    ("ZNU24", None, InputError, "quantity"),
    ("ZNU24", True, InputError, "quantity"),  # a JSON boolean is not a quantity
    ("ZNU24", 2.5, InputError, "quantity"),
]


@pytest.mark.parametrize(("instrument", "quantity", "error", "field"), JSON_ERRORS)
@pytest.mark.parametrize("form", ["list", "accounts"])
def test_json_errors_name_file_row_and_field(
    instrument: str, quantity: Any, error: type[Exception], field: str, form: str,
    tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules,
) -> None:
    """The bad position is the third one (row 3) in either JSON form."""
    good = [position("91282CKQ3", 1e7), position("ZNU24", -129)]
    bad = position(instrument, quantity)
    data: Any = [*good, bad] if form == "list" else nested([
        {k: v for k, v in p.items() if k in ("instrument", "quantity")} for p in [*good, bad]])
    path = write_json(tmp_path, data)
    with pytest.raises(error) as err:
        read(path, master, eligibility)
    exc = err.value
    assert isinstance(exc, InputError)
    assert (exc.source, exc.row, exc.field) == (str(path), 3, field)


@pytest.mark.parametrize(
    ("header", "lines", "row", "field", "words"),
    [
        ("account,member,account_type,instrument", ["A1,M1,house,ZNU24"], 1, "quantity", "missing column"),
        (HEADER + ",price", ["A1,M1,house,ZNU24,1,true,101"], 1, "price", "unknown column"),
        (HEADER, ["A1,M1,house,ZNU24,1,true,extra"], 2, None, "more fields"),
        (HEADER + ",repo_start,repo_end,repo_rate,cash_amount", ["A1,M1,house,91282CKQ3,1000000,true,2024-06-25,,5.3,990000"],
         2, "repo_end", "repo row needs"),
        (HEADER + ",repo_start,repo_end,repo_rate,cash_amount", ["A1,M1,house,ZNU24,1,true,2024-06-25,2024-07-25,5.3,990000"],
         2, "instrument", "collateral"),
        (HEADER + ",repo_start,repo_end,repo_rate,cash_amount", ["A1,M1,house,91282CKQ3,1000000,true,2024-06-25,2024-06-20,5.3,990000"],
         2, "repo_end", "not after its start"),
        (HEADER + ",repo_start,repo_end,repo_rate,cash_amount", ["A1,M1,house,91282CKQ3,1000000,true,2024-06-25,2024/07/25,5.3,990000"],
         2, "repo_end", "not a date"),
    ],
)
def test_structural_csv_errors(
    header: str, lines: list[str], row: int, field: str | None, words: str,
    tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules,
) -> None:
    path = write_csv(tmp_path, lines, header=header)
    with pytest.raises(InputError) as err:
        read(path, master, eligibility)
    assert (err.value.source, err.value.row, err.value.field) == (str(path), row, field)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("{not json", None, "not valid JSON"),
        ('{"positions": []}', None, "expected a list"),
        ('{"accounts": 5}', "accounts", "must be a list"),
        ('{"accounts": [{"account": "A1", "positions": 5}]}', "positions", "must be a list"),
        ("[]", None, "no positions"),
    ],
)
def test_structural_json_errors(
    text: str, field: str | None, words: str, tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules
) -> None:
    path = tmp_path / "book.json"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read(path, master, eligibility)
    assert err.value.source == str(path)
    assert err.value.field == field
    assert words in str(err.value)


def test_missing_file(tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules) -> None:
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / "nope.csv", master, eligibility)


def test_empty_file_has_no_positions(tmp_path: Path, master: SecuritiesMaster, eligibility: EligibilityRules) -> None:
    with pytest.raises(InputError, match="no positions"):
        read(write_csv(tmp_path, []), master, eligibility)
