"""Per-account margin arithmetic of the live engine: the four sub-portfolios and their figures.

An account is split like :mod:`xmargin.margin.calculator` into four sub-portfolios: E-FICC,
E-CME (eligible positions of a cross-margining account) and R-FICC, R-CME (everything else).
Per sub-portfolio (:class:`Side`) it keeps

* the scenario P&L vector under the FICC scenarios and (E-FICC, E-CME, R-CME) under the CME
  scenarios (dollars);
* FICC: the floor sum and the net DV01 per maturity bucket (dollars per bp);
* CME: the SPAN inputs per root (net, long and short contracts, net DV01);
* the number of positions and of positions the models cannot price;

and the margin figures derived from each (:class:`Risk`: VaR, floor, concentration add-on,
SPAN).  :class:`Arithmetic` holds the context's per-instrument rows in the layout the updates
need and computes: a sub-portfolio moved by one position change (``quantity x`` one row of the
P&L matrices), its figures with the same margin functions
:func:`~xmargin.margin.calculator.margins_for_positions` uses (on 1-row arrays), the combined
VaRs of E and the account's figures reassembled.  A sub-portfolio whose last position closes is
reset to exact zeros, so rounding left by the incremental sums can never make an empty book
look like a position (the reduction tests ``> 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.engine import kernels
from xmargin.margin.calculator import AccountMargins
from xmargin.margin.context import MarginContext
from xmargin.margin.ficc import concentration_addon
from xmargin.margin.span import SpanParameters, SpanResult
from xmargin.margin.var import tail_rank, var_with_stress
from xmargin.portfolio.book import Account

FloatArray = npt.NDArray[np.float64]
Row = dict[str, Any]  # one account's figures: the fields of AccountMargins as floats / bools

EF, EC, RF, RC = 0, 1, 2, 3  # sub-portfolios
SIDE_NAMES = ("E-FICC", "E-CME", "R-FICC", "R-CME")
HEADLINE = ("ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined", "ficc_reduction_factor",
            "cme_reduction_factor", "applied_reduction_factor", "ficc_requirement", "cme_requirement",
            "total_before", "total_after", "savings", "savings_pct")
MARGIN_FIELDS = tuple(f.name for f in fields(AccountMargins))


class Side:
    """One sub-portfolio's running sums (see the module docstring)."""

    __slots__ = ("pnl_f", "pnl_c", "count", "floor", "bucket", "net", "long", "short", "delta", "n_bad", "n_fb")

    def __init__(self, s_f: int, s_c: int, n_buckets: int, n_roots: int) -> None:
        self.pnl_f = np.zeros(s_f)
        self.pnl_c = np.zeros(s_c)
        self.count = 0
        self.floor = 0.0
        self.bucket = np.zeros(n_buckets)
        self.net = np.zeros(n_roots)
        self.long = np.zeros(n_roots)
        self.short = np.zeros(n_roots)
        self.delta = np.zeros(n_roots)
        self.n_bad = 0
        self.n_fb = 0

    def empty_like(self) -> Side:
        return Side(len(self.pnl_f), len(self.pnl_c), len(self.bucket), len(self.net))


@dataclass
class Risk:
    """Margin figures of one sub-portfolio (dollars; SPAN's as 1-element arrays)."""

    var: float
    stress: bool
    floor: float
    conc: float
    span: SpanResult | None
    cme_var: float


@dataclass
class AccountState:
    account: Account
    positions: dict[int, float]
    sides: list[Side]
    risks: list[Risk]
    comb: tuple[FloatArray, FloatArray]  # F_comb, C_comb of E
    margins: Row
    version: int = 0



