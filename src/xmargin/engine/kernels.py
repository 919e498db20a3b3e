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


def enable() -> bool:
    """Compile the loops (or load them from the on-disk cache); ``False`` where Numba is not
    installed (the callers keep their NumPy code)."""
    if _COMPILED:
        return True
    try:
        from numba import njit, types
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return False
    global _push
    # inputs typed read-only: they accept writeable arrays too, and the context's matrices may be
    # read-only memory maps (the context disk cache)
    vec, out, i8, f8 = types.Array(types.float64, 1, "C", readonly=True), types.float64[::1], types.int64, types.float64
    tail = types.Tuple((f8, f8, i8))
    signatures = {
        "tail_of": (tail(vec, i8, i8, i8), _tail_of),
        "tail_of_sum": (tail(vec, vec, i8, i8, i8), _tail_of_sum),
        "sum_of": (out(vec, f8, vec), _sum_of),
        "lowest_sums": (types.UniTuple(f8, 3)(vec, vec, vec, vec), _lowest_sums),
    }
    _push = njit(i8(out, i8, f8), cache=True, inline="always")(_push)
    for name, (sig, fn) in signatures.items():
        _COMPILED[name] = njit(sig, cache=True, error_model="numpy", boundscheck=False)(fn)
    return True


def compiled(name: str) -> Any:
    """The compiled loop ``name`` (:func:`enable` first)."""
    return _COMPILED[name]
