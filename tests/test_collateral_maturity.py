"""Collateral that matures while it is held becomes cash at its redemption value.

Before this, a market roll past a held security's maturity made every valuation of the
account raise ``ExpiredContractError`` (the collateral could no longer be priced), so the live
session and any replay of its ledger stopped at the next assessment.

Hand figures: 912828XX3 is the 2% 7-year note of 2017-06-30 maturing 2024-06-30 (FedInvest
price file of 2024-06-26 in ``../shared/data/securities``: coupon 0.02, maturity 2024-06-30).
Treasury pays the last half-year coupon with the principal (TreasuryDirect, "Treasury Notes"),
so $10m face redeems for 10,000,000 x (1 + 0.02 / 2) = $10,100,000.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from xmargin.clearing import CollateralBook, LedgerSession, load_market, replay
from xmargin.engine import CollateralMovement
from xmargin.engine.trades import parse_row
from xmargin.ledger import Ledger, verify_ledger
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master

BEFORE, AFTER = date(2024, 6, 26), date(2024, 7, 5)
NOTE = "912828XX3"  # 2% note maturing 2024-06-30
FACE = 10_000_000.0
REDEEMED = 10_100_000.0  # hand: face x (1 + 2% / 2)


def test_a_held_note_that_matures_becomes_cash_with_its_last_coupon(data_dir: Path) -> None:
    master = load_master(data_dir)
    book = CollateralBook(load_snapshot(BEFORE, data_dir=data_dir), master)
    book.apply(CollateralMovement("C1", "A", NOTE, FACE, datetime(2024, 6, 26, 15, tzinfo=UTC)))
    book.apply(CollateralMovement("C2", "A", "CASH", 250_000.0, datetime(2024, 6, 26, 15, 1, tzinfo=UTC)))
    # before maturity: dirty price (about 100.95, with five months' accrued interest) less the
    # 0.5% haircut of the under-one-year bucket, below the redemption amount
    assert FACE < book.value("A") - 250_000.0 < REDEEMED * (1 - 0.005)

    book.set_snapshot(load_snapshot(AFTER, data_dir=data_dir))
    assert book.holdings["A"] == {"CASH": pytest.approx(250_000.0 + REDEEMED, abs=1e-6)}
    assert book.value("A") == pytest.approx(250_000.0 + REDEEMED, abs=1e-6)  # cash: no haircut by default
    [r] = book.redemptions
    assert (r.account, r.asset, r.maturity, r.face) == ("A", NOTE, date(2024, 6, 30), FACE)
    assert r.cash == pytest.approx(REDEEMED, abs=1e-6)
    book.set_snapshot(load_snapshot(AFTER, data_dir=data_dir))
    assert book.redemptions == []  # nothing left to redeem


def test_a_bill_redeems_at_par_and_a_later_note_stays_a_security(data_dir: Path) -> None:
    master = load_master(data_dir)
    bill = next(r.cusip for r in master.records.values()
                if r.kind == "bill" and date(2024, 6, 28) <= r.maturity <= AFTER)  # after T+1 settlement
    later = next(r.cusip for r in master.records.values()  # a note maturing in 2029: still a security after
                 if r.kind == "note" and r.issue_date < date(2024, 1, 1) and r.maturity.year == 2029)
    book = CollateralBook(load_snapshot(BEFORE, data_dir=data_dir), master)
    t = datetime(2024, 6, 26, 15, tzinfo=UTC)
    book.apply(CollateralMovement("C1", "B", bill, 1_000_000.0, t))
    book.apply(CollateralMovement("C2", "B", later, 2_000_000.0, t))
    book.set_snapshot(load_snapshot(AFTER, data_dir=data_dir))
    assert book.holdings["B"] == {"CASH": 1_000_000.0, later: 2_000_000.0}  # a bill pays 100 per 100 face
    assert book.value("B") > 1_000_000.0


def test_the_session_rolls_past_maturity_and_its_ledger_replays(tmp_path: Path, data_dir: Path) -> None:
    """The live session moves to a market after the note's maturity, assesses the account
    against cash, and a fresh replay of the ledger arrives at the same holdings and status."""
    before, after = load_market(BEFORE, data_dir=data_dir), load_market(AFTER, data_dir=data_dir)
    rows = [{"trade_id": "T1", "account": "XM1", "instrument": "ZNU24", "quantity": "-40",
             "time": "2024-06-26T14:00:00Z"},
            {"trade_id": "C1", "account": "XM1", "instrument": NOTE, "quantity": str(FACE),
             "time": "2024-06-26T15:00:00Z", "action": "collateral"}]
    parsed = []
    for n, row in enumerate(rows, start=2):
        ev, inst = parse_row({"member": "M1", "account_type": "house", **row}, as_of=BEFORE, master=before.master,
                             src="t.csv", n=n)
        parsed.append((n, ev, inst))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as lg:
        session = LedgerSession.open(lg)
        session.use_market(before)
        session.ingest(parsed)
        assert session.use_market(after)
        status = session.status("XM1")
        assert status["collateral_value"] == pytest.approx(REDEEMED, abs=1e-6)
        assert session.collateral.holdings["XM1"] == {"CASH": pytest.approx(REDEEMED, abs=1e-6)}
        state = replay(lg)
        assert state.mismatches == []
        assert state.collateral is not None and state.collateral.holdings == session.collateral.holdings
        assert verify_ledger(lg).ok