class Arithmetic:
    """The context's per-instrument rows laid out for the updates, and the update formulas."""

    def __init__(self, context: MarginContext) -> None:
        self._ctx = context
        a = context.attributes
        p = context.params
        self._F = np.ascontiguousarray(context.ficc_pnl.filled)
        self._C = np.ascontiguousarray(context.cme_pnl.filled)
        self._is_cme = a.is_cme.copy()
        self._eligible = a.eligible.copy()
        self._floor_w = a.floor_weight.astype(np.float64)
        self._bucket = a.bucket_dv01
        self._onehot = a.span_onehot
        self._dv01_root = np.nan_to_num(a.dv01)[:, None] * a.span_onehot
        priced_f, priced_c = context.ficc_pnl.priced, context.cme_pnl.priced
        cme_ok = (a.span_root >= 0) if p.cme.standalone_model == "span" else priced_c
        self._bad = ~np.where(a.is_cme, cme_ok, priced_f)
        self._fb = ~(priced_f & priced_c)
        self._stress_f = context.ficc_scenarios.is_stress
        self._stress_c = context.cme_scenarios.is_stress
        self._var_f = VarOfOne(self._stress_f, p.ficc.confidence)
        self._var_c = VarOfOne(self._stress_c, p.cme.var_confidence)
        self._span = SpanOfOne(context.span)
        fast = kernels.enable()
        self._axpy = kernels.compiled("sum_of") if fast else _axpy
        self._lowest_sums = kernels.compiled("lowest_sums") if fast else _lowest_sums
        self.template = Side(self._F.shape[1], self._C.shape[1], self._bucket.shape[1], self._onehot.shape[1])

    def side_of(self, j: int, xm: bool) -> int:
        e = xm and bool(self._eligible[j])
        c = bool(self._is_cme[j])
        return (EC if c else EF) if e else (RC if c else RF)

    def moved(self, side: Side, k: int, j: int, old: float, new: float) -> Side:
        """``side`` after the position in instrument ``j`` goes from ``old`` to ``new``."""
        out = Side.__new__(Side)
        out.count = side.count + (new != 0.0) - (old != 0.0)
        bad, fb = bool(self._bad[j]), bool(self._fb[j])
        out.n_bad = side.n_bad + (((new != 0.0) - (old != 0.0)) if bad else 0)
        out.n_fb = side.n_fb + (((new != 0.0) - (old != 0.0)) if fb else 0)
        if out.count == 0:  # empty: exact zeros, no rounding residue
            z = self.template
            out.pnl_f, out.pnl_c, out.floor, out.bucket = z.pnl_f, z.pnl_c, 0.0, z.bucket
            out.net, out.long, out.short, out.delta = z.net, z.long, z.short, z.delta
            out.n_bad = out.n_fb = 0
            return out
        dq = new - old
        out.pnl_f = self._axpy(side.pnl_f, dq, self._F[j])
        out.pnl_c = self._axpy(side.pnl_c, dq, self._C[j]) if k != RF else side.pnl_c
        if k in (EF, RF):
            out.floor = side.floor + (abs(new) - abs(old)) * float(self._floor_w[j])
            out.bucket = side.bucket + dq * self._bucket[j]
            out.net, out.long, out.short, out.delta = side.net, side.long, side.short, side.delta
        else:
            out.floor, out.bucket = side.floor, side.bucket
            oh = self._onehot[j]
            out.net = side.net + dq * oh
            out.long = side.long + (max(new, 0.0) - max(old, 0.0)) * oh
            out.short = side.short + (max(-new, 0.0) - max(-old, 0.0)) * oh
            out.delta = side.delta + dq * self._dv01_root[j]
        return out

    def risk(self, side: Side, k: int) -> Risk:
        p = self._ctx.params
        if k in (EF, RF):
            var, stress = self._var_f(side.pnl_f)
            conc = concentration_addon(side.bucket[None, :], p.ficc.concentration_dv01_threshold,
                                       p.ficc.concentration_cost_bp)
            return Risk(var, stress, side.floor, float(conc[0]), None, 0.0)
        span = self._span(side.net, side.long, side.short, side.delta)
        cme_var = self._var_c(side.pnl_c)[0] if p.cme.standalone_model == "var" else 0.0
        return Risk(0.0, False, 0.0, 0.0, span, cme_var)

    def combined(self, sides: list[Side]) -> tuple[float, float]:
        """The VaRs of E under the FICC and under the CME scenarios (dollars)."""
        return (self._var_f.of_sum(sides[EF].pnl_f, sides[EC].pnl_f)[0],
                self._var_c.of_sum(sides[EF].pnl_c, sides[EC].pnl_c)[0])

    def assemble(self, sides: list[Side], risks: list[Risk], comb: tuple[float, float],
                 headline_only: bool = False) -> Row:
        """The account's figures, with the formulas of ``margins_for_positions`` (same operations
        in the same order, on scalars: IEEE doubles either way).  ``headline_only``: the
        :data:`HEADLINE` fields alone (what a what-if reports), without the stressed losses
        (three passes over the scenario vectors) and the component breakdown."""
        p = self._ctx.params
        ef, ec, rf, rc = risks
        var_e, var_r = ef.var, rf.var
        floor_e, floor_r = ef.floor, rf.floor
        conc_e, conc_r = ef.conc, rf.conc
        ficc_e = ficc_requirement_of_one(var_e, floor_e, conc_e)
        ficc_r = ficc_requirement_of_one(var_r, floor_r, conc_r)
        span_e, span_r = ec.span, rc.span
        assert span_e is not None and span_r is not None
        if p.cme.standalone_model == "var":
            cme_e, cme_r = cme_var_e, cme_var_r = ec.cme_var, rc.cme_var
        else:
            cme_e, cme_r = float(span_e.requirement[0]), float(span_r.requirement[0])
            cme_var_e = cme_var_r = 0.0
        f_comb, c_comb = comb
        bad = sum(s.n_bad for s in sides) > 0
        fallback = (sides[EF].n_fb + sides[EC].n_fb > 0) and not bad
        r_f, r_c, r = reduction_of_one(var_e, cme_e, f_comb, c_comb, p.cross.reduction_cap, not (bad or fallback))
        ficc_before = ficc_e + ficc_r
        cme_before = cme_e + cme_r
        topup_e = max(floor_e - var_e, 0.0)
        ficc_after = var_e * (1.0 - r) + topup_e + conc_e + ficc_r
        cme_after = cme_e * (1.0 - r) + cme_r
        before = ficc_before + cme_before
        after = ficc_after + cme_after
        nan = np.nan if bad else 0.0
        pnl_ef, pnl_ec_f, pnl_rf, pnl_rc_f = sides[EF].pnl_f, sides[EC].pnl_f, sides[RF].pnl_f, sides[RC].pnl_f
        row = {
            "ficc_standalone": ficc_before + nan,
            "cme_standalone": cme_before + nan,
            "ficc_combined": np.nan if bad or fallback else f_comb,
            "cme_combined": np.nan if bad or fallback else c_comb,
            "ficc_reduction_factor": r_f,
            "cme_reduction_factor": r_c,
            "applied_reduction_factor": r,
            "ficc_requirement": ficc_after + nan,
            "cme_requirement": cme_after + nan,
            "total_before": before + nan,
            "total_after": after + nan,
            "savings": before - after + nan,
            "savings_pct": ((before - after) / before * 100.0 if before > 0 else 0.0) + nan,
        }
        if headline_only:
            return row
        lo_f, lo_c, lo_all = self._lowest_sums(pnl_ef, pnl_rf, pnl_ec_f, pnl_rc_f)
        row.update({
            "ficc_var": var_e + var_r,
            "ficc_var_eligible": var_e,
            "ficc_floor": floor_e + floor_r,
            "ficc_floor_topup": topup_e + max(floor_r - var_r, 0.0),
            "ficc_concentration": conc_e + conc_r,
            "ficc_stress_used": ef.stress or rf.stress,
            "span_scan_risk": float(span_e.scan_risk[0]) + float(span_r.scan_risk[0]),
            "span_intra_spread_charge": float(span_e.intra_spread_charge[0]) + float(span_r.intra_spread_charge[0]),
            "span_inter_spread_credit": float(span_e.inter_spread_credit[0]) + float(span_r.inter_spread_credit[0]),
            "cme_var": cme_var_e + cme_var_r,
            "cme_standalone_eligible": cme_e,
            "stressed_loss_ficc": worst(lo_f),  # of ef + rf
            "stressed_loss_cme": worst(lo_c),  # of ec + rc
            "stressed_loss_combined": worst(lo_all),  # of ((ef + rf) + ec) + rc, as before
            "computable": not bad,
            "fallback": fallback,
        })
        return row

    def fresh_state(self, account: Account, positions: dict[int, float]) -> AccountState:
        """State of an account built from its positions (no incremental history)."""
        sides = [self.template.empty_like() for _ in range(4)]
        groups: list[list[tuple[int, float]]] = [[], [], [], []]
        for j, q in sorted(positions.items()):
            if q != 0.0:
                groups[self.side_of(j, account.cross_margin)].append((j, q))
        for k, items in enumerate(groups):
            if not items:
                continue
            idx = np.array([j for j, _ in items], dtype=np.int64)
            qty = np.array([q for _, q in items])
            s = sides[k]
            s.count = len(items)
            s.n_bad = int(self._bad[idx].sum())
            s.n_fb = int(self._fb[idx].sum())
            s.pnl_f = qty @ self._F[idx]
            if k != RF:
                s.pnl_c = qty @ self._C[idx]
            if k in (EF, RF):
                s.floor = float(np.abs(qty) @ self._floor_w[idx])
                s.bucket = qty @ self._bucket[idx]
            else:
                s.net = qty @ self._onehot[idx]
                s.long = np.maximum(qty, 0.0) @ self._onehot[idx]
                s.short = np.maximum(-qty, 0.0) @ self._onehot[idx]
                s.delta = qty @ self._dv01_root[idx]
        risks = [self.risk(s, k) for k, s in enumerate(sides)]
        comb = self.combined(sides)
        state = AccountState(account, {j: q for j, q in positions.items() if q != 0.0}, sides, risks, comb,
                              self.assemble(sides, risks, comb))
        return state

