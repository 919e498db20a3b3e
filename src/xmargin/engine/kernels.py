"""Compiled loops of the live engine's hot path: one pass over a scenario P&L vector.

A trade what-if needs, per scenario P&L vector of ``S`` values (dollars), two order statistics
(:func:`~xmargin.margin.var.var_with_stress` with the stressed scenarios trailing: the
``k_base``-th smallest of the first ``n_base`` values and the ``k_full``-th smallest of all of
them) and, for the figures of a trade, the smallest value of three sums of vectors (the
stressed losses).  :func:`tail_of` and :func:`tail_of_sum` find the two order statistics in one
pass, keeping the ``k_full`` smallest values seen so far in a sorted buffer (a value enters it
only when it is below the buffer's largest: a few hundred insertions at 2,500+ scenarios); the
``k_base``-th smallest of the base scenarios is read off the buffer when the pass reaches the
stressed ones.  Order statistics are values, not positions: any algorithm gives the same
numbers as ``np.partition``, so the VaRs are the same figures.  :func:`sum_of` adds ``a + q x b``
in the order NumPy does (two roundings, no fused multiply-add: Numba compiles without
fast-math), so a vector moved here equals the NumPy expression bit for bit.

A vector holding a NaN is reported back (status 2) and the caller takes the NumPy path, whose
NaN ordering (last) is then the rule.  Compiled once with explicit signatures and cached on
disk (``cache=True``: a later process loads the machine code in milliseconds); :func:`enable`
returns ``False`` where Numba is missing and the callers keep their NumPy code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ZERO, OK, HAS_NAN = 0, 1, 2  # status of a pass: every value zero / figures valid / a NaN was seen

_COMPILED: dict[str, Any] = {}


def _push(buf: FloatArray, n: int, x: float) -> int:
    """Insert ``x`` into ``buf[:n]`` (sorted ascending, at most ``len(buf)`` values kept: the
    smallest); returns the new count."""
    k = len(buf)
    if n == k:
        if not x < buf[k - 1]:
            return n
        i = k - 1
    else:
        i = n
        n += 1
    while i > 0 and buf[i - 1] > x:
        buf[i] = buf[i - 1]
        i -= 1
    buf[i] = x
    return n


def _tail_of(v: FloatArray, n_base: int, k_base: int, k_full: int) -> tuple[float, float, int]:
    """``(k_base-th smallest of v[:n_base], k_full-th smallest of v, status)``."""
    buf = np.empty(k_full)
    n = 0
    nonzero = False
    kth_base = 0.0
    for i in range(v.shape[0]):
        if i == n_base:
            kth_base = buf[k_base - 1]
        x = v[i]
        if x != 0.0:
            if x != x:
                return 0.0, 0.0, HAS_NAN
            nonzero = True
        n = _push(buf, n, x)
    if n_base == v.shape[0]:
        kth_base = buf[k_base - 1]
    return kth_base, buf[k_full - 1], OK if nonzero else ZERO


def _tail_of_sum(a: FloatArray, b: FloatArray, n_base: int, k_base: int, k_full: int) -> tuple[float, float, int]:
    """:func:`_tail_of` of ``a + b`` (never stored)."""
    buf = np.empty(k_full)
    n = 0
    nonzero = False
    kth_base = 0.0
    for i in range(a.shape[0]):
        if i == n_base:
            kth_base = buf[k_base - 1]
        x = a[i] + b[i]
        if x != 0.0:
            if x != x:
                return 0.0, 0.0, HAS_NAN
            nonzero = True
        n = _push(buf, n, x)
    if n_base == a.shape[0]:
        kth_base = buf[k_base - 1]
    return kth_base, buf[k_full - 1], OK if nonzero else ZERO


def _sum_of(a: FloatArray, q: float, b: FloatArray) -> FloatArray:
    """``a + q * b`` (a new vector)."""
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = a[i] + q * b[i]
    return out


def _lowest_sums(ef: FloatArray, rf: FloatArray, ec: FloatArray, rc: FloatArray) -> tuple[float, float, float]:
    """The smallest value of ``ef + rf``, ``ec + rc`` and ``((ef + rf) + ec) + rc`` (NaN where a
    value is NaN, as ``ndarray.min``)."""
    lo_f = lo_c = lo_all = np.inf
    nan_f = nan_c = nan_all = False
    for i in range(ef.shape[0]):
        f = ef[i] + rf[i]
        c = ec[i] + rc[i]
        t = (f + ec[i]) + rc[i]
        if f < lo_f:
            lo_f = f
        elif f != f:
            nan_f = True
        if c < lo_c:
            lo_c = c
        elif c != c:
            nan_c = True
        if t < lo_all:
            lo_all = t
        elif t != t:
            nan_all = True
    return (np.nan if nan_f else lo_f), (np.nan if nan_c else lo_c), (np.nan if nan_all else lo_all)


def _maximum(a: float, b: float) -> float:
    """``np.maximum`` of two floats: ``b`` on a tie (so ``maximum(-0.0, 0.0)`` is ``0.0``), NaN wins."""
    return a if a > b or a != a else b


def _minimum(a: float, b: float) -> float:
    """``np.minimum`` of two floats: ``b`` on a tie, NaN wins."""
    return a if a < b or a != a else b


def _span_terms(net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray, loss: FloatArray,
                intra_charge: FloatArray, pair_p: IntArray, pair_q: IntArray,
                pair_rate: FloatArray) -> tuple[FloatArray, FloatArray, float]:
    """SPAN of one account before its sums over roots: ``(scan risk per root, intra-commodity
    charge per root, inter-commodity credit)`` (dollars), the operations of
    :class:`xmargin.engine.account.SpanOfOne` in the same order (the sums over roots stay NumPy's)."""
    n_roots, n_scen = loss.shape
    scan = np.empty(n_roots)
    intra = np.empty(n_roots)
    any_long = any_short = False
    for p in range(n_roots):
        m = net[p] * loss[p, 0]
        for t in range(1, n_scen):
            x = net[p] * loss[p, t]
            if x > m or x != x:  # the largest, a NaN propagating (the sign of a zero does not
                m = x  # matter: the maximum with 0.0 below gives +0.0 either way)
        scan[p] = _maximum(m, 0.0)
        intra[p] = _minimum(long[p], short[p]) * intra_charge[p]
        any_long |= delta[p] > 0.0
        any_short |= delta[p] < 0.0
    credit = 0.0
    if any_long and any_short:  # else no pair has legs of opposite signs: no credit
        remaining = np.abs(delta)
        wfpr = np.empty(n_roots)
        for p in range(n_roots):
            wfpr[p] = scan[p] / remaining[p] if remaining[p] > 0 else 0.0
        for i in range(pair_p.shape[0]):
            p, q = pair_p[i], pair_q[i]
            if remaining[p] > 0 and remaining[q] > 0 and (delta[p] > 0.0) != (delta[q] > 0.0):
                x = remaining[q] if remaining[q] < remaining[p] else remaining[p]  # min(), as Python's
                credit += pair_rate[i] * x * (wfpr[p] + wfpr[q])
                remaining[p] -= x
                remaining[q] -= x
    return scan, intra, credit


def enable() -> bool:
    """Compile the loops (or load them from the on-disk cache); ``False`` where Numba is not
    installed (the callers keep their NumPy code)."""
    if _COMPILED:
        return True
    try:
        from numba import njit, types
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return False
    global _push, _maximum, _minimum
    # inputs typed read-only: they accept writeable arrays too, and the context's matrices may be
    # read-only memory maps (the context disk cache)
    vec, out, i8, f8 = types.Array(types.float64, 1, "C", readonly=True), types.float64[::1], types.int64, types.float64
    mat, ints = types.Array(f8, 2, "C", readonly=True), types.Array(i8, 1, "C", readonly=True)
    tail = types.Tuple((f8, f8, i8))
    signatures = {
        "tail_of": (tail(vec, i8, i8, i8), _tail_of),
        "tail_of_sum": (tail(vec, vec, i8, i8, i8), _tail_of_sum),
        "sum_of": (out(vec, f8, vec), _sum_of),
        "lowest_sums": (types.UniTuple(f8, 3)(vec, vec, vec, vec), _lowest_sums),
        "span_terms": (types.Tuple((out, out, f8))(vec, vec, vec, vec, mat, vec, ints, ints, vec), _span_terms),
    }
    _push = njit(i8(out, i8, f8), cache=True, inline="always")(_push)
    _maximum = njit(f8(f8, f8), cache=True, inline="always")(_maximum)
    _minimum = njit(f8(f8, f8), cache=True, inline="always")(_minimum)
    for name, (sig, fn) in signatures.items():
        _COMPILED[name] = njit(sig, cache=True, error_model="numpy", boundscheck=False)(fn)
    return True


def compiled(name: str) -> Any:
    """The compiled loop ``name`` (:func:`enable` first)."""
    return _COMPILED[name]
