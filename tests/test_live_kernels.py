"""The live engine's compiled loops (:mod:`xmargin.engine.kernels`) against independent references.

The order statistics against a full sort (``np.sort``: the definition of the k-th smallest)
and against :func:`~xmargin.margin.var.var_with_stress`; the moved vectors, the stressed-loss
minima, SPAN's per-root terms and credits against the NumPy code they replace (bit for bit,
the sign of a zero included); and a whole engine on real data (the 2025-10-31 market) against
the same engine built with the compiled loops off: every figure of every trade identical.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from xmargin.clearing.replay import load_market
from xmargin.engine import LiveEngine, kernels
from xmargin.engine.figures import SpanOfOne, VarOfOne, concentration_of_one, lowest_sums
from xmargin.margin.calibration import listed_contracts
from xmargin.margin.context import build_context
from xmargin.margin.ficc import concentration_addon
from xmargin.margin.span import SpanParameters
from xmargin.margin.var import tail_rank, var_with_stress
from xmargin.portfolio.book import Account
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import parse_instrument
from xmargin.reference.stir import RateFuture

AS_OF = date(2025, 10, 31)


def _same(a: float, b: float) -> bool:
    """Equal bit for bit as figures: the same value and sign of zero, or both NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (a == b and math.copysign(1.0, a) == math.copysign(1.0, b)) or (a != a and b != b)
    return a == b and type(a) is type(b)


