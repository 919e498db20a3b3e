"""Compiled loops of the live engine's hot path (:mod:`xmargin.engine.account`, :mod:`xmargin.engine.figures`).

A trade moves one sub-portfolio: its scenario P&L vectors (``S`` values, dollars) move by
``dq x`` one row of the P&L matrices, and its VaR and E's combined VaRs need two order
statistics per vector (:func:`~xmargin.margin.var.var_with_stress` with the stressed scenarios
trailing: the ``k_base``-th smallest of the first ``n_base`` values and the ``k_full``-th
smallest of all).  :func:`_moved_tails` does the move and those order statistics in one call;
:func:`_tails` finds them from a threshold sampled from every 8th value and a sorted buffer of
the few values at or below it (every value through the buffer when the sample falls short).
Order statistics are values, not positions: any algorithm gives the numbers ``np.partition``
gives, so the VaRs are the same figures.  Vectors are moved as NumPy computes ``a + q * b``
(two roundings, no fused multiply-add: Numba compiles without fast-math); SPAN of one account
(:func:`_span_terms`) and the concentration add-on (:func:`_concentration`) repeat the NumPy
operations in the same order, their sums over roots and buckets with NumPy's pairwise
summation (:func:`_sum`, tested against ``np.sum``), so every figure is equal bit for bit to the
NumPy code's (``tests/test_live_kernels.py``).

A vector holding a NaN is reported back (:data:`HAS_NAN`) and the caller takes the NumPy path,
whose NaN ordering is then the rule.  Compiled with explicit signatures and cached on disk
(``cache=True``: about 7 s to compile once on a loaded 2-core machine; a later process imports
Numba and loads the machine code in about 0.7 s); :func:`enable` returns ``False`` where Numba
is missing or inside :func:`disabled`, and the callers keep their NumPy code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ZERO, OK, HAS_NAN = 0, 1, 2  # status of a pass: every value zero / figures valid / a NaN was seen

_COMPILED: dict[str, Any] = {}
_OFF = False  # set inside disabled()
_STEP = 8  # the threshold of an order statistic is taken from every _STEP-th value


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


def _smallest(v: FloatArray, lo: int, hi: int, step: int, buf: FloatArray, n: int) -> int:
    """:func:`_push` every ``step``-th value of ``v[lo:hi]`` into ``buf``; returns the new count."""
    for i in range(lo, hi, step):
        n = _push(buf, n, v[i])
    return n


def _tails(v: FloatArray, n_base: int, k_base: int, k_full: int) -> tuple[float, float, int]:
    """``(k_base-th smallest of v[:n_base], k_full-th smallest of v, status)``.

    Two passes: a threshold ``t``, the ``(k_full / 8 + 5)``-th smallest of every 8th base value
    (so about ``k_full + 40`` values lie at or below it), then the values ``<= t`` (the
    candidates) in a sorted buffer of ``k_full``.  If at least ``k_full`` base values are
    candidates, every value left out is larger than every candidate, so both order statistics
    are among the candidates; otherwise (rare: a sample far from the tail) every value goes
    through the buffer."""
    s = v.shape[0]
    nonzero = nan = False
    for i in range(s):
        x = v[i]
        nonzero |= x != 0.0
        nan |= x != x
    if nan:
        return 0.0, 0.0, HAS_NAN
    if not nonzero:
        return 0.0, 0.0, ZERO
    buf = np.empty(k_full)
    r = min(k_full // _STEP + 5, k_full)
    n_sample = _smallest(v, 0, n_base, _STEP, buf[:r], 0)
    if n_sample == r:
        t = buf[r - 1]
        cand = np.empty(s)
        m = 0
        for i in range(n_base):
            if v[i] <= t:
                cand[m] = v[i]
                m += 1
        m_base = m
        if m_base >= k_full:
            for i in range(n_base, s):
                if v[i] <= t:
                    cand[m] = v[i]
                    m += 1
            n = _smallest(cand, 0, m_base, 1, buf, 0)
            kth_base = buf[k_base - 1]
            _smallest(cand, m_base, m, 1, buf, n)
            return kth_base, buf[k_full - 1], OK
    n = _smallest(v, 0, n_base, 1, buf, 0)
    kth_base = buf[k_base - 1]
    _smallest(v, n_base, s, 1, buf, n)
    return kth_base, buf[k_full - 1], OK


def _tail_of_sum(a: FloatArray, b: FloatArray, n_base: int, k_base: int, k_full: int) -> tuple[float, float, int]:
    """:func:`_tails` of ``a + b``."""
    return _tails(_sum_of(a, 1.0, b), n_base, k_base, k_full)


def _moved_tails(old: FloatArray, row: FloatArray, dq: float, other: FloatArray, n_base: int, k_base: int,
                 k_full: int, own: bool, comb: bool) -> tuple[FloatArray, float, float, int, float, float, int]:
    """A P&L vector moved by a position change and its order statistics: ``new = old + dq x row``
    (:func:`_sum_of`), then ``(new, tails of new, tails of other + new)``, each tail triple as
    :func:`_tails` returns it; with ``own`` / ``comb`` off that triple is not computed (zeros)."""
    new = _sum_of(old, dq, row)
    kb_own = kf_own = kb_comb = kf_comb = 0.0
    st_own = st_comb = ZERO
    if own:
        kb_own, kf_own, st_own = _tails(new, n_base, k_base, k_full)
    if comb:
        kb_comb, kf_comb, st_comb = _tails(_sum_of(other, 1.0, new), n_base, k_base, k_full)
    return new, kb_own, kf_own, st_own, kb_comb, kf_comb, st_comb


def _sum_of(a: FloatArray, q: float, b: FloatArray) -> FloatArray:
    """``a + q * b`` (a new vector)."""
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = a[i] + q * b[i]
    return out


def _roots_moved(net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray, onehot: FloatArray,
                 dv01: FloatArray, dq: float, d_long: float,
                 d_short: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """SPAN inputs per root moved by a position change (the NumPy expressions ``net + dq *
    onehot``, ``long + d_long * onehot``, ``short + d_short * onehot``, ``delta + dq * dv01``)."""
    return _sum_of(net, dq, onehot), _sum_of(long, d_long, onehot), _sum_of(short, d_short, onehot), _sum_of(delta, dq, dv01)


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


def _np_sum(a: FloatArray, lo: int, n: int) -> float:
    """``a[lo:lo + n].sum()`` as NumPy adds (pairwise: eight running sums per block of up to 128
    values, blocks halved recursively) but for the final ``0.0 +`` of :func:`np_sum`."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r = np.empty(8)
        for t in range(8):
            r[t] = a[lo + t]
        i = 8
        while i < n - n % 8:
            for t in range(8):
                r[t] += a[lo + i + t]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += a[lo + i]
            i += 1
        return res
    half = n // 2
    half -= half % 8
    return _np_sum(a, lo, half) + _np_sum(a, lo + half, n - half)


