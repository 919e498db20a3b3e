"""Margin figures of one account on floats: the batch margin functions' formulas for one row.

The live engine (:mod:`xmargin.engine.account`) recomputes one account per trade; the batch
functions of :mod:`xmargin.margin` set up per call what is fixed per context (ranks of the
order statistics, SPAN's per-root scenario losses) and work on ``A x S`` arrays.  The classes
and functions here hold that set-up and apply the same operations, in the same order, to one
account (IEEE doubles either way: the same figures), with the loops of
:mod:`xmargin.engine.kernels` where Numba is installed and NumPy otherwise (the reference the
compiled loops are tested against).  Dollars throughout.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from xmargin.engine import kernels
from xmargin.margin.ficc import concentration_addon
from xmargin.margin.span import SpanParameters
from xmargin.margin.var import tail_rank, var_with_stress

FloatArray = npt.NDArray[np.float64]


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
        #: compiled passes: with the stressed scenarios trailing (else NumPy only)
        self.compiled = compiled and self.trailing and self.n_base > 0 and kernels.enable()
        self._tail = kernels.compiled("tail_of") if self.compiled else None
        self._tail_sum = kernels.compiled("tail_of_sum") if self.compiled else None
        #: ``(n_base, k_base, k_full)`` of the compiled passes; no stressed scenario: the "base"
        #: order statistic is the full one
        self.args = (self.n_base, self.k_base, self.k_full) if self.n_stress else (s, self.k_full, self.k_full)

    def __call__(self, v: FloatArray) -> tuple[float, bool]:
        if self._tail is not None:
            out = self.finish(*self._tail(v, *self.args))
            if out is not None:
                return out
        return self.numpy(v)

    def of_sum(self, a: FloatArray, b: FloatArray) -> tuple[float, bool]:
        """The VaR of ``a + b``."""
        if self._tail_sum is not None:
            out = self.finish(*self._tail_sum(a, b, *self.args))
            if out is not None:
                return out
        return self.numpy(a + b)

    def finish(self, kth_base: float, kth_full: float, status: int) -> tuple[float, bool] | None:
        """``(VaR, stress used)`` from a compiled pass's order statistics; ``None`` if the vector
        held a NaN (then :meth:`numpy`)."""
        if status == kernels.OK:
            b, f = -kth_base, -kth_full
            base = b if b > 0.0 else 0.0
            full = f if f > 0.0 else 0.0
            if not self.n_stress:
                return full, False
            return (base if base >= full else full), full > base
        return (0.0, False) if status == kernels.ZERO else None

    def numpy(self, v: FloatArray) -> tuple[float, bool]:
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


class SpanOfOneResult(NamedTuple):
    """:class:`~xmargin.margin.span.SpanResult` of one account (dollars)."""

    scan_risk: float
    intra_spread_charge: float
    inter_spread_credit: float
    requirement: float


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

    def __call__(self, net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray) -> SpanOfOneResult:
        if self._terms is not None:
            return SpanOfOneResult(*self._terms(net, long, short, delta, self.loss, self.intra_charge, self._pair_p,
                                                self._pair_q, self._pair_rate))
        return self.numpy(net, long, short, delta)

    def numpy(self, net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray) -> SpanOfOneResult:
        """The same figures with NumPy and a Python loop over the spread pairs (the reference the
        compiled loop is tested on)."""
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
        scan = scan_by_root.sum()
        net_req = float(scan + intra - credit)
        return SpanOfOneResult(float(scan), float(intra), credit, net_req if net_req > 0.0 else 0.0)


def concentration_of_one(bucket: FloatArray, threshold: float, cost_bp: float) -> float:
    """:func:`~xmargin.margin.ficc.concentration_addon` (dollars) of one account's net DV01 per
    bucket (dollars per bp); :func:`xmargin.engine.kernels.concentration` compiled."""
    return float(concentration_addon(bucket[None, :], threshold, cost_bp)[0])


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


def axpy(a: FloatArray, q: float, b: FloatArray) -> FloatArray:
    """``a + q * b`` (NumPy; :func:`xmargin.engine.kernels.sum_of` compiled)."""
    return a + q * b


def lowest_sums(ef: FloatArray, rf: FloatArray, ec: FloatArray, rc: FloatArray) -> tuple[float, float, float]:
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