class VarOfOne:
    """:func:`~xmargin.margin.var.var_with_stress` of one P&L vector (dollars): ``(VaR, stress
    used)``, without the batch function's per-call set-up.  With the stressed scenarios trailing
    (as :mod:`xmargin.scenarios` builds them) both order statistics come from one compiled pass
    (:func:`xmargin.engine.kernels.tail_of`), else (or where Numba is missing, or a value is NaN)
    from NumPy's partial sorts: the same order statistics (exact values, whatever the algorithm),
    so the same figures."""

    def __init__(self, is_stress: npt.NDArray[np.bool_], confidence: float, compiled: bool = True) -> None:
        self.is_stress, self.confidence = is_stress, confidence
        s = len(is_stress)
        self.n_stress = int(is_stress.sum())
        self.n_base = s - self.n_stress
        self.trailing = self.n_stress == 0 or bool(is_stress[self.n_base:].all())
        self.k_full = tail_rank(s, confidence)
        self.k_base = tail_rank(self.n_base, confidence) if self.n_base else 0
        self.m = min(self.k_full, self.n_base)
        self.kth = sorted({self.k_base - 1, self.m - 1})
        fast = compiled and self.trailing and self.n_base > 0 and kernels.enable()
        self._tail = kernels.compiled("tail_of") if fast else None
        self._tail_sum = kernels.compiled("tail_of_sum") if fast else None
        # no stressed scenario: the "base" order statistic is the full one, and never exceeds it
        self._args = (self.n_base, self.k_base, self.k_full) if self.n_stress else (s, self.k_full, self.k_full)

    def __call__(self, v: FloatArray) -> tuple[float, bool]:
        if self._tail is not None:
            kth_base, kth_full, status = self._tail(v, *self._args)
            if status != kernels.HAS_NAN:
                return self._finish(kth_base, kth_full, status)
        return self._numpy(v)

    def of_sum(self, a: FloatArray, b: FloatArray) -> tuple[float, bool]:
        """The VaR of ``a + b``."""
        if self._tail_sum is not None:
            kth_base, kth_full, status = self._tail_sum(a, b, *self._args)
            if status != kernels.HAS_NAN:
                return self._finish(kth_base, kth_full, status)
        return self._numpy(a + b)

    def _finish(self, kth_base: float, kth_full: float, status: int) -> tuple[float, bool]:
        if status == kernels.ZERO:
            return 0.0, False
        b, f = -kth_base, -kth_full
        base = b if b > 0.0 else 0.0
        full = f if f > 0.0 else 0.0
        if not self.n_stress:
            return full, False
        return (base if base >= full else full), full > base

    def _numpy(self, v: FloatArray) -> tuple[float, bool]:
        """The same figures with NumPy's partial sorts (the reference the compiled pass is tested on)."""
        if not v.any():
            return 0.0, False
        if not self.trailing or self.n_base == 0:
            var, used = var_with_stress(v[None, :], self.is_stress, self.confidence)
            return float(var[0]), bool(used[0])
        # np.partition(a, k) is a.copy() then a.partition(k): the same, without its wrapper
        if self.n_stress == 0:
            every = v.copy()
            every.partition(self.k_full - 1)
            x = -float(every[self.k_full - 1])
            return (x if x > 0.0 else 0.0), False
        head = v[: self.n_base].copy()
        head.partition(self.kth)
        b = -float(head[self.k_base - 1])
        base = b if b > 0.0 else 0.0
        pool = np.concatenate([head[: self.m], v[self.n_base:]])
        pool.partition(self.k_full - 1)
        f = -float(pool[self.k_full - 1])
        full = f if f > 0.0 else 0.0
        return (base if base >= full else full), full > base


