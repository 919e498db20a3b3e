"""Margin for every account of a book: each house stand-alone, combined, and cross-margined.

Each account is split in two sub-portfolios:

* ``E``: its cross-margin-eligible positions, if the account elected cross-margining;
* ``R``: everything else, margined stand-alone at each clearinghouse (ineligible positions
  in a cross-margining account sit in the member's regular account at the clearinghouse).

On ``E`` the cross-margin reduction of :mod:`xmargin.margin.cross` applies to the VaR part of
FICC's requirement and to CME's stand-alone requirement; FICC's floor top-up and
concentration add-on are computed stand-alone and not reduced (methodology section 3.5).

Accounts are processed in chunks: the account scenario P&L (``positions @ instrument P&L``)
of a chunk is formed, reduced to margin figures and dropped, so memory stays bounded for
any number of accounts.  A small book (:func:`is_small_book`: at most 16 accounts and 4,096
accounts x instruments, e.g. a posted what-if portfolio) takes its positions as a dense array instead: the same
formulas and figures (to rounding: the products' sums may run in another order), without
SciPy's per-matrix overhead, which dominated the margin call of a 2-account book.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.margin.context import MarginContext
from xmargin.margin.cross import reduction_factors
from xmargin.margin.ficc import concentration_addon, ficc_requirement
from xmargin.margin.span import SpanInputs, SpanResult, span_requirement
from xmargin.margin.var import model_var
from xmargin.margin.var_batch import model_var_inplace
from xmargin.portfolio.book import Book
from xmargin.scenarios.historical import ScenarioSet

try:  # SciPy's CSR x dense kernel, used by product_into on preallocated buffers
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - a SciPy without it: q @ pnl
    _csr_matvecs = None

FloatArray = npt.NDArray[np.float64]
Positions = sp.csr_matrix | FloatArray  # accounts x instruments: CSR, or dense for a small book

MAX_THREADS = 4  # compute_margins: chunks margined at once, at most
DENSE_MAX_ACCOUNTS = 16  # compute_margins: books of at most this many accounts ...
DENSE_MAX_CELLS = 4096  # ... and accounts x instruments go dense


def is_small_book(accounts: int, instruments: int) -> bool:
    """Whether :func:`compute_margins` takes a book of this size dense (one call, no chunks)."""
    return accounts <= DENSE_MAX_ACCOUNTS and accounts * instruments <= DENSE_MAX_CELLS


@dataclass
class AccountMargins:
    """Margin figures per account (arrays of length A, dollars unless stated)."""

    ficc_standalone: FloatArray
    cme_standalone: FloatArray
    ficc_combined: FloatArray
    cme_combined: FloatArray
    ficc_reduction_factor: FloatArray
    cme_reduction_factor: FloatArray
    applied_reduction_factor: FloatArray
    ficc_requirement: FloatArray
    cme_requirement: FloatArray
    total_before: FloatArray
    total_after: FloatArray
    savings: FloatArray
    savings_pct: FloatArray
    # components
    ficc_var: FloatArray  # E + R
    ficc_var_eligible: FloatArray  # F_sa in the reduction
    ficc_floor: FloatArray
    ficc_floor_topup: FloatArray
    ficc_concentration: FloatArray
    ficc_stress_used: npt.NDArray[np.bool_]
    span_scan_risk: FloatArray
    span_intra_spread_charge: FloatArray
    span_inter_spread_credit: FloatArray
    cme_var: FloatArray  # stand-alone CME VaR when that model is selected, else 0
    cme_standalone_eligible: FloatArray  # C_sa in the reduction
    stressed_loss_ficc: FloatArray  # worst loss of the FICC positions over the FICC scenarios
    stressed_loss_cme: FloatArray  # worst loss of the CME positions over the FICC scenarios
    stressed_loss_combined: FloatArray  # worst loss of the whole account
    computable: npt.NDArray[np.bool_]  # both houses could margin every position stand-alone
    fallback: npt.NDArray[np.bool_]  # the combined calculation failed: no reduction applied

    @classmethod
    def empty(cls, n: int) -> AccountMargins:
        values = {}
        for f in fields(cls):
            dtype = bool if f.name in ("ficc_stress_used", "computable", "fallback") else np.float64
            values[f.name] = np.zeros(n, dtype=dtype)
        return cls(**values)

    def assign(self, rows: slice | npt.NDArray[np.intp], other: AccountMargins) -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)

    def row(self, i: int) -> dict[str, float | bool]:
        out: dict[str, float | bool] = {}
        for f in fields(self):
            value = getattr(self, f.name)[i]
            out[f.name] = bool(value) if isinstance(value, np.bool_) else float(value)
        return out


def _scale_columns(q: Positions, mask: npt.NDArray[np.bool_]) -> Positions:
    """``q @ diag(mask)``: each stored quantity times its column's 0 or 1 (the same products,
    without building the diagonal matrix: that overhead dominated a small book's margin call)."""
    if isinstance(q, np.ndarray):
        return q * mask
    q = q.tocsr()
    out = sp.csr_matrix((q.data * mask.astype(np.float64)[q.indices], q.indices.copy(), q.indptr.copy()),
                        shape=q.shape)
    out.eliminate_zeros()  # as the product stores them: a masked-out NaN input never meets a 0
    return out


