"""The batch margin path (issue 14): in-place partial sorts and reused P&L buffers give the
figures of the copying path.

* :mod:`xmargin.margin.var_batch` against an explicit ``sorted()`` of every row with the tail
  rank from exact fractions (the rule of :mod:`xmargin.margin.var`: the ``k``-th largest loss,
  ``k = ceil((1 - a) * S)``, stress kept only when it raises the VaR), and bit for bit against
  :func:`~xmargin.margin.var.model_var` on the same rows -- with zero rows, ties, stressed
  columns trailing or not, no stress, a base set too small for the pooled way, floor columns
  and a stress weight (which go to the copying way);
* :func:`~xmargin.margin.calculator.product_into` bit for bit against ``q @ pnl``;
* :func:`~xmargin.margin.calculator.compute_margins` on real 2024-06-26 instruments and 300
  seeded accounts against the copying formulas written out here (account P&L ``q @ pnl`` of
  each sub-portfolio, :func:`~xmargin.margin.var.model_var` on untouched copies, the worst
  losses of the sums): equal to 1e-9 relative (the sums' order is fixed by sorted column
  indices; the VaR values are selected, not computed, so they are equal where the P&L is);
  and independent of the chunk size and of the order the accounts are processed in.
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmargin.margin.calculator import AccountMargins, _scale_columns, compute_margins, product_into
from xmargin.margin.context import MarginContext, build_context
from xmargin.margin.var import model_var, var_with_stress
from xmargin.margin.var_batch import model_var_inplace, var_with_stress_inplace
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Account, Book
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import parse_instrument

AS_OF = date(2024, 6, 26)


def _rank(n: int, confidence: float) -> int:
    return max(1, math.ceil((1 - Fraction(str(confidence))) * n))


def _var_by_sort(row: list[float], is_stress: list[bool], confidence: float) -> tuple[float, bool]:
    base = sorted(v for v, s in zip(row, is_stress, strict=True) if not s)
    full = sorted(row)
    b = max(0.0, -base[_rank(len(base), confidence) - 1]) if base else 0.0
    f = max(0.0, -full[_rank(len(full), confidence) - 1])
    if not any(is_stress):
        return f, False
    return max(b, f), f > b


def _matrix(rng: np.random.Generator, a: int, s: int) -> np.ndarray:
    pnl = np.round(rng.standard_normal((a, s)) * 50.0)  # rounded: many ties
    pnl[::4] = 0.0  # accounts without a position
    pnl[1::7, : s // 3] = 0.0  # zeros inside a row
    return pnl


@pytest.mark.parametrize("s, stress", [
    (400, "trailing"), (400, "none"), (400, "interleaved"), (60, "trailing"), (30, "mostly"),
])
@pytest.mark.parametrize("confidence", [0.99, 0.975, 0.9])
def test_inplace_var_is_the_explicit_sort(s: int, stress: str, confidence: float) -> None:
    rng = np.random.default_rng(s + int(confidence * 1000))
    pnl = _matrix(rng, 41, s)
    is_stress = np.zeros(s, dtype=bool)
    if stress == "trailing":
        is_stress[-s // 8:] = True
    elif stress == "interleaved":
        is_stress[::9] = True
    elif stress == "mostly":  # base of 5: the pool of k_full + stressed does not fit beside it
        is_stress[5:] = True
    expected = [_var_by_sort(row.tolist(), is_stress.tolist(), confidence) for row in pnl]
    copying = var_with_stress(pnl, is_stress, confidence)
    buf = pnl.copy()
    var, used = var_with_stress_inplace(buf, is_stress, confidence)
    assert var.tolist() == [e[0] for e in expected]
    assert used.tolist() == [e[1] for e in expected]
    np.testing.assert_array_equal(var, copying[0])
    np.testing.assert_array_equal(used, copying[1])
    held = np.flatnonzero(np.any(pnl != 0.0, axis=1))
    var2, used2 = var_with_stress_inplace(pnl.copy(), is_stress, confidence, active=held)
    np.testing.assert_array_equal(var2, var)
    np.testing.assert_array_equal(used2, used)


def test_other_rules_give_model_var() -> None:
    rng = np.random.default_rng(7)
    pnl = _matrix(rng, 23, 300)
    is_stress = np.zeros(300, dtype=bool)
    is_stress[-40:] = True
    is_floor = np.zeros(300, dtype=bool)
    is_floor[200:240] = True
    for kw in ({"is_floor": is_floor}, {"stress_weight": 0.25}, {"buffer": 0.25}, {}):
        floor = kw.get("is_floor")
        weight = float(kw.get("stress_weight", 0.0))
        buffer = float(kw.get("buffer", 0.0))
        want = model_var(pnl, is_stress, floor, 0.99, stress_weight=weight, buffer=buffer)
        got = model_var_inplace(pnl.copy(), is_stress, floor, 0.99, stress_weight=weight, buffer=buffer)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_inplace_var_refuses_a_view_it_cannot_sort() -> None:
    pnl = np.ones((4, 10))
    with pytest.raises(ValueError, match="C-contiguous"):
        var_with_stress_inplace(pnl[:, ::2], np.zeros(5, dtype=bool), 0.99)


def test_product_into_is_scipys_product() -> None:
    rng = np.random.default_rng(3)
    q = sp.random(50, 30, density=0.2, random_state=4, format="csr") * 1e6
    pnl = rng.standard_normal((30, 77))
    out = np.full((60, 77), np.nan)[:50]
    got = product_into(q, pnl, out)
    assert got is out
    np.testing.assert_array_equal(out, q @ pnl)
    np.testing.assert_array_equal(product_into(sp.csr_matrix((50, 30)), pnl, out), 0.0)


@pytest.fixture(scope="module")
def real(data_dir: Path) -> tuple[MarginContext, Book]:
    snapshot = load_snapshot(AS_OF, data_dir=data_dir)
    master = load_master(data_dir)
    names = ["91282CKQ3", "91282CKP5", "912797LB1", "912810TZ1", "91282CKN0", "ZNU24", "ZFU24", "ZTU24", "ZBU24",
             "SR3U24", "TNH25"]  # TNH25: listed but not priceable on the day (no deliverable yet)
    insts = [parse_instrument(x, as_of=AS_OF, master=master) for x in names]
    uni = InstrumentUniverse.of(insts)
    ctx = build_context(snapshot, master, uni)
    rng = np.random.default_rng(20240626)
    n = 300
    q = np.zeros((n, len(uni)))
    for i in range(n):
        cols = rng.choice(len(uni) - 1, size=rng.integers(1, 6), replace=False)  # TNH25 in a few only
        q[i, cols] = rng.integers(-50, 51, size=len(cols)) * np.where(cols < 5, 1e6, 1.0)
    q[::50, -1] = 3.0
    q[::37] = 0.0  # empty accounts
    accts = tuple(Account(f"A{i:03d}", "M", "house", bool(rng.random() < 0.7)) for i in range(n))
    return ctx, Book(accts, uni, sp.csr_matrix(q), source="test (seeded)")


def _copying_reference(ctx: MarginContext, book: Book) -> dict[str, np.ndarray]:
    """The copying path's formulas: each sub-portfolio's P&L, model_var on untouched arrays."""
    a, p = ctx.attributes, ctx.params
    xm = np.array([x.cross_margin for x in book.accounts])
    q = book.positions.tocsr()
    q_e = (sp.diags(xm.astype(float)) @ _scale_columns(q, a.eligible)).tocsr()
    q_r = (q - q_e).tocsr()
    parts = {}
    for name, m in (("ef", _scale_columns(q_e, ~a.is_cme)), ("ec", _scale_columns(q_e, a.is_cme)),
                    ("rf", _scale_columns(q_r, ~a.is_cme)), ("rc", _scale_columns(q_r, a.is_cme))):
        m.sort_indices()
        parts[name] = np.asarray(m @ ctx.ficc_pnl.filled)
    q_e.sort_indices()
    f, c = ctx.ficc_scenarios, ctx.cme_scenarios

    def var(pnl: np.ndarray, ss: object, conf: float) -> np.ndarray:
        return model_var(pnl, ss.is_stress, ss.is_floor, conf, stress_weight=ss.spec.stress_weight,  # type: ignore[attr-defined]
                         buffer=ss.spec.buffer)[0]  # type: ignore[attr-defined]

    def worst(pnl: np.ndarray) -> np.ndarray:
        return np.maximum(-pnl.min(axis=1), 0.0)

    return {
        "ficc_var_eligible": var(parts["ef"], f, p.ficc.confidence),
        "ficc_var": var(parts["ef"], f, p.ficc.confidence) + var(parts["rf"], f, p.ficc.confidence),
        "ficc_combined": var(parts["ef"] + parts["ec"], f, p.ficc.confidence),
        "cme_combined": var(np.asarray(q_e @ ctx.cme_pnl.filled), c, p.cme.var_confidence),
        "stressed_loss_ficc": worst(parts["ef"] + parts["rf"]),
        "stressed_loss_cme": worst(parts["ec"] + parts["rc"]),
        "stressed_loss_combined": worst(parts["ef"] + parts["rf"] + parts["ec"] + parts["rc"]),
    }


def test_batch_margins_are_the_copying_formulas(real: tuple[MarginContext, Book]) -> None:
    ctx, book = real
    got = compute_margins(ctx, book, chunk_size=64)
    ref = _copying_reference(ctx, book)
    usable = ~got.fallback & got.computable
    assert usable.sum() > 150 and got.fallback.sum() + (~got.computable).sum() > 0
    assert (got.applied_reduction_factor > 0).sum() > 20 and (ref["ficc_var"] > 0).sum() > 200
    for name, want in ref.items():
        have = getattr(got, name)
        rows = usable if name.endswith("combined") and not name.startswith("stressed") else slice(None)
        np.testing.assert_allclose(have[rows], want[rows], rtol=1e-9, atol=1e-6, err_msg=name)


def test_batch_margins_do_not_depend_on_chunks_order_or_copies(real: tuple[MarginContext, Book]) -> None:
    ctx, book = real
    whole = compute_margins(ctx, book)
    small = compute_margins(ctx, book, chunk_size=7)
    perm = np.random.default_rng(1).permutation(book.size)
    shuffled = Book(tuple(book.accounts[i] for i in perm), book.universe, book.positions.tocsr()[perm],
                    source="shuffled")
    back = compute_margins(ctx, shuffled)
    copying = compute_margins(ctx, book, copying=True)  # each VaR by var.model_var on a copy
    for f in AccountMargins.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(small, f), getattr(whole, f), err_msg=f)
        np.testing.assert_array_equal(getattr(back, f), getattr(whole, f)[perm], err_msg=f)
        np.testing.assert_array_equal(getattr(copying, f), getattr(whole, f), err_msg=f)
