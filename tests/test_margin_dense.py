"""A small book's dense margin path gives the figures of the sparse (CSR) path (issue 14).

:func:`~xmargin.margin.calculator.compute_margins` takes a book of at most
16 accounts and 4,096 accounts x instruments (a posted what-if portfolio) as one dense array.
The reference is the CSR path of :func:`~xmargin.margin.calculator.margins_for_positions`
on the same positions -- the path every batch takes, itself checked against the copying
formulas in ``test_margin_batch_var.py``.  Every field of :class:`AccountMargins` (the
stand-alone, combined and reduced figures, the reduction factors, every FICC and SPAN
component, the stressed losses and the flags) must agree to 1e-10 relative (the products'
sums may run in another order; nothing else differs), NaN where the reference has NaN.

Books: seeded 1-4 account books over real 2024-06-26 instruments (notes, a bond, a bill,
Treasury and SOFR futures, and TNH25, listed but not priceable on the day: its holders get
no figures and an unheld unpriceable column must not leak into the others), with whole and
partial cross-margin elections; under the built-in SPAN, the CME VaR stand-alone model and a
SPAN parameter file (built from the same calibration) -- the three ways CME's figure is made.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmargin.margin import calculator
from xmargin.margin.calculator import AccountMargins, compute_margins, margins_for_positions
from xmargin.margin.context import MarginContext, build_context
from xmargin.margin.params import CmeParams
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.portfolio.book import Account, Book
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.lookup import parse_instrument

AS_OF = date(2024, 6, 26)
NAMES = ["91282CKQ3", "91282CKP5", "912797LB1", "912810TZ1", "ZNU24", "ZFU24", "ZTU24", "ZBU24", "SR3U24",
         "TNH25"]


@pytest.fixture(scope="module")
def ctx(data_dir: Path) -> MarginContext:
    snapshot = load_snapshot(AS_OF, data_dir=data_dir)
    master = load_master(data_dir)
    uni = InstrumentUniverse.of([parse_instrument(x, as_of=AS_OF, master=master) for x in NAMES])
    return build_context(snapshot, master, uni)


def _books(ctx: MarginContext, count: int, seed: int) -> list[Book]:
    rng = np.random.default_rng(seed)
    n_inst = len(ctx.universe)
    books = []
    for b in range(count):
        n = int(rng.integers(1, 5))
        q = np.zeros((n, n_inst))
        for i in range(n):
            cols = rng.choice(n_inst - 1, size=rng.integers(1, 7), replace=False)
            q[i, cols] = rng.integers(-60, 61, size=len(cols)) * np.where(cols < 4, 1e6, 1.0)
        if b % 5 == 0:
            q[0, -1] = 2.0  # TNH25: no price on the day
        xm = rng.random(n) < 0.75
        accounts = tuple(Account(f"A{i}", "M", "house", bool(xm[i])) for i in range(n))
        elected = None
        if b % 3 == 0:  # a partial election: some eligible positions stay in the regular account
            keep = (rng.random(q.shape) < 0.6) & xm[:, None]
            elected = sp.csr_matrix(np.where(keep, q, 0.0))
        books.append(Book(accounts, ctx.universe, sp.csr_matrix(q), source="test (seeded)", elected=elected))
    return books


def _assert_same(got: AccountMargins, want: AccountMargins, label: str) -> None:
    for f in fields(AccountMargins):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if b.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=f"{label}: {f.name}")
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-6, equal_nan=True, err_msg=f"{label}: {f.name}")


def _sparse(ctx: MarginContext, book: Book) -> AccountMargins:
    xm = np.array([a.cross_margin for a in book.accounts])
    return margins_for_positions(ctx, book.positions.tocsr(), xm, book.elected)


def _check(ctx: MarginContext, books: list[Book], label: str, monkeypatch: pytest.MonkeyPatch) -> list[AccountMargins]:
    dense_calls: list[bool] = []
    real = calculator.margins_for_positions

    def spy(context: MarginContext, q: object, *args: object, **kwargs: object) -> AccountMargins:
        dense_calls.append(isinstance(q, np.ndarray))
        return real(context, q, *args, **kwargs)  # type: ignore[arg-type]

    out = []
    for k, book in enumerate(books):
        want = _sparse(ctx, book)
        monkeypatch.setattr(calculator, "margins_for_positions", spy)
        got = compute_margins(ctx, book)
        monkeypatch.setattr(calculator, "margins_for_positions", real)
        _assert_same(got, want, f"{label} book {k}")
        out.append(want)
    assert dense_calls == [True] * len(books)  # every one of these small books went dense
    return out


def test_dense_path_gives_the_sparse_figures(ctx: MarginContext, monkeypatch: pytest.MonkeyPatch) -> None:
    books = _books(ctx, 40, seed=14)
    refs = _check(ctx, books, "built-in SPAN", monkeypatch)
    # the cases are there: reductions applied, fallbacks, unpriced holders, partial elections
    applied = np.concatenate([r.applied_reduction_factor for r in refs])
    assert (applied > 0).sum() >= 10
    assert sum(int(r.fallback.sum()) for r in refs) >= 3  # TNH25 elected: no FICC price, no reduction
    assert sum(int(np.isfinite(r.total_after).sum()) for r in refs) >= 40
    assert sum(int((r.span_intra_spread_charge > 0).sum() + (r.span_inter_spread_credit > 0).sum())
               for r in refs) >= 5


def test_dense_path_under_cme_var_and_a_span_file(ctx: MarginContext, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from xmargin.formats.cme_margin import attach_cme_file
    from xmargin.formats.pa2 import load_span_file
    from xmargin.formats.span_export import span_from_context
    from xmargin.formats.spn_xml import write_spn_xml

    books = _books(ctx, 12, seed=15)
    var_ctx = replace(ctx, params=replace(ctx.params, cme=CmeParams(standalone_model="var")))
    refs = _check(var_ctx, books, "CME VaR", monkeypatch)
    assert sum(int((r.cme_var > 0).sum()) for r in refs) >= 5
    assert sum(int((~r.computable).sum()) for r in refs) >= 1  # TNH25 has no CME price: no figures
    (tmp_path / "cal.spn").write_text(write_spn_xml(span_from_context(ctx)))
    file_ctx = attach_cme_file(ctx, load_span_file(tmp_path / "cal.spn"))
    refs = _check(file_ctx, books, "SPAN file", monkeypatch)
    assert sum(int((r.span_scan_risk > 0).sum()) for r in refs) >= 5


def test_margins_for_positions_refuses_mixed_forms(ctx: MarginContext) -> None:
    q = np.zeros((1, len(ctx.universe)))
    q[0, 4] = 10.0
    with pytest.raises(TypeError, match="dense"):
        margins_for_positions(ctx, q, np.array([True]), sp.csr_matrix(q))


def test_a_large_book_stays_sparse(ctx: MarginContext, monkeypatch: pytest.MonkeyPatch) -> None:
    n = calculator.DENSE_MAX_ACCOUNTS + 1
    q = np.zeros((n, len(ctx.universe)))
    q[:, 4] = 1.0
    book = Book(tuple(Account(f"A{i}", "M", "house", True) for i in range(n)), ctx.universe, sp.csr_matrix(q),
                source="test")
    seen: list[bool] = []
    real = calculator.margins_for_positions
    monkeypatch.setattr(calculator, "margins_for_positions",
                        lambda c, q, *a, **k: seen.append(isinstance(q, np.ndarray)) or real(c, q, *a, **k))
    compute_margins(book=book, context=ctx)
    assert seen and not any(seen)


def test_threads_give_the_one_thread_figures_bit_for_bit(ctx: MarginContext) -> None:
    """``compute_margins`` margins chunks on several threads: each account's figures are its
    own, so they equal the one-thread run's exactly, whatever the chunking and the threads."""
    rng = np.random.default_rng(7)
    n, n_inst = 300, len(ctx.universe)
    q = np.zeros((n, n_inst))
    for i in range(n):
        cols = rng.choice(n_inst - 1, size=rng.integers(1, 7), replace=False)
        q[i, cols] = rng.integers(-60, 61, size=len(cols)) * np.where(cols < 4, 1e6, 1.0)
    book = Book(tuple(Account(f"A{i}", "M", "house", bool(rng.random() < 0.7)) for i in range(n)), ctx.universe,
                sp.csr_matrix(q), source="test (seeded)")
    one = compute_margins(ctx, book, chunk_size=16, threads=1)
    seen: list[int] = []
    many = compute_margins(ctx, book, chunk_size=16, threads=3, progress=lambda done, total: seen.append(done))
    assert seen[-1] == n and seen == sorted(seen) and len(seen) == -(-n // 16)
    assert (one.applied_reduction_factor > 0).sum() > 50
    for f in fields(AccountMargins):
        np.testing.assert_array_equal(getattr(many, f.name), getattr(one, f.name), err_msg=f.name)
