"""The combined model's backtest tests each leg at the horizon of the margin that covers it.

Hand check on the real history (2019-03-04): each account's realised P&L is rebuilt here from
the instruments revalued on the par curves published one and three business days later (the
Basel hypothetical P&L, ``pnl="model"``), independently of the engine's realised-P&L code:

* ``FUT`` (ZN futures only, cross-margining elected, nothing at FICC: no reduction): its
  combined margin is CME's stand-alone SPAN margin, whose scanning ranges cover one-day moves,
  so its P&L is the 1-day P&L, the same as under the ``cme`` model;
* ``SPLIT`` (a note and ZN futures, cross-margining not elected: each house margins and
  liquidates its own side): the note's 3-day P&L plus the futures' 1-day P&L;
* ``BASIS`` (the same legs, elected, reduction applied): liquidated jointly over 3 days.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.market.snapshot import load_snapshot
from xmargin.pricing.revalue import unit_values
from xmargin.validation.backtest import SideHorizons, backtest, model_horizons
from xmargin.workflow import Environment

BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS,M1,house,9128285C0,100000000,true
BASIS,M1,house,ZNM19,-869,true
SPLIT,M1,house,9128285C0,100000000,false
SPLIT,M1,house,ZNM19,-869,false
FUT,M1,house,ZNM19,100,true
"""
DAY = date(2019, 3, 4)
NEXT, THIRD = date(2019, 3, 5), date(2019, 3, 7)  # one and three business days later


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("hz") / "book.csv"
    path.write_text(BOOK)
    env = Environment.load(DAY, data_dir=data_dir)
    book = env.read_book(path)
    kw = {"data_dir": data_dir, "params": env.params, "eligibility": env.eligibility, "pnl": "model"}
    runs = {m: backtest(book, DAY, DAY, model=m, **kw) for m in ("combined", "cme")}
    runs["override"] = backtest(book, DAY, DAY, model="combined", horizon_days=2, **kw)
    return env, book, runs


def _unit_pnl(env: Environment, book, later: date) -> np.ndarray:  # type: ignore[no-untyped-def]
    snap = env.snapshot
    other = load_snapshot(later, data_dir=snap.data_dir)
    values = unit_values(book.universe, snap, snap.curves_from_par(np.vstack([snap.par_yields, other.par_yields])),
                         env.master)
    return values[:, 1] - values[:, 0]


def test_default_horizons() -> None:
    from xmargin.margin.params import MarginParams

    p = MarginParams()
    assert model_horizons(p, "combined") == SideHorizons(3, 1, 3)
    assert model_horizons(p, "cme") == SideHorizons(1, 1, 1)
    assert model_horizons(p, "ficc") == SideHorizons(3, 3, 3)
    assert model_horizons(p, "combined", 5) == SideHorizons(5, 5, 5)


def test_each_side_at_its_own_horizon(setup) -> None:  # type: ignore[no-untyped-def]
    env, book, runs = setup
    one, three = _unit_pnl(env, book, NEXT), _unit_pnl(env, book, THIRD)
    ids = book.universe.ids
    note, zn = ids.index("9128285C0"), ids.index("ZNM19")
    qty = book.positions.toarray()
    acc = {a.account: i for i, a in enumerate(book.accounts)}
    r = runs["combined"]
    assert r.horizon_days == 3 and r.side_horizons == {"ficc": 3, "cme": 1, "joint": 3}
    assert r.to_dict()["side_horizons"] == {"ficc": 3, "cme": 1, "joint": 3}
    red = r.components["applied_reduction_factor"][:, 0]
    assert red[acc["BASIS"]] > 0 and red[acc["SPLIT"]] == 0 and red[acc["FUT"]] == 0
    expected = {
        "FUT": 100 * one[zn],
        "SPLIT": 1e8 * three[note] - 869 * one[zn],
        "BASIS": 1e8 * three[note] - 869 * three[zn],
    }
    for name, value in expected.items():
        assert qty[acc[name]].nonzero()[0].size in (1, 2)
        assert r.pnl[acc[name], 0] == pytest.approx(value, rel=1e-9), name
    # the futures-only account: the same P&L and margin as under the CME model (SPAN, 1 day),
    # and no FICC Backtesting Charge (FICC has no requirement on it)
    c = runs["cme"]
    assert c.pnl[acc["FUT"], 0] == pytest.approx(r.pnl[acc["FUT"], 0], rel=1e-9)
    assert c.margin[acc["FUT"], 0] == pytest.approx(r.margin[acc["FUT"], 0], rel=1e-9)
    assert np.all(r.components["backtesting_charge"][acc["FUT"]] == 0)
    # the mixed horizons differ from the old rule (every leg over 3 days) by the futures' 1- vs 3-day moves
    assert abs(one[zn] - three[zn]) * 869 > 1e3


def test_horizon_days_overrides_every_side(setup, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    env, book, runs = setup
    two = _unit_pnl(env, book, date(2019, 3, 6))
    o = runs["override"]
    assert o.horizon_days == 2 and o.side_horizons == {"ficc": 2, "cme": 2, "joint": 2}
    np.testing.assert_allclose(o.pnl[:, 0], np.asarray(book.positions @ two).ravel(), rtol=1e-9)
