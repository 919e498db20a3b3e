"""Margin calls with partial collateral (issue 17): each amount due worked by hand.

``CollateralBook.assess`` compares the requirement ``R`` with the haircut collateral value
``V``: a call for the deficit ``R - V`` when there is none outstanding or the deficit has grown
beyond the last call; nothing new on a smaller deficit; an excess ``V - R`` once the account
is covered.  Cash carries no haircut (default schedule), so every figure below is exact; the
Treasury case uses FedInvest's price of 2024-06-26 as the independent value.
"""

from __future__ import annotations

import csv
import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from xmargin.clearing import CollateralBook, HaircutSchedule
from xmargin.engine import CollateralMovement
from xmargin.errors import InputError
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master

AS_OF = date(2024, 6, 26)
T0 = datetime(2024, 6, 26, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> MarketSnapshot:
    return load_snapshot(AS_OF, data_dir=data_dir)


@pytest.fixture
def book(snapshot: MarketSnapshot, data_dir: Path) -> CollateralBook:
    return CollateralBook(snapshot, load_master(data_dir))


def post(book: CollateralBook, account: str, asset: str, amount: float, n: int) -> None:
    book.apply(CollateralMovement(f"C{n}", account, asset, amount, T0))


def test_partial_collateral_growing_and_shrinking_deficits(book: CollateralBook) -> None:
    """Worksheet (dollars), account A holding $300,000 cash:

    1. requirement 1,000,000: deficit 700,000 -> call for 700,000 (not the requirement);
    2. requirement 1,200,000: deficit 900,000 > 700,000 -> a new call for 900,000;
    3. requirement 1,100,000: deficit 800,000 <= 900,000 -> no new call;
    4. requirement 1,150,000: deficit 850,000, still under the last call -> nothing;
    5. requirement 1,250,000: deficit 950,000 > 900,000 -> a call for 950,000;
    6. $1,000,000 cash more (V = 1,300,000): covered, excess 50,000 and the call met;
    7. requirement 1,260,000: excess 40,000, still in excess -> nothing new;
    8. requirement 1,400,000: deficit 100,000 -> a call for 100,000 (a fresh call after an
       excess, however small against the earlier 950,000).
    """
    post(book, "A", "CASH", 300_000.0, 1)
    assert book.value("A") == 300_000.0
    kind, data = book.assess("A", 1_000_000.0)  # type: ignore[misc]
    assert kind == "margin_call"
    assert data["amount_due"] == pytest.approx(700_000.0, abs=0.005)
    assert data["collateral_value"] == 300_000.0 and data["requirement"] == 1_000_000.0
    kind, data = book.assess("A", 1_200_000.0)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == pytest.approx(900_000.0, abs=0.005)
    assert book.assess("A", 1_100_000.0) is None
    assert book.assess("A", 1_150_000.0) is None
    kind, data = book.assess("A", 1_250_000.0)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == pytest.approx(950_000.0, abs=0.005)
    post(book, "A", "CASH", 1_000_000.0, 2)
    kind, data = book.assess("A", 1_250_000.0)  # type: ignore[misc]
    assert kind == "excess" and data["call_met"] is True
    assert data["excess"] == pytest.approx(50_000.0, abs=0.005)
    assert book.assess("A", 1_260_000.0) is None
    kind, data = book.assess("A", 1_400_000.0)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == pytest.approx(100_000.0, abs=0.005)


def test_half_cent_rule_and_accounts_are_independent(book: CollateralBook) -> None:
    """A deficit of half a cent or less is no call; a cent is.  Account B's collateral never
    covers account C."""
    post(book, "B", "CASH", 500_000.0, 1)
    assert book.assess("B", 500_000.004) is None
    kind, data = book.assess("B", 500_000.01)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == pytest.approx(0.01, abs=1e-6)
    kind, data = book.assess("C", 250_000.0)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == 250_000.0


def test_treasury_collateral_at_its_haircut(book: CollateralBook, data_dir: Path) -> None:
    """$2m face of the 4 3/8% note of 2034-05-15 (9.9 years: haircut 3%) plus $100,000 cash
    against a requirement of $2.5m.  Independent value: FedInvest clean 100.50 plus accrued
    4.375/2 x 43/184 = 0.511209, i.e. 101.011209 per 100 -> 2,000,000 x 1.01011209 x 0.97 =
    $1,959,617; the call is about $440,383.  The engine prices off the fitted par curve, so
    the figures agree to 0.5% of the collateral value ($10,000), far closer than the call
    ignoring the collateral ($2.5m) or the cash alone."""
    with (data_dir / "securities" / "fedinvest_prices_2024-06-26.csv").open(newline="") as fh:
        clean = next(float(r["sell"]) for r in csv.DictReader(fh) if r["cusip"] == "91282CKQ3")
    value = 100_000.0 + 2_000_000.0 * (clean + 4.375 / 2 * 43 / 184) / 100 * 0.97
    post(book, "D", "CASH", 100_000.0, 1)
    post(book, "D", "91282CKQ3", 2_000_000.0, 2)
    assert book.value("D") == pytest.approx(value, abs=10_000.0)
    kind, data = book.assess("D", 2_500_000.0)  # type: ignore[misc]
    assert kind == "margin_call"
    assert data["amount_due"] == pytest.approx(2_500_000.0 - value, abs=10_000.0)
    assert data["amount_due"] == pytest.approx(2_500_000.0 - book.value("D"), abs=0.005)


def test_restored_call_keeps_the_growing_deficit_rule(book: CollateralBook) -> None:
    """After a replay restores a call of 400,000 (no collateral), a requirement of 380,000
    issues nothing and one of 420,000 issues a call for 420,000."""
    book.restore("margin_call", {"account": "E", "amount_due": 400_000.0})
    assert book.assess("E", 380_000.0) is None
    kind, data = book.assess("E", 420_000.0)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == 420_000.0


# --- the haircut schedule and collateral movements (survivors of the mutation run) ------------

def test_haircut_schedule_by_remaining_maturity() -> None:
    """Default schedule (years, upper bounds inclusive): <= 1: 0.5%, <= 3: 1%, <= 5: 2%,
    <= 10: 3%, <= 20: 5%, beyond: 6%; cash 0."""
    s = HaircutSchedule()
    got = [s.haircut(y) for y in (0.2, 1.0, 1.0001, 3.0, 4.9, 5.0, 7.0, 10.0, 10.01, 20.0, 29.5)]
    assert got == [0.005, 0.005, 0.01, 0.01, 0.02, 0.02, 0.03, 0.03, 0.05, 0.05, 0.06]
    assert s.cash == 0.0
    assert s.to_dict() == {"cash": 0.0, "table": [[1.0, 0.005], [3.0, 0.01], [5.0, 0.02], [10.0, 0.03],
                                                  [20.0, 0.05], [None, 0.06]]}
    assert HaircutSchedule.from_dict(s.to_dict()) == s
    assert HaircutSchedule.from_dict({"table": [[2, 0.01], ["inf", 0.04]]}) == HaircutSchedule(
        ((2.0, 0.01), (float("inf"), 0.04)), 0.0)


@pytest.mark.parametrize(("table", "cash", "field"), [
    ((), 0.0, "haircuts.table"),
    (((5.0, 0.01), (1.0, 0.02), (float("inf"), 0.03)), 0.0, "haircuts.table"),
    (((5.0, 0.01), (10.0, 0.02)), 0.0, "haircuts.table"),
    (((5.0, 0.01), (float("inf"), 1.0)), 0.0, "haircuts"),
    (((5.0, -0.01), (float("inf"), 0.5)), 0.0, "haircuts"),
    (((float("inf"), 0.1),), 1.0, "haircuts"),
    (((5.0, 0.01), (float("inf"), 1.5)), 0.0, "haircuts"),  # above 1: a negative collateral value
    (((float("inf"), 0.1),), 2.0, "haircuts"),
])
def test_bad_haircut_schedules_are_refused(table: tuple, cash: float, field: str) -> None:  # type: ignore[type-arg]
    """Empty, unsorted, without an open last bucket, or a haircut outside [0, 1)."""
    with pytest.raises(InputError) as exc:
        HaircutSchedule(table, cash)
    assert exc.value.field == field


def test_edge_haircuts_are_accepted() -> None:
    HaircutSchedule(((float("inf"), 0.0),), 0.999)
    assert HaircutSchedule(((float("inf"), 0.999),), 0.0).haircut(50.0) == 0.999


def test_haircut_file(tmp_path: Path) -> None:
    path = tmp_path / "haircuts.toml"
    path.write_text('[haircuts]\ncash = 0.02\ntable = [[2, 0.01], ["inf", 0.04]]\n')
    assert HaircutSchedule.load(path) == HaircutSchedule(((2.0, 0.01), (float("inf"), 0.04)), 0.02)
    path.write_text("[haircuts]\ncash = 0.01\n")
    assert HaircutSchedule.load(path) == HaircutSchedule(cash=0.01)
    assert HaircutSchedule.load(None) == HaircutSchedule()
    for text in ("[other]\n", "[haircuts\n", '[haircuts]\ntable = [[2, 0.01], [1, 0.04]]\n'):
        path.write_text(text)
        with pytest.raises(InputError) as exc:
            HaircutSchedule.load(path)
        assert exc.value.source == path or str(path) in str(exc.value)


def test_cash_haircut_and_withdrawals(snapshot: MarketSnapshot, data_dir: Path) -> None:
    """Cash at a 2% haircut: $1,000,000 is worth $980,000.  Withdrawing all of it empties the
    account; withdrawing more than is held, or posting a futures contract, is refused and
    changes nothing."""
    book = CollateralBook(snapshot, load_master(data_dir), HaircutSchedule(cash=0.02))
    post(book, "F", "CASH", 1_000_000.0, 1)
    assert book.value("F") == pytest.approx(980_000.0, abs=1e-6)
    with pytest.raises(InputError, match="cannot withdraw 1,000,001.00"):
        post(book, "F", "CASH", -1_000_001.0, 2)
    assert book.holdings["F"] == {"CASH": 1_000_000.0}
    with pytest.raises(InputError, match="not a Treasury security"):
        post(book, "F", "ZNU24", 1.0, 3)
    post(book, "F", "CASH", -400_000.0, 4)
    assert book.holdings["F"] == {"CASH": 600_000.0}
    post(book, "F", "CASH", -600_000.0, 5)
    assert book.holdings["F"] == {} and book.value("F") == 0.0


def test_excess_from_nothing_and_no_assessment_without_a_requirement(book: CollateralBook) -> None:
    """$150 cash against a requirement of $100, no call before: an excess of $50, no call met.
    A requirement that cannot be computed (NaN) is not assessed; a covered account with less
    than half a cent to spare and no status records nothing."""
    post(book, "G", "CASH", 150.0, 1)
    assert book.assess("G", float("nan")) is None
    kind, data = book.assess("G", 100.0)  # type: ignore[misc]
    assert kind == "excess" and data["excess"] == 50.0 and data["call_met"] is False
    post(book, "H", "CASH", 100.0, 2)
    assert book.assess("H", 99.996) is None
    book.restore("excess", {"account": "G", "excess": 50.0})
    assert book.status["G"].kind == "excess" and book.status["G"].amount == 50.0


# --- rules the second mutation run (issue 17) found unguarded ---------------------------------

def _fedinvest_clean(data_dir: Path, cusip: str) -> float:
    with (data_dir / "securities" / "fedinvest_prices_2024-06-26.csv").open(newline="") as fh:
        return next(float(r["sell"]) for r in csv.DictReader(fh) if r["cusip"] == cusip)


def test_haircut_bucket_by_days_over_365_25(snapshot: MarketSnapshot, data_dir: Path) -> None:
    """Remaining maturity is days / 365.25.  The 3 1/4% note 91282CEV9 matures on 2029-06-30,
    1,830 days after 2024-06-26: 1830 / 365.25 = 5.0103 years, past the 5-year bound, so the
    (5, 10] bucket's 3% applies, not the (3, 5] bucket's 2% (1830 / 366.25 would be 4.997).
    By hand: the value is exactly 0.97 x the unhaircut value (a schedule of 0%), and that value
    is FedInvest's clean 95.03125 plus accrued 3.25 / 2 x 179 / 182 (2023-12-31 to the
    2024-06-27 settlement, in a 182-day period) per 100 face, within 0.5% (the engine prices
    off the fitted curve)."""
    master = load_master(data_dir)
    plain = CollateralBook(snapshot, master, HaircutSchedule(((float("inf"), 0.0),)))
    book = CollateralBook(snapshot, master)
    for b in (plain, book):
        post(b, "A", "91282CEV9", 1_000_000.0, 1)
    by_hand = 1_000_000.0 * (_fedinvest_clean(data_dir, "91282CEV9") + 3.25 / 2 * 179 / 182) / 100
    assert plain.value("A") == pytest.approx(by_hand, rel=0.005)
    assert book.value("A") == pytest.approx(0.97 * plain.value("A"), rel=1e-12)


@pytest.mark.parametrize(("asset", "why"), [
    ("912827G89", "has matured"),  # a 2-year note of 1992, matured 1994-09-30 (auctions.csv)
    ("912796Y45", "not after settlement"),  # a bill maturing on the settlement date (2024-06-27)
    ("037833100", "037833100"),  # a well-formed CUSIP that is no Treasury in the master
    ("ZNU24", "not a Treasury security"),  # a futures contract
])
def test_only_cash_and_live_treasuries_are_posted(book: CollateralBook, asset: str, why: str) -> None:
    """Eligible collateral is cash or a Treasury maturing after settlement; anything else
    is refused when posted and the account's holdings and value do not change (CUSIPs start
    with a digit, futures symbols with a letter: both kinds of identifier are checked)."""
    post(book, "K", "CASH", 1_000.0, 1)
    with pytest.raises(InputError, match=why):
        post(book, "K", asset, 1_000_000.0, 2)
    assert book.holdings["K"] == {"CASH": 1_000.0} and book.value("K") == 1_000.0


def test_withdrawals_under_a_dollar_and_of_what_is_not_held(book: CollateralBook) -> None:
    """An account holding $0.50 cash cannot withdraw $0.75, and nothing can be withdrawn of an
    asset the account does not hold (a Treasury, or cash from an account never seen): no
    collateral balance ever goes below zero, and a refused movement changes nothing."""
    post(book, "L", "CASH", 0.50, 1)
    with pytest.raises(InputError, match="holds 0.50 of CASH, cannot withdraw 0.75"):
        post(book, "L", "CASH", -0.75, 2)
    with pytest.raises(InputError, match="holds 0.00 of 91282CKQ3, cannot withdraw 0.50"):
        post(book, "L", "91282CKQ3", -0.50, 3)
    with pytest.raises(InputError, match="holds 0.00 of CASH, cannot withdraw 0.50"):
        post(book, "M", "CASH", -0.50, 4)
    assert book.holdings == {"L": {"CASH": 0.50}}
    post(book, "L", "CASH", -0.50, 5)
    assert book.holdings["L"] == {}


def test_half_a_cent_or_less_is_ignored_at_every_edge(book: CollateralBook) -> None:
    """Worksheet (dollars; each figure an exact binary double, so the edges are exact):

    * no collateral, requirement 0.005: a deficit of exactly half a cent, no call;
    * requirement 1,000: a call for 1,000; the same requirement again: nothing new;
      1,000.005 (the deficit grew by exactly half a cent): nothing new; 1,000.02: a call for
      1,000.02;
    * $0.005 cash against a requirement of 0: an excess of exactly half a cent from nothing
      is not recorded."""
    assert book.assess("N", 0.005) is None
    kind, data = book.assess("N", 1_000.0)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == 1_000.0
    assert book.assess("N", 1_000.0) is None
    assert book.assess("N", 1_000.005) is None
    kind, data = book.assess("N", 1_000.02)  # type: ignore[misc]
    assert kind == "margin_call" and data["amount_due"] == 1_000.02
    post(book, "P", "CASH", 0.005, 1)
    assert book.assess("P", 0.0) is None and book.status["P"].kind is None


def test_a_call_met_exactly_or_to_within_half_a_cent(book: CollateralBook) -> None:
    """A call for 1,000 met by exactly $1,000 cash: the call is met, with an excess of 0.  A
    call for 1,000 met by $999.997 (a deficit of 0.3 cent, under half a cent): also met, and
    the excess recorded is 0, never negative (-0.003).  The status keeps the amount recorded,
    as a replay restores it."""
    for account, cash in (("Q", 1_000.0), ("R", 999.997)):
        kind, data = book.assess(account, 1_000.0)  # type: ignore[misc]
        assert kind == "margin_call" and data["amount_due"] == 1_000.0
        post(book, account, "CASH", cash, 1)
        kind, data = book.assess(account, 1_000.0)  # type: ignore[misc]
        assert kind == "excess" and data["call_met"] is True and data["excess"] == 0.0
        assert book.status[account].kind == "excess" and book.status[account].amount == 0.0


@pytest.mark.parametrize("table", [
    ((float("nan"), 0.01), (3.0, 0.02), (float("inf"), 0.05)),  # a NaN bound (TOML's nan)
    ((5.0, 0.01), (5.0, 0.02), (float("inf"), 0.03)),  # a bound repeated: a bucket nothing falls in
    ((0.0, 0.0), (float("inf"), 0.03)),  # a bound of 0 years: no eligible security is that short
    ((-1.0, 0.0), (float("inf"), 0.03)),
])
def test_haircut_bounds_must_be_positive_and_strictly_increasing(table: tuple) -> None:  # type: ignore[type-arg]
    """Before the fix a NaN bound passed the sorted check (NaN compares false) and a 2-year
    note took the first bucket's haircut; a repeated bound silently dropped a bucket."""
    with pytest.raises(InputError) as exc:
        HaircutSchedule(table)
    assert exc.value.field == "haircuts.table"


def test_haircut_file_errors_name_the_file(tmp_path: Path) -> None:
    """A table without cash gives cash 0; each way a file can be wrong (missing, not TOML, no
    [haircuts], a table that is not a list, a bound that is not a number, a NaN bound) is an
    InputError naming the file."""
    path = tmp_path / "h.toml"
    path.write_text('[haircuts]\ntable = [[2, 0.01], ["inf", 0.04]]\n')
    assert HaircutSchedule.load(path) == HaircutSchedule(((2.0, 0.01), (float("inf"), 0.04)), 0.0)
    with pytest.raises(InputError) as exc:
        HaircutSchedule.load(tmp_path / "missing.toml")
    assert str(exc.value.source) == str(tmp_path / "missing.toml")
    for text, field in (("[haircuts]\ntable = 5\n", None), ('[haircuts]\ntable = [["x", 0.01]]\n', None),
                        ('[haircuts]\ntable = [[nan, 0.01], ["inf", 0.04]]\n', "haircuts.table")):
        path.write_text(text)
        with pytest.raises(InputError) as exc:
            HaircutSchedule.load(path)
        assert str(exc.value.source) == str(path) and exc.value.field == field, text


def test_a_validated_schedule_cannot_be_changed() -> None:
    """The schedule is checked once, when it is built, and shared by every account's book: a
    later assignment would skip the check, so it is refused (frozen dataclass)."""
    s = HaircutSchedule()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cash = 1.5  # type: ignore[misc]
    assert s.cash == 0.0


def test_withdrawing_to_the_cent_what_was_posted_in_pieces(book: CollateralBook) -> None:
    """$1,234,567.89 and $200,000.20 posted, then $1,434,568.09 (their sum, to the cent)
    withdrawn: accepted and the account is empty.  In binary floating point the two deposits
    add up to 2.3e-10 dollars less than the withdrawal: float rounding, within the tolerance of
    one part in 10^9 of the amount, not an overdraft, and no residue is kept."""
    assert 1_234_567.89 + 200_000.20 < 1_434_568.09  # the rounding this test is about
    post(book, "S", "CASH", 1_234_567.89, 1)
    post(book, "S", "CASH", 200_000.20, 2)
    post(book, "S", "CASH", -1_434_568.09, 3)
    assert book.holdings["S"] == {} and book.value("S") == 0.0


def test_a_treasury_named_in_the_ust_form_is_priced_not_taken_as_cash(book: CollateralBook, data_dir: Path) -> None:
    """Collateral may name a Treasury as ``UST:<coupon>:<maturity>`` (which sorts after
    "CASH", where CUSIPs sort before it).  $2m face of UST:4.375:2034-05-15 is the note
    91282CKQ3: worth FedInvest's clean 100.50 plus accrued 4.375 / 2 x 43 / 184 per 100, less
    the 3% haircut of 9.9 years, about $1,959,617 (within 0.5%), not $2m as if it were cash,
    and the same as the CUSIP to the cent."""
    clean = _fedinvest_clean(data_dir, "91282CKQ3")
    by_hand = 2_000_000.0 * (clean + 4.375 / 2 * 43 / 184) / 100 * 0.97
    post(book, "U", "UST:4.375:2034-05-15", 2_000_000.0, 1)
    post(book, "V", "91282CKQ3", 2_000_000.0, 2)
    assert book.value("U") == pytest.approx(by_hand, rel=0.005)
    assert book.value("U") == pytest.approx(book.value("V"), abs=0.01)


@pytest.mark.parametrize(("asset", "haircut"), [
    ("UST:4:2029-06-26", 0.02),  # 1,826 days: 4.9993 years, inside the (3, 5] bucket
    ("UST:0:2025-06-26", 0.005),  # a bill, 365 days: 0.9993 years, inside the first bucket
])
def test_haircut_bucket_just_inside_a_bound(snapshot: MarketSnapshot, data_dir: Path, asset: str,
                                            haircut: float) -> None:
    """The other side of the days / 365.25 rule: a security maturing on the 1,826th day is
    4.9993 years out (1826 / 364.25 would be 5.013), so 2%, not 3%; a bill of 365 days is
    0.9993 years, so 0.5%, not 1%.  No real Treasury matures in the few days before a bound
    on 2024-06-26 (checked against auctions.csv and FedInvest), so these are synthetic,
    named in the UST: form.  By hand: value = (1 - haircut) x the unhaircut value."""
    master = load_master(data_dir)
    plain = CollateralBook(snapshot, master, HaircutSchedule(((float("inf"), 0.0),)))
    book = CollateralBook(snapshot, master)
    for b in (plain, book):
        post(b, "A", asset, 1_000_000.0, 1)
    assert book.value("A") == pytest.approx((1 - haircut) * plain.value("A"), rel=1e-12)


def test_a_replayed_status_equals_the_live_one(snapshot: MarketSnapshot, data_dir: Path) -> None:
    """A replay restores each account's status from the recorded call and excess events; it
    must equal the status the live book holds, so the next assessment is the same.  Live: a
    call for 1,000, then $999.997 cash (met to within half a cent: an excess of 0 recorded,
    not -0.003), then a call of 10 on another account."""
    master = load_master(data_dir)
    live, replayed = CollateralBook(snapshot, master), CollateralBook(snapshot, master)
    events = [live.assess("R", 1_000.0)]
    post(live, "R", "CASH", 999.997, 1)
    events += [live.assess("R", 1_000.0), live.assess("T", 10.0)]
    for kind, data in events:  # type: ignore[misc]
        replayed.restore(kind, data)
    assert [k for k, _ in events] == ["margin_call", "excess", "margin_call"]  # type: ignore[misc]
    assert replayed.status == live.status
    assert live.status["R"].amount == 0.0 and live.status["T"].amount == 10.0