def _span_inputs(q: Positions, context: MarginContext) -> SpanInputs:
    a = context.attributes
    onehot = a.span_onehot
    dv01 = np.nan_to_num(a.dv01)[:, None] * onehot
    if isinstance(q, np.ndarray):
        longs, shorts = np.maximum(q, 0.0), np.maximum(-q, 0.0)
    else:
        longs, shorts = q.maximum(0), (-q).maximum(0)
    return SpanInputs(
        net=np.asarray(q @ onehot),
        long=np.asarray(longs @ onehot),
        short=np.asarray(shorts @ onehot),
        delta=np.asarray(q @ dv01),
    )


def _span_rows(result: SpanResult, rows: slice) -> SpanResult:
    """The figures of some rows (accounts) of a :class:`SpanResult`."""
    return SpanResult(result.scan_risk[rows], result.intra_spread_charge[rows], result.inter_spread_credit[rows],
                      result.requirement[rows], result.scan_by_root[rows],
                      None if result.spot_charge is None else result.spot_charge[rows])


def _unpriced(q: Positions, priced: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Accounts holding an instrument that could not be priced."""
    return np.asarray(abs(q) @ (~priced).astype(np.float64)).ravel() > 0


def _worst_loss(pnl: FloatArray) -> FloatArray:
    return np.maximum(-pnl.min(axis=1), 0.0) if pnl.shape[1] else np.zeros(pnl.shape[0])


def scenario_set_var(pnl: FloatArray, scenarios: ScenarioSet, confidence: float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(VaR, stress_used)`` of account P&L rows over ``scenarios`` with its spec's tools
    (filtered scenarios, unscaled floor, stress weight, buffer: :func:`~xmargin.margin.var.model_var`)."""
    spec = scenarios.spec
    return model_var(pnl, scenarios.is_stress, scenarios.is_floor, confidence,
                     stress_weight=spec.stress_weight, buffer=spec.buffer)


def scenario_set_var_inplace(pnl: FloatArray, scenarios: ScenarioSet, confidence: float, *,
                             active: npt.NDArray[np.intp] | None = None) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """:func:`scenario_set_var`, partially sorting ``pnl``'s rows in place (its contents are
    destroyed: :mod:`xmargin.margin.var_batch`); the same figures.  ``active``: the rows that
    may be non-zero (the others are zero by construction and get 0)."""
    spec = scenarios.spec
    return model_var_inplace(pnl, scenarios.is_stress, scenarios.is_floor, confidence,
                             stress_weight=spec.stress_weight, buffer=spec.buffer, active=active)


def _held(q: Positions) -> npt.NDArray[np.intp]:
    """Rows of ``q`` (no stored zeros) with at least one position."""
    if isinstance(q, np.ndarray):
        return np.flatnonzero((q != 0.0).any(axis=1))
    return np.flatnonzero(np.diff(q.indptr))


class PnLWorkspace:
    """Buffers for the account scenario P&L of up to ``rows`` accounts (dollars; one per
    sub-portfolio and scenario set), allocated once and reused by every chunk of a batch."""

    def __init__(self, rows: int, ficc_scenarios: int, cme_scenarios: int) -> None:
        self.rows = rows
        f = (rows, ficc_scenarios)
        self.ef, self.rf, self.ec_f, self.rc_f = (np.empty(f) for _ in range(4))
        self.comb_f, self.work = np.empty(f), np.empty(f)
        self.e_c = np.empty((rows, cme_scenarios))


def product_into(q: Positions, pnl: FloatArray, out: FloatArray) -> FloatArray:
    """``out[:] = q @ pnl`` (sparse positions times instrument P&L) without allocating: SciPy's
    own CSR kernel (``csr_matvecs``, the one ``q @ pnl`` runs) on ``out``; ``q @ pnl`` where
    that kernel or the layouts are not available.  Dense ``q``: NumPy's ``matmul`` into ``out``."""
    if isinstance(q, np.ndarray):
        np.matmul(q, pnl, out=out)
        return out
    if _csr_matvecs is None or not (out.flags.c_contiguous and pnl.flags.c_contiguous) \
            or q.dtype != np.float64 or pnl.dtype != np.float64 or out.shape != (q.shape[0], pnl.shape[1]):
        out[...] = q @ pnl
        return out
    out.fill(0.0)
    if q.nnz:
        _csr_matvecs(q.shape[0], q.shape[1], pnl.shape[1], q.indptr, q.indices, q.data, pnl.reshape(-1),
                     out.reshape(-1))
    return out


def margins_for_positions(context: MarginContext, q: Positions, xm: npt.NDArray[np.bool_],
                          q_elected: Positions | None = None, *,
                          workspace: PnLWorkspace | None = None, copying: bool = False) -> AccountMargins:
    """Margin figures for the accounts whose positions are the rows of ``q``.

    ``q_elected``: the quantities in the cross-margining accounts (rows of ``q``); default:
    every position of an account whose ``xm`` is set.  ``workspace``: buffers for the account
    scenario P&L, reused from chunk to chunk (:func:`compute_margins`); default: new ones.
    ``copying``: each VaR on a copy of its P&L (:func:`scenario_set_var`) instead of in place
    -- the same figures, slower; the benchmarks' baseline.  ``q`` (and ``q_elected``) may be
    dense arrays (both or neither): the same figures to rounding (:func:`is_small_book`).
    """
    a = context.attributes
    p = context.params
    ficc_pnl = context.ficc_pnl.filled
    cme_pnl = context.cme_pnl.filled
    dense = isinstance(q, np.ndarray)
    if dense and q_elected is not None and not isinstance(q_elected, np.ndarray):
        raise TypeError("q is dense: q_elected must be dense too")
    if q_elected is None:
        q_e = _scale_columns(q, a.eligible) * xm[:, None] if dense else \
            (sp.diags(xm.astype(np.float64)) @ _scale_columns(q, a.eligible)).tocsr()
    else:
        q_e = _scale_columns(q_elected, a.eligible)
    q_r = q - q_e if dense else (q - q_e).tocsr()
    q_ef, q_ec = _scale_columns(q_e, ~a.is_cme), _scale_columns(q_e, a.is_cme)
    q_rf, q_rc = _scale_columns(q_r, ~a.is_cme), _scale_columns(q_r, a.is_cme)
    if not dense:
        for m in (q_e, q_ef, q_ec, q_rf, q_rc):  # no stored zeros; column order fixes each row's sum order
            m.eliminate_zeros()
            m.sort_indices()
    set_f = context.ficc_scenarios
    set_c = context.cme_scenarios
    conf_f = p.ficc.confidence
    n = q.shape[0]
    ws = workspace if workspace is not None and workspace.rows >= n else \
        PnLWorkspace(n, ficc_pnl.shape[1], cme_pnl.shape[1])

    # Account scenario P&L of each sub-portfolio (rows of q times the instrument P&L); the
    # sums and worst losses first, because each VaR below partially sorts its buffer in place.
    # Without an eligible position in the chunk the E side is zero: no product, VaR 0.
    pnl_rf = product_into(q_rf, ficc_pnl, ws.rf[:n])
    pnl_rc_f = product_into(q_rc, ficc_pnl, ws.rc_f[:n])
    work = ws.work[:n]
    has_e = bool(np.count_nonzero(q_e)) if dense else q_e.nnz > 0
    if has_e:
        pnl_ef = product_into(q_ef, ficc_pnl, ws.ef[:n])
        pnl_ec_f = product_into(q_ec, ficc_pnl, ws.ec_f[:n])
        pnl_comb_f = np.add(pnl_ef, pnl_ec_f, out=ws.comb_f[:n])  # E under FICC's scenarios
        np.add(pnl_ef, pnl_rf, out=work)
        loss_ficc = _worst_loss(work)
        work += pnl_ec_f
        work += pnl_rc_f  # ((ef + rf) + ec) + rc: the whole account
        loss_combined = _worst_loss(work)
        np.add(pnl_ec_f, pnl_rc_f, out=work)
        loss_cme = _worst_loss(work)
        pnl_e_c = product_into(q_e, cme_pnl, ws.e_c[:n])  # E under CME's scenarios
    else:
        loss_ficc = _worst_loss(pnl_rf)
        loss_cme = _worst_loss(pnl_rc_f)
        loss_combined = _worst_loss(np.add(pnl_rf, pnl_rc_f, out=work))

    def side_var(pnl: FloatArray, rows: Positions, scenarios: ScenarioSet,
                 confidence: float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        if copying:
            return scenario_set_var(pnl, scenarios, confidence)
        return scenario_set_var_inplace(pnl, scenarios, confidence, active=_held(rows))

    zero, no = np.zeros(n), np.zeros(n, dtype=bool)
    # FICC, stand-alone on each sub-portfolio
    var_e, stress_e = side_var(pnl_ef, q_ef, set_f, conf_f) if has_e else (zero, no)
    var_r, stress_r = side_var(pnl_rf, q_rf, set_f, conf_f)
    floor_e = np.asarray(abs(q_ef) @ a.floor_weight).ravel()
    floor_r = np.asarray(abs(q_rf) @ a.floor_weight).ravel()
    thr, cost = p.ficc.concentration_dv01_threshold, p.ficc.concentration_cost_bp
    conc_e = concentration_addon(np.asarray(q_ef @ a.bucket_dv01), thr, cost)
    conc_r = concentration_addon(np.asarray(q_rf @ a.bucket_dv01), thr, cost)
    ficc_e = ficc_requirement(var_e, floor_e, conc_e)
    ficc_r = ficc_requirement(var_r, floor_r, conc_r)

    # CME, stand-alone on each sub-portfolio
    file_model = context.cme_span_model
    if file_model is None:  # E's rows and R's in one call: each row's figures are its own
        both = span_requirement(_span_inputs(np.vstack((q_ec, q_rc)) if dense else sp.vstack((q_ec, q_rc)).tocsr(),
                                             context), context.span)
        span_e, span_r = _span_rows(both, slice(0, n)), _span_rows(both, slice(n, 2 * n))
    else:
        span_e, span_r = (file_model.requirement(sp.csr_matrix(m) if dense else m) for m in (q_ec, q_rc))
    if p.cme.standalone_model == "var":
        cme_var_e, _ = scenario_set_var_inplace(np.asarray(q_ec @ cme_pnl), set_c, p.cme.var_confidence)
        cme_var_r, _ = scenario_set_var_inplace(np.asarray(q_rc @ cme_pnl), set_c, p.cme.var_confidence)
        cme_e, cme_r = cme_var_e, cme_var_r
    else:
        cme_var_e = cme_var_r = np.zeros(q.shape[0])
        cme_e, cme_r = span_e.requirement, span_r.requirement

    # Combined portfolio of E under each house's VaR model
    f_comb, _ = side_var(pnl_comb_f, q_e, set_f, conf_f) if has_e else (zero, no)
    c_comb, _ = side_var(pnl_e_c, q_e, set_c, p.cme.var_confidence) if has_e else (zero, no)
    # what could not be computed: stand-alone needs FICC prices for FICC positions and a SPAN
    # root (or CME prices under the VaR model) for futures; the combined run needs every
    # eligible position priced under both scenario sets, else no reduction (the fallback)
    priced_f = context.ficc_pnl.priced
    priced_c = context.cme_pnl.priced
    cme_ok = ((a.span_root >= 0) if file_model is None else file_model.covered) if p.cme.standalone_model == "span" \
        else priced_c
    bad = _unpriced(q, np.where(a.is_cme, cme_ok, priced_f))
    fallback = _unpriced(q_e, priced_f & priced_c) & ~bad
    red = reduction_factors(var_e, cme_e, f_comb, c_comb, cap=p.cross.reduction_cap, computable=~(bad | fallback))
    r = red.applied

    ficc_before = ficc_e + ficc_r
    cme_before = cme_e + cme_r
    topup_e = np.maximum(floor_e - var_e, 0.0)
    ficc_after = var_e * (1.0 - r) + topup_e + conc_e + ficc_r
    cme_after = cme_e * (1.0 - r) + cme_r
    before = ficc_before + cme_before
    after = ficc_after + cme_after
    nan = np.where(bad, np.nan, 0.0)  # an unpriced position: no number rather than a wrong one
    return AccountMargins(
        ficc_standalone=ficc_before + nan,
        cme_standalone=cme_before + nan,
        ficc_combined=np.where(bad | fallback, np.nan, f_comb),
        cme_combined=np.where(bad | fallback, np.nan, c_comb),
        ficc_reduction_factor=red.ficc_factor,
        cme_reduction_factor=red.cme_factor,
        applied_reduction_factor=r,
        ficc_requirement=ficc_after + nan,
        cme_requirement=cme_after + nan,
        total_before=before + nan,
        total_after=after + nan,
        savings=before - after + nan,
        savings_pct=np.where(before > 0, (before - after) / np.where(before > 0, before, 1.0) * 100.0, 0.0) + nan,
        ficc_var=var_e + var_r,
        ficc_var_eligible=var_e,
        ficc_floor=floor_e + floor_r,
        ficc_floor_topup=topup_e + np.maximum(floor_r - var_r, 0.0),
        ficc_concentration=conc_e + conc_r,
        ficc_stress_used=stress_e | stress_r,
        span_scan_risk=span_e.scan_risk + span_r.scan_risk,
        span_intra_spread_charge=span_e.intra_spread_charge + span_r.intra_spread_charge,
        span_inter_spread_credit=span_e.inter_spread_credit + span_r.inter_spread_credit,
        cme_var=cme_var_e + cme_var_r,
        cme_standalone_eligible=cme_e,
        stressed_loss_ficc=loss_ficc,
        stressed_loss_cme=loss_cme,
        stressed_loss_combined=loss_combined,
        computable=~bad,
        fallback=fallback,
    )


def compute_margins(
    context: MarginContext,
    book: Book,
    *,
    chunk_size: int = 256,  # P&L buffers of 256 accounts (about 5.6 MB each) stay near the cache
    progress: Callable[[int, int], None] | None = None,
    copying: bool = False,
    threads: int | None = None,
) -> AccountMargins:
    """Margins of every account in ``book`` (whose universe must be the context's);
    ``copying`` as in :func:`margins_for_positions`.

    ``threads``: chunks margined at once (default: the CPUs, at most ``MAX_THREADS``; 1 for
    fewer than 4 chunks).  The heavy steps -- SciPy's sparse products and NumPy's partial
    sorts and sums -- run without the GIL, and each account's figures depend on its own
    positions only, so the figures are the same, bit for bit, whatever the threads."""
    if book.universe.ids != context.universe.ids:
        raise ValueError("the book's universe differs from the context's; build the context from the book")
    n = book.size
    if is_small_book(n, len(book.universe)) and not copying:  # one dense call
        xm = np.array([acc.cross_margin for acc in book.accounts], dtype=bool)
        elected = None if book.elected is None else book.elected.toarray()
        out = margins_for_positions(context, book.positions.toarray(), xm, elected)
        if progress is not None:
            progress(n, n)
        return out
    out = AccountMargins.empty(n)
    xm = np.array([acc.cross_margin for acc in book.accounts], dtype=bool)
    # cross-margining accounts first, so most chunks are all one kind (a chunk without an
    # eligible position skips the E side); each account's figures do not depend on its chunk
    elected_all = None if book.elected is None else book.elected.tocsr()  # converted once, sliced per chunk
    elects = xm if elected_all is None else np.diff(elected_all.indptr) > 0
    order = np.argsort(~elects, kind="stable")
    positions = book.positions.tocsr()
    shape = (min(chunk_size, n), context.ficc_pnl.filled.shape[1], context.cme_pnl.filled.shape[1])
    starts = range(0, n, chunk_size)
    local = threading.local()  # one set of P&L buffers per thread

    def chunk(start: int) -> tuple[npt.NDArray[np.intp], AccountMargins]:
        ws = getattr(local, "ws", None)
        if ws is None:
            ws = local.ws = PnLWorkspace(*shape)
        rows = order[start:min(start + chunk_size, n)]
        elected = None if elected_all is None else elected_all[rows]
        return rows, margins_for_positions(context, positions[rows], xm[rows], elected, workspace=ws, copying=copying)

    k = threads if threads is not None else (min(os.cpu_count() or 1, MAX_THREADS) if len(starts) >= 4 else 1)
    with ThreadPoolExecutor(k) if k > 1 else contextlib.nullcontext() as pool:
        done = 0
        for rows, figures in (pool.map(chunk, starts) if pool is not None else map(chunk, starts)):
            out.assign(rows, figures)
            done += rows.size
            if progress is not None:
                progress(done, n)
    return out