class SpanOfOne:
    """:func:`~xmargin.margin.span.span_requirement` of one account, its per-root scenario losses
    computed once: the same operations on the account's row (sums over roots as NumPy sums
    them), so the same figures; the per-root terms and the spread credits in one compiled loop
    (:func:`xmargin.engine.kernels.span_terms`) where Numba is installed."""

    def __init__(self, params: SpanParameters, compiled: bool = True) -> None:
        moves, weights = params.scenario_moves()
        self.params = params
        self.loss = np.ascontiguousarray(-(moves * weights)[None, :] * params.scan_range[:, None])  # P x 16, per long contract
        self.intra_charge = np.ascontiguousarray(params.intra_charge, dtype=np.float64)
        self.pairs = params.inter_pairs
        self._pair_p = np.array([p for p, _, _ in self.pairs], dtype=np.int64)
        self._pair_q = np.array([q for _, q, _ in self.pairs], dtype=np.int64)
        self._pair_rate = np.array([rate for _, _, rate in self.pairs], dtype=np.float64)
        self._terms = kernels.compiled("span_terms") if compiled and kernels.enable() else None

    def __call__(self, net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray) -> SpanResult:
        if self._terms is not None:
            scan_by_root, intra_by_root, credit = self._terms(net, long, short, delta, self.loss, self.intra_charge,
                                                              self._pair_p, self._pair_q, self._pair_rate)
            intra = intra_by_root.sum()
        else:
            scan_by_root, intra, credit = self._numpy(net, long, short, delta)
        scan = scan_by_root.sum()
        net_req = float(scan + intra - credit)
        total = net_req if net_req > 0.0 else 0.0
        return SpanResult(np.array([float(scan)]), np.array([float(intra)]), np.array([credit]), np.array([total]),
                          scan_by_root[None, :])

    def _numpy(self, net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray) -> tuple[Any, ...]:
        """``(scan risk per root, intra-commodity charge, inter-commodity credit)`` with NumPy
        and a Python loop over the spread pairs (the reference the compiled loop is tested on)."""
        scan_by_root = np.maximum((net[:, None] * self.loss).max(axis=1), 0.0)
        intra = (np.minimum(long, short) * self.intra_charge).sum()
        remaining = np.abs(delta).tolist()
        sign = np.sign(delta).tolist()
        credit = 0.0
        if 1.0 in sign and -1.0 in sign:  # else no pair has legs of opposite signs: no credit
            scan_list = scan_by_root.tolist()
            wfpr = [sc / r if r > 0 else 0.0 for sc, r in zip(scan_list, remaining, strict=True)]
            for p, q, rate in self.pairs:
                if remaining[p] > 0 and remaining[q] > 0 and sign[p] * sign[q] < 0:
                    x = min(remaining[p], remaining[q])
                    credit += rate * x * (wfpr[p] + wfpr[q])
                    remaining[p] -= x
                    remaining[q] -= x
        return scan_by_root, intra, credit


