"""A position whose instrument ends (matures, expires, closes) leaves its account on the market roll.

Before, a live session rolled past a held note's maturity kept the position: nothing could price
it, so the account's every figure was NaN (``computable: false``) until someone traded it away.

Hand dates (independent of the code):

* 912828XX3 is the 2% 7-year note maturing 2024-06-30 (FedInvest price file of 2024-06-26 in
  ``../shared/data/securities``).
* ZNU24: CBOT Rulebook ch. 19, last delivery day = last business day of the delivery month:
  Monday 2024-09-30.
* SR3M24: reference quarter from the third Wednesday of June 2024 (2024-06-19) to the third
  Wednesday of September (2024-09-18, excluded); trading ends the business day before, Tuesday
  2024-09-17 (CME Rulebook ch. 460), so the position is gone from 2024-09-18.
* ZQN24: trading ends on the last business day of July 2024, Wednesday 2024-07-31 (CBOT
  Rulebook ch. 22), so the position is gone from 2024-08-01.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest

from xmargin.clearing import LedgerSession, load_market, replay
from xmargin.engine import LiveEngine
from xmargin.engine.trades import parse_row
from xmargin.errors import ExpiredContractError, InputError
from xmargin.ledger import Ledger, verify_ledger
from xmargin.margin.context import build_context
from xmargin.portfolio.book import Account
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import parse_instrument, position_end
from xmargin.reference.repo import make_repo

BEFORE, AFTER = date(2024, 6, 26), date(2024, 7, 5)
NOTE = "912828XX3"  # 2% note maturing 2024-06-30
ACCOUNT = Account("XM1", "M1", "house", cross_margin=True)


def test_position_end_of_each_kind_by_hand(data_dir: Path) -> None:
    master = load_market(BEFORE, data_dir=data_dir).master
    assert position_end(parse_instrument(NOTE, as_of=BEFORE, master=master)) == date(2024, 6, 30)
    assert position_end(parse_instrument("ZNU24", as_of=BEFORE, master=master)) == date(2024, 9, 30)
    assert position_end(parse_instrument("SR3M24", as_of=BEFORE, master=master)) == date(2024, 9, 18)
    assert position_end(parse_instrument("ZQN24", as_of=BEFORE, master=master)) == date(2024, 8, 1)
    note = parse_instrument(NOTE, as_of=BEFORE, master=master)
    repo = make_repo(note, start=date(2024, 6, 27), end=date(2024, 6, 28), rate_pct=5.3, cash_amount=9_900_000.0,
                     face=10_000_000.0, as_of=BEFORE)
    assert position_end(repo) == date(2024, 6, 28)


def _engine(as_of: date, data_dir: Path, instruments: list[str]) -> LiveEngine:
    market = load_market(as_of, data_dir=data_dir)
    universe = InstrumentUniverse.of([parse_instrument(i, as_of=BEFORE, master=market.master) for i in instruments])
    return LiveEngine(build_context(market.snapshot, market.master, universe, market.params, market.eligibility))


def test_a_matured_note_leaves_the_account_and_the_rest_is_margined(data_dir: Path) -> None:
    engine = _engine(BEFORE, data_dir, [NOTE, "ZNU24"])
    engine.trade("T1", ACCOUNT, engine.context.universe.instruments[0], 10_000_000.0)
    engine.trade("T2", ACCOUNT, engine.context.universe.instruments[1], -40.0)
    assert math.isfinite(engine.margin("XM1")["total_after"])

    engine.set_market(load_market(AFTER, data_dir=data_dir).snapshot)
    [gone] = engine.ended
    assert (gone.account, gone.instrument, gone.quantity, gone.ended) == ("XM1", NOTE, 10_000_000.0, date(2024, 6, 30))
    assert engine.positions("XM1") == {"ZNU24": -40.0}
    after = engine.margin("XM1")
    assert after["computable"] and math.isfinite(after["total_after"])

    # the same figures as an account that only ever held the futures, margined on the new date
    alone = _engine(AFTER, data_dir, ["ZNU24"])
    alone.trade("T2", ACCOUNT, alone.context.universe.instruments[0], -40.0)
    assert after == pytest.approx(alone.margin("XM1"), rel=1e-12)

    with pytest.raises(InputError, match="T1.*912828XX3 ended on 2024-06-30"):
        engine.cancel("T1")
    with pytest.raises(ExpiredContractError, match="912828XX3 ended on 2024-06-30"):
        engine.what_if("XM1", NOTE, 1_000_000.0)
    engine.cancel("T2")  # the futures trade still cancels
    assert engine.positions("XM1") == {}
    engine.set_market(load_market(AFTER, data_dir=data_dir).snapshot)
    assert engine.ended == []  # nothing left to end


def test_the_session_drops_the_matured_position_and_its_ledger_replays(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = load_market(BEFORE, data_dir=data_dir), load_market(AFTER, data_dir=data_dir)
    rows = [{"trade_id": "T1", "account": "XM1", "instrument": "ZNU24", "quantity": "-40",
             "time": "2024-06-26T14:00:00Z"},
            {"trade_id": "T2", "account": "XM1", "instrument": NOTE, "quantity": "10000000",
             "time": "2024-06-26T15:00:00Z"}]
    parsed = []
    for n, row in enumerate(rows, start=2):
        ev, inst = parse_row({"member": "M1", "account_type": "house", **row}, as_of=BEFORE, master=before.master,
                             src="t.csv", n=n)
        parsed.append((n, ev, inst))
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as lg:
        session = LedgerSession.open(lg)
        session.use_market(before)
        session.ingest(parsed)
        with caplog.at_level("WARNING", logger="xmargin.service"):
            assert session.use_market(after)
        assert "10,000,000 of 912828XX3 in account XM1 ended on 2024-06-30 and left the account" in caplog.text
        assert session.engine.positions("XM1") == {"ZNU24": -40.0}
        assert session.engine.margin("XM1")["computable"]
        state = replay(lg)
        assert state.mismatches == []
        assert state.engine is not None and state.engine.positions("XM1") == {"ZNU24": -40.0}
        assert verify_ledger(lg).ok