def _vectors(rng: np.random.Generator, s: int, n_stress: int) -> list[np.ndarray]:
    """P&L vectors that stress the selection: plain, ties, sorted both ways, a single loss,
    all zero, stressed scenarios all worse than the base ones, base ones all worse, signed zeros."""
    v = rng.standard_normal(s) * 1e6
    out = [v, np.round(v / 1e5) * 1e5, np.sort(v), np.sort(v)[::-1].copy(), np.zeros(s)]
    one = np.zeros(s)
    one[s // 2] = -5.0
    out.append(one)
    worse = v.copy()
    if n_stress:
        worse[s - n_stress:] -= 1e8
    out.append(worse)
    better = v.copy()
    better[: s - n_stress] -= 1e8
    out.append(better)
    signed = np.where(rng.random(s) < 0.5, 0.0, -0.0)
    signed[rng.integers(s)] = 1.0
    out.append(signed)
    sampled = np.abs(v)  # the values the threshold is sampled from are the lowest: too few
    sampled[::8] = -1e9 - np.arange(len(sampled[::8]))  # candidates, every value goes through the buffer
    out.append(sampled)
    if s > 2000:  # between k_base (25) and k_full (28) base candidates at 99%: the full set's
        window = np.abs(v)  # statistic is not among them, every value goes through the buffer
        window[: 8 * 8: 8] = -1e9 - np.arange(8)
        window[[i for i in range(1, 40) if i % 8][:18]] = -2e9
        out.append(window)
    return out


@pytest.mark.parametrize("s, n_stress, confidence",
                         [(2747, 250, 0.99), (2748, 250, 0.99), (2500, 0, 0.99), (300, 40, 0.975), (60, 10, 0.9),
                          (7, 2, 0.5), (1, 0, 0.99)])
def test_order_statistics_are_those_of_a_full_sort(s: int, n_stress: int, confidence: float) -> None:
    assert kernels.enable()
    rng = np.random.default_rng(s + n_stress)
    is_stress = np.zeros(s, dtype=bool)
    is_stress[s - n_stress:] = True
    var = VarOfOne(is_stress, confidence)
    reference = VarOfOne(is_stress, confidence, compiled=False)
    assert var.compiled and not reference.compiled
    n_base, k_base, k_full = var.args
    tail = kernels.compiled("tail_of")
    for v in _vectors(rng, s, n_stress):
        kb, kf, status = tail(v, n_base, k_base, k_full)
        if not v.any():
            assert status == kernels.ZERO
            continue
        assert status == kernels.OK
        assert kb == np.sort(v[:n_base])[k_base - 1]
        assert kf == np.sort(v)[k_full - 1]
        assert k_full == tail_rank(s, confidence)
        got, want = var(v), reference(v)
        assert _same(got[0], want[0]) and got[1] is want[1]
        batch, used = var_with_stress(v[None, :], is_stress, confidence)
        assert got[0] == float(batch[0]) and got[1] == bool(used[0])
        w = rng.standard_normal(s)
        got, want = var.of_sum(v, w), reference(v + w)
        assert _same(got[0], want[0]) and got[1] is want[1]


def test_a_nan_takes_the_numpy_path() -> None:
    is_stress = np.zeros(100, dtype=bool)
    is_stress[90:] = True
    v = np.random.default_rng(1).standard_normal(100)
    v[95] = np.nan
    var = VarOfOne(is_stress, 0.95)
    assert kernels.compiled("tail_of")(v, *var.args)[2] == kernels.HAS_NAN
    batch, used = var_with_stress(v[None, :], is_stress, 0.95)
    got = var(v)
    assert _same(got[0], float(batch[0])) and got[1] == bool(used[0])


def test_stressed_columns_not_trailing_stay_numpy() -> None:
    is_stress = np.zeros(50, dtype=bool)
    is_stress[[3, 17]] = True
    var = VarOfOne(is_stress, 0.9)
    assert not var.compiled
    v = np.random.default_rng(2).standard_normal(50)
    batch, used = var_with_stress(v[None, :], is_stress, 0.9)
    assert var(v) == (float(batch[0]), bool(used[0]))


def test_moved_vectors_and_their_tails() -> None:
    rng = np.random.default_rng(3)
    s, n_stress = 2747, 250
    is_stress = np.zeros(s, dtype=bool)
    is_stress[s - n_stress:] = True
    var = VarOfOne(is_stress, 0.99)
    moved = kernels.compiled("moved_tails")
    for old, row, other in zip(_vectors(rng, s, n_stress), _vectors(rng, s, n_stress)[::-1],
                               _vectors(rng, s, n_stress), strict=True):
        for dq in (1.0, -3.5e6, 0.1, 0.0):
            new, *tails = moved(old, row, dq, other, *var.args, True, True)
            want = old + dq * row
            assert np.array_equal(new, want) and np.array_equal(np.signbit(new), np.signbit(want))
            for got, ref in ((var.finish(*tails[:3]), var.numpy(want)), (var.finish(*tails[3:]), var.numpy(other + want))):
                assert got is not None and _same(got[0], ref[0]) and got[1] is ref[1]
            assert np.array_equal(kernels.compiled("sum_of")(old, dq, row), want)


def test_read_only_inputs() -> None:
    """The context's matrices may be read-only memory maps (the context disk cache)."""
    rng = np.random.default_rng(7)
    old, row, other = (rng.standard_normal(300) for _ in range(3))
    for a in (old, row, other):
        a.setflags(write=False)
    new, *tails = kernels.compiled("moved_tails")(old, row, 2.0, other, 270, 3, 3, True, True)
    assert np.array_equal(new, old + 2.0 * row) and tails[2] == tails[5] == kernels.OK
    assert kernels.compiled("tail_of")(row, 270, 3, 3)[1] == np.sort(row)[2]


def test_lowest_sums_as_numpy_minima() -> None:
    rng = np.random.default_rng(4)
    vs = [rng.standard_normal(500) * 1e6 for _ in range(4)]
    compiled = kernels.compiled("lowest_sums")
    assert compiled(*vs) == lowest_sums(*vs)
    vs[2][7] = np.nan
    got, want = compiled(*vs), lowest_sums(*vs)
    assert got[0] == want[0] and math.isnan(got[1]) and math.isnan(got[2]) and math.isnan(want[1])


def test_span_terms_as_the_numpy_loop() -> None:
    rng = np.random.default_rng(5)
    p = 9
    pairs = tuple((int(a), int(b), float(r)) for a, b, r in
                  zip(rng.integers(p, size=36), rng.integers(p, size=36), rng.uniform(0.2, 0.8, 36), strict=True) if a != b)
    params = SpanParameters(tuple(f"R{i}" for i in range(p)), rng.uniform(500, 5000, p), rng.uniform(10, 200, p), pairs)
    span, reference = SpanOfOne(params), SpanOfOne(params, compiled=False)
    onehot = np.eye(p)
    credits = 0
    for _ in range(300):
        held = rng.random(p) < 0.6
        net = np.where(held, rng.integers(-50, 50, p), 0).astype(float)
        long = np.maximum(net, 0.0) + np.where(rng.random(p) < 0.3, rng.integers(0, 9, p), 0)
        short = long - net
        delta = net * rng.uniform(10, 200, p)
        if rng.random() < 0.1:
            delta[rng.integers(p)] = np.nan
        got, want = span(net, long, short, delta), reference(net, long, short, delta)
        assert all(_same(a, b) for a, b in zip(got, want, strict=True)), (got, want)
        credits += want.inter_spread_credit > 0
        dq, d_long, d_short = 3.0, 2.0, -1.0
        j = int(rng.integers(p))
        moved = kernels.compiled("roots_moved")(net, long, short, np.nan_to_num(delta), onehot[j], onehot[j] * 77.5, dq,
                                                d_long, d_short)
        want_moved = (net + dq * onehot[j], long + d_long * onehot[j], short + d_short * onehot[j],
                      np.nan_to_num(delta) + dq * (onehot[j] * 77.5))
        assert all(np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))
                   for a, b in zip(moved, want_moved, strict=True))
    assert credits > 100  # the spread-credit loop ran