def reduction_of_one(f_sa: float, c_sa: float, f_comb: float, c_comb: float, cap: float,
                     computable: bool) -> tuple[float, float, float]:
    """:func:`~xmargin.margin.cross.reduction_factors` of one account on floats (same formulas):
    ``(FICC factor, CME factor, applied)``."""
    ok = f_sa > 0 and c_sa > 0 and math.isfinite(f_comb) and math.isfinite(c_comb) and computable
    if not ok:
        return 0.0, 0.0, min(0.0, cap)
    total = f_sa + c_sa
    safe = total if total > 0 else 1.0
    a, b = 1.0 - f_comb / safe, 1.0 - c_comb / safe
    r_f, r_c = (a if a > 0.0 else 0.0), (b if b > 0.0 else 0.0)
    return r_f, r_c, min(min(r_f, r_c), cap)


def _axpy(a: FloatArray, q: float, b: FloatArray) -> FloatArray:
    """``a + q * b`` (NumPy; :func:`xmargin.engine.kernels.sum_of` compiled)."""
    return a + q * b


def _lowest_sums(ef: FloatArray, rf: FloatArray, ec: FloatArray, rc: FloatArray) -> tuple[float, float, float]:
    """The lowest value of ``ef + rf``, ``ec + rc``, ``((ef + rf) + ec) + rc`` (NumPy;
    :func:`xmargin.engine.kernels.lowest_sums` compiled)."""
    f = ef + rf
    return float(f.min()), float((ec + rc).min()), float((f + ec + rc).min())


def ficc_requirement_of_one(var: float, floor: float, concentration: float) -> float:
    """:func:`~xmargin.margin.ficc.ficc_requirement` on floats: ``max(VaR, floor) + concentration``
    (a NaN wins the maximum, as ``np.maximum``)."""
    return (var if var >= floor or var != var else floor) + concentration


def worst(lowest: float) -> float:
    """Stressed loss (dollars, >= 0) from the lowest scenario P&L (NaN stays NaN)."""
    return max(-lowest, 0.0)
