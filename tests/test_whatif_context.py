"""A portfolio what-if's context is assembled from rows already priced, residual factors included.

The reference is :func:`build_context` on the what-if's universe, priced from scratch: the
assembled context must give the same scenario P&L (curve and residual factors) and the same
margins.  Before, a context with residual-factor rows was always priced afresh (about 50 ms of
server CPU per 10-position request, issue 14's portfolio target), because only the curve rows
were assembled.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from xmargin.clearing.replay import load_market
from xmargin.margin.calculator import compute_margins
from xmargin.margin.context import build_context
from xmargin.portfolio.book import Account, build_book
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import parse_instrument
from xmargin.service import whatif

AS_OF = date(2024, 6, 26)
HELD = ["ZNU24", "912828YB0", "SR3U24"]  # the engine's universe
ASKED = ["ZBU24", "ZNU24", "ZTU24", "912828YB0", "91282CKQ3", "ZQQ24", "SR3Z24", "ZFU24"]  # new and held mixed


@pytest.fixture(scope="module")
def market(data_dir):
    return load_market(AS_OF, data_dir=data_dir)


def _universe(market, codes: list[str]) -> InstrumentUniverse:
    return InstrumentUniverse.of([parse_instrument(c, as_of=AS_OF, master=market.master) for c in codes])


def _residual_pnl(ctx) -> tuple[np.ndarray, np.ndarray]:
    r = ctx.residual
    return r.pnl(r.ficc_changes), r.pnl(r.cme_changes)


def test_assembled_what_if_context_equals_one_priced_from_scratch(market, monkeypatch: pytest.MonkeyPatch) -> None:
    base = build_context(market.snapshot, market.master, _universe(market, HELD), market.params, market.eligibility)
    assert base.residual is not None and base.residual.factors  # the residual factors are on by default
    priced: list[list[str]] = []  # what the what-if cache had to price

    def spy(snapshot, master, universe, *args):
        priced.append(list(universe.ids))
        return build_context(snapshot, master, universe, *args)

    monkeypatch.setattr(whatif, "build_context", spy)
    extra = whatif.WhatIfInstruments(limit=100)
    extra.context(base, _universe(market, ASKED[:3]))  # some rows priced by an earlier what-if
    universe = _universe(market, ASKED)
    got = extra.context(base, universe)
    assert priced == [["ZBU24", "ZTU24"], ["91282CKQ3", "ZQQ24", "SR3Z24", "ZFU24"]]  # only what is new each time
    want = build_context(market.snapshot, market.master, universe, market.params, market.eligibility)

    np.testing.assert_allclose(got.ficc_pnl.pnl, want.ficc_pnl.pnl, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.cme_pnl.pnl, want.cme_pnl.pnl, rtol=1e-12, atol=1e-9)
    for a, b in zip(_residual_pnl(got), _residual_pnl(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)

    accounts = [Account("A", "M1", "house", cross_margin=True), Account("B", "M1", "customer", cross_margin=False)]
    qty = [-60.0, -40.0, 120.0, 25e6, -8e6, 300.0, -150.0, 90.0]
    holdings = [(k % 2, inst, q) for k, (inst, q) in enumerate(zip(universe.instruments, qty, strict=True))]
    holdings += [(0, universe.instruments[1], 10.0), (1, universe.instruments[3], 5e6)]
    book = build_book(accounts, holdings, universe=universe)
    m_got, m_want = compute_margins(got, book), compute_margins(want, book)
    for f in ("ficc_standalone", "cme_standalone", "total_before", "total_after"):
        np.testing.assert_allclose(getattr(m_got, f), getattr(m_want, f), rtol=1e-10, err_msg=f)


def test_the_same_instruments_again_reuse_the_assembled_context(market, monkeypatch: pytest.MonkeyPatch) -> None:
    """A portfolio re-run with other quantities has the same instruments: the context assembled
    for them is kept (the last ``assembled`` of them), with its ``filled`` P&L the NaN-free
    rows of its own P&L; another order or another model is assembled anew; past the rows
    budget the least recently used go."""
    from dataclasses import replace

    base = build_context(market.snapshot, market.master, _universe(market, HELD), market.params, market.eligibility)
    priced: list[list[str]] = []

    def spy(snapshot, master, universe, *args):
        priced.append(list(universe.ids))
        return build_context(snapshot, master, universe, *args)

    monkeypatch.setattr(whatif, "build_context", spy)
    extra = whatif.WhatIfInstruments(limit=100, assembled_rows=6)  # two contexts of 3 instruments
    codes = ["ZBU24", "ZNU24", "912828YB0"]
    first = extra.context(base, _universe(market, codes))
    assert priced == [["ZBU24"]] and extra.at_hand(base, _universe(market, codes))
    assert extra.context(base, _universe(market, codes)) is first
    for pnl in (first.ficc_pnl, first.cme_pnl):
        np.testing.assert_array_equal(pnl.filled, np.nan_to_num(pnl.pnl))
    other = extra.context(base, _universe(market, codes[::-1]))
    assert other is not first and priced == [["ZBU24"]]
    np.testing.assert_array_equal(other.ficc_pnl.pnl, first.ficc_pnl.pnl[::-1])
    refit = replace(base, params=replace(base.params, cross=replace(base.params.cross, reduction_cap=0.5)))
    assert extra.context(refit, _universe(market, codes)) is not first  # another model: not this one
    extra.context(base, _universe(market, ["ZNU24"]))  # a 7th row: the least recently used context goes
    assert len(extra._assembled) == 2
    assert extra.context(base, _universe(market, codes)) is not first


def test_the_documents_model_section_is_built_once_and_handed_out_fresh(market) -> None:
    """``margin_payload``'s ``model`` section is kept per set of model objects: the same
    document each time, as a new dict (a caller adding to it does not change the next one);
    other parameters give their own section."""
    from dataclasses import replace

    from xmargin.workflow import margin_payload

    ctx = build_context(market.snapshot, market.master, _universe(market, HELD), market.params, market.eligibility)
    book = build_book([Account("A", "M1", "house", cross_margin=True)],
                      [(0, ctx.universe.instruments[0], -10.0), (0, ctx.universe.instruments[1], 1e6)],
                      universe=ctx.universe)
    margins = compute_margins(ctx, book)
    first = margin_payload(ctx, book, margins)
    first["model"]["added"] = True
    second = margin_payload(ctx, book, margins)
    assert "added" not in second["model"] and second["model"]["params"] == market.params.to_dict()
    assert second["model"]["span"]["roots"] == list(ctx.span.roots)
    assert second["model"]["ficc_scenarios"] == ctx.ficc_scenarios.size
    capped = replace(ctx, params=replace(ctx.params, cross=replace(ctx.params.cross, reduction_cap=0.5)))
    assert margin_payload(capped, book, compute_margins(capped, book))["model"]["params"]["cross"]["reduction_cap"] == 0.5
