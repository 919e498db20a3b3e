"""Placement and hedge optimisers against brute force on small real books (2024-06-26)."""

from __future__ import annotations

from datetime import date
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmargin.margin.calculator import compute_margins, margins_for_positions
from xmargin.optimise.hedge import best_futures_hedge
from xmargin.optimise.placement import (
    all_placements,
    customer_benefits,
    local_search,
    optimise_placement,
    placement_problem,
)
from xmargin.portfolio.book import Account, build_book
from xmargin.workflow import Environment

BOOK = """account,member,account_type,instrument,quantity,cross_margin
H-XM,M1,house,91282CKQ3,100000000,true
H-XM,M1,house,ZNU24,-1200,true
H-XM,M1,house,912810UA4,10000000,true
H-REG,M1,house,ZBU24,-80,false
H-REG,M1,house,91282CKP5,50000000,false
H-REG,M1,house,ZFU24,200,false
H-REG,M1,house,912797KS5,30000000,false
C1,M1,customer,ZFU24,300,true
C1,M1,customer,91282CKP5,20000000,true
C2,M1,customer,91282CKP5,20000000,false
C2,M1,customer,ZFU24,-180,false
M2H,M2,house,91282CKQ3,20000000,true
"""


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("opt") / "book.csv"
    path.write_text(BOOK)
    env = Environment.load(date(2024, 6, 26), data_dir=data_dir)
    book = env.read_book(path)
    return env, book, env.context(book)


def test_all_placements() -> None:
    rows = all_placements(3)
    assert rows.shape == (8, 3)
    assert len({tuple(r) for r in rows}) == 8
    assert list(rows[5]) == [True, False, True]  # bit j of 5 = 0b101


def test_exhaustive_equals_independent_brute_force(setup) -> None:  # type: ignore[no-untyped-def]
    """Every placement of the six eligible lots built as an explicit two-account book
    (XM + regular, the bill always regular) and margined by ``compute_margins``."""
    env, book, ctx = setup
    result = optimise_placement(ctx, book, "M1")
    assert result.method == "exhaustive" and result.evaluated == 64
    house = [i for i, a in enumerate(book.accounts) if a.member == "M1" and a.account_type == "house"]
    lots = [(ins, q) for i in house for ins, q in book.positions_of(i)]
    bill = [(ins, q) for ins, q in lots if ins == "912797KS5"]
    lots = [(ins, q) for ins, q in lots if ins != "912797KS5"]
    assert len(lots) == 6 and len(result.labels) == 6
    accounts, holdings = [], []
    for k, choice in enumerate(product([False, True], repeat=len(lots))):
        accounts += [Account(f"XM{k}", "M1", cross_margin=True), Account(f"REG{k}", "M1", cross_margin=False)]
        for (ins, q), inside in zip(lots, choice, strict=True):
            holdings.append((2 * k + (0 if inside else 1), ctx.universe.instruments[ctx.universe.index(ins)], q))
        holdings += [(2 * k + 1, ctx.universe.instruments[ctx.universe.index(ins)], q) for ins, q in bill]
    big = build_book(accounts, holdings, universe=ctx.universe)
    m = compute_margins(ctx, big).total_after
    totals = m[0::2] + m[1::2]
    assert result.margin_best == pytest.approx(totals.min(), rel=1e-12)
    current = next(k for k, c in enumerate(product([False, True], repeat=6)) if c == (True,) * 3 + (False,) * 3)
    assert result.margin_current == pytest.approx(totals[current], rel=1e-12)
    assert result.saving >= 0
    d = result.to_dict()
    assert set(d["moved_in"]).isdisjoint(d["moved_out"])
    assert all(lab.startswith("H-REG") for lab in d["moved_in"])


@pytest.mark.parametrize("start", ["current", "none", "all"])
def test_local_search_finds_the_brute_force_optimum(setup, start: str) -> None:  # type: ignore[no-untyped-def]
    env, book, ctx = setup
    problem, current = placement_problem(ctx, book, "M1")
    values = problem.totals(all_placements(len(current)))
    x0 = {"current": current, "none": np.zeros(6, bool), "all": np.ones(6, bool)}[start]
    x, value, evaluated = local_search(problem, x0)
    assert value == pytest.approx(values.min(), rel=1e-12)
    assert evaluated < len(values) * 4
    heuristic = optimise_placement(ctx, book, "M1", exhaustive_limit=0)
    assert heuristic.method.startswith("local search")
    assert heuristic.margin_best == pytest.approx(values.min(), rel=1e-12)


def test_customer_benefits(setup) -> None:  # type: ignore[no-untyped-def]
    env, book, ctx = setup
    rows = customer_benefits(ctx, book, "M1")
    assert [r["account"] for r in rows] == ["C1", "C2"]
    idx = book.account_index()
    for r in rows:
        q = book.positions[idx[r["account"]]]
        on = margins_for_positions(ctx, q, np.array([True])).total_after[0]
        off = margins_for_positions(ctx, q, np.array([False])).total_after[0]
        assert r["benefit"] == pytest.approx(off - on, rel=1e-12)
    c2 = rows[1]  # long note, short 5-year futures: a hedge, cross-margining pays
    assert c2["should_elect"] and not c2["elected"] and c2["benefit"] > 0


def test_hedge_is_the_grid_minimum(setup) -> None:  # type: ignore[no-untyped-def]
    """The reported hedge for the outright account equals the brute-force minimum over every
    contract count of each symbol's searched range (step 1), even with a coarse first grid."""
    env, book, ctx = setup
    i = book.account_index()["M2H"]
    result, ext = best_futures_hedge(ctx, book, i, roots=("ZN", "ZF"), max_grid=25)
    assert result.margin_after <= result.margin_before
    assert result.symbol is not None and result.contracts < 0  # a long note is hedged by selling futures
    n = len(ext.universe)
    row = sp.csr_matrix(book.positions[i])
    row = sp.csr_matrix((row.data, row.indices, row.indptr), shape=(1, n))
    for entry in result.per_symbol:
        j = ext.universe.index(entry["symbol"])
        reach = 4 * int(np.ceil(abs(entry["dv01_neutral_contracts"]))) + 20
        sizes = np.arange(-reach, reach + 1)
        q = sp.vstack([row] * len(sizes)).tolil()
        q[:, j] = sizes[:, None]
        m = margins_for_positions(ext, q.tocsr(), np.ones(len(sizes), bool)).total_after
        assert entry["margin_after"] == pytest.approx(m.min(), rel=1e-12)
        assert entry["contracts"] == sizes[int(np.argmin(m))]
    # the reported figure is the margin of the hedged book, margined afresh
    hedged = build_book([book.accounts[i]], [(0, ext.universe.instruments[ext.universe.index(ins)], qv)
                                             for ins, qv in book.positions_of(i)]
                        + [(0, ext.universe.instruments[ext.universe.index(result.symbol)], result.contracts)],
                        universe=ext.universe)
    assert compute_margins(ext, hedged).total_after[0] == pytest.approx(result.margin_after, rel=1e-12)