def _sum(a: FloatArray) -> float:
    """``a.sum()`` of a 1-D array, bit for bit (the reduction starts from 0.0; tested against NumPy)."""
    return 0.0 + _np_sum(a, 0, a.shape[0])


def _concentration(bucket: FloatArray, threshold: float, cost_bp: float) -> float:
    """:func:`~xmargin.margin.ficc.concentration_addon` of one account's net DV01 per bucket."""
    excess = np.empty(bucket.shape[0])
    for b in range(bucket.shape[0]):
        excess[b] = _maximum(abs(bucket[b]) - threshold, 0.0)
    return _sum(excess) * cost_bp


def _span_terms(net: FloatArray, long: FloatArray, short: FloatArray, delta: FloatArray, loss: FloatArray,
                intra_charge: FloatArray, pair_p: IntArray, pair_q: IntArray,
                pair_rate: FloatArray) -> tuple[float, float, float, float]:
    """SPAN of one account: ``(scan risk, intra-commodity charge, inter-commodity credit,
    requirement)`` (dollars), the operations of :meth:`xmargin.engine.figures.SpanOfOne.numpy` in
    the same order (sums over roots as NumPy sums them)."""
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
    scan_risk, intra_charge = _sum(scan), _sum(intra)
    net_req = scan_risk + intra_charge - credit
    return scan_risk, intra_charge, credit, (net_req if net_req > 0.0 else 0.0)


def enable() -> bool:
    """Compile the loops (or load them from the on-disk cache); ``False`` where Numba is not
    installed or inside :func:`disabled` (the callers keep their NumPy code)."""
    if _OFF:
        return False
    if _COMPILED:
        return True
    try:
        from numba import njit, types
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return False
    # inputs typed read-only: they accept writeable arrays too, and the context's matrices may be
    # read-only memory maps (the context disk cache)
    vec, out, i8, f8 = types.Array(types.float64, 1, "C", readonly=True), types.float64[::1], types.int64, types.float64
    mat, ints = types.Array(f8, 2, "C", readonly=True), types.Array(i8, 1, "C", readonly=True)
    tail = types.Tuple((f8, f8, i8))
    signatures = {  # in the order they call each other
        "sum_of": (out(vec, f8, vec), _sum_of),
        "tail_of": (tail(vec, i8, i8, i8), _tails),
        "tail_of_sum": (tail(vec, vec, i8, i8, i8), _tail_of_sum),
        "moved_tails": (types.Tuple((out, f8, f8, i8, f8, f8, i8))(vec, vec, f8, vec, i8, i8, i8, types.boolean,
                                                                   types.boolean), _moved_tails),
        "lowest_sums": (types.UniTuple(f8, 3)(vec, vec, vec, vec), _lowest_sums),
        "roots_moved": (types.UniTuple(out, 4)(vec, vec, vec, vec, vec, vec, f8, f8, f8), _roots_moved),
        "np_sum": (f8(vec, i8, i8), _np_sum),
        "sum": (f8(vec), _sum),
        "concentration": (f8(vec, f8, f8), _concentration),
        "span_terms": (types.UniTuple(f8, 4)(vec, vec, vec, vec, mat, vec, ints, ints, vec), _span_terms),
    }
    space = globals()
    for helper in (_push, _smallest, _maximum, _minimum):  # inlined into the loops that call them
        space[helper.__name__] = njit(inline="always", cache=True)(helper)
    for name, (sig, fn) in signatures.items():  # the loops call each other through these globals
        _COMPILED[name] = space[fn.__name__] = njit(sig, cache=True, error_model="numpy", boundscheck=False)(fn)
    return True


@contextmanager
def disabled() -> Iterator[None]:
    """Inside the block, :func:`enable` says ``False``: what is built there (an engine's
    arithmetic) keeps the NumPy code (tests compare the two paths)."""
    global _OFF
    before, _OFF = _OFF, True
    try:
        yield
    finally:
        _OFF = before


def compiled(name: str) -> Any:
    """The compiled loop ``name`` (compiled or loaded on first use; ``KeyError`` where
    :func:`enable` says ``False``)."""
    if not _COMPILED:
        enable()
    return _COMPILED[name]