def test_sums_as_numpy_sums() -> None:
    """NumPy's pairwise summation reproduced bit for bit (lengths across its 8-wide and 128-block
    boundaries, magnitudes over eleven decades, signed zeros), and the concentration add-on."""
    rng = np.random.default_rng(6)
    total = kernels.compiled("sum")
    for n in [*range(0, 140), 255, 256, 257, 1000, 2747]:
        for t in range(20):
            a = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 8, n) if t else -np.zeros(n)
            want = a.sum()
            got = total(a)
            assert got == want and np.signbit(got) == np.signbit(want), (n, t)
    concentration = kernels.compiled("concentration")
    for _ in range(500):
        bucket = rng.standard_normal(int(rng.integers(1, 12))) * 10.0 ** rng.integers(2, 7)
        want = concentration_addon(bucket[None, :], 25_000.0, 2.5)[0]
        assert _same(concentration(bucket, 25_000.0, 2.5), float(want))
        assert _same(concentration_of_one(bucket, 25_000.0, 2.5), float(want))


@pytest.fixture(scope="module")
def market(data_dir):
    return load_market(AS_OF, data_dir=data_dir)


def test_engine_figures_identical_with_the_loops_off(market) -> None:
    """Random trades on every side (cash, bills, futures; cross-margining and not; positions
    closed exactly): every figure of every apply and what-if equal bit for bit."""
    m = market.master
    notes = [r.definition for r in m.notes_and_bonds(outstanding_on=AS_OF)]
    instruments = [*notes[5::9][:20], parse_instrument("UST:0:2026-03-19", as_of=AS_OF, master=m),
                   *[c for root in ("ZT", "ZN", "ZB", "UB", "SR3", "ZQ") for c in listed_contracts(root, AS_OF)][:12]]

    def engine() -> LiveEngine:
        ctx = build_context(market.snapshot, m, InstrumentUniverse.of(instruments), market.params, market.eligibility)
        return LiveEngine(ctx)

    fast = engine()
    with kernels.disabled():
        slow = engine()
    assert fast._k._moved_tails is not None and slow._k._moved_tails is None
    accounts = [Account("H1", "M1", "house", True), Account("H2", "M1", "house", False),
                Account("C1", "M2", "customer", True)]
    rng = np.random.default_rng(20251031)
    for step in range(400):
        acc = accounts[step % 3]
        inst = instruments[int(rng.integers(len(instruments)))]
        future = isinstance(inst, TreasuryFuture | RateFuture)
        qty = float(rng.integers(-20, 21)) * (1.0 if future else 1e6)
        held = fast.positions(acc.account) if acc.account in fast.accounts else {}
        if held and rng.random() < 0.1:  # close one exactly
            iid = sorted(held)[int(rng.integers(len(held)))]
            rows = [e.apply(acc.account, iid, -held[iid]) for e in (fast, slow)]
        else:
            impacts = [e.what_if(acc, inst, qty) for e in (fast, slow)]
            assert all(_same(impacts[0][side][k], impacts[1][side][k])
                       for side in ("before", "after", "change") for k in impacts[0][side]), step
            rows = [e.apply(acc, inst, qty) for e in (fast, slow)]
        assert rows[0].keys() == rows[1].keys()
        assert all(_same(rows[0][k], rows[1][k]) for k in rows[0]), (step, [k for k in rows[0]
                                                                            if not _same(rows[0][k], rows[1][k])])
