"""SPAN from a CME parameter file vs the built-in SPAN, same parameters, same accounts.

``python -m benchmarks.bench_span_file [--accounts N] [--repeat K]``: synthetic parameters
(11 products, 2 months each, one calendar spread per product, an inter-commodity spread for
every pair of products; every contract's delta scaling 1, so both algorithms give the same
figures, checked) and random futures positions.  Prints the median time of each and the
ratio file/built-in, with the machine's load average (timings on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from itertools import combinations

import numpy as np
import scipy.sparse as sp

from xmargin.formats.span_cme import cme_span
from xmargin.formats.span_params import (
    CmeSpanParameters,
    CombinedCommodity,
    InterSpread,
    IntraSpread,
    SpanContract,
    SpreadLeg,
)
from xmargin.margin.span import SpanInputs, SpanParameters, span_requirement
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.stir import RateFuture

ROOTS = ("ZT", "Z3N", "ZF", "ZN", "TN", "TWE", "ZB", "UB", "SR3", "SR1", "ZQ")


def setup(accounts: int, seed: int = 1) -> tuple[SpanParameters, CmeSpanParameters, InstrumentUniverse, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    scan = rng.uniform(300, 3000, len(ROOTS))
    intra = scan * 0.15
    pairs = tuple((p, q, round(float(rng.uniform(0.3, 0.85)), 4)) for p, q in combinations(range(len(ROOTS)), 2))
    pairs = tuple(sorted(pairs, key=lambda t: -t[2]))
    built_in = SpanParameters(ROOTS, scan, intra, pairs)
    moves, weights = built_in.scenario_moves()
    insts = [(TreasuryFuture(r, 2024, m) if r not in ("SR3", "SR1", "ZQ") else RateFuture(r, 2024, m))
             for r in ROOTS for m in (9, 12)]
    contracts, ccs = [], {}
    for p, r in enumerate(ROOTS):
        ra = tuple(float(v) for v in -(moves * weights) * scan[p])
        contracts += [SpanContract(r, 202409, ra), SpanContract(r, 202412, ra)]
        ccs[r] = CombinedCommodity(r, "", (r,), (), (IntraSpread(1, float(intra[p]), (
            SpreadLeg("202409", 1.0, "A"), SpreadLeg("202412", 1.0, "B")), "month"),))
    inter = tuple(InterSpread(k, rate, (SpreadLeg(ROOTS[p], 1.0, "A"), SpreadLeg(ROOTS[q], 1.0, "B")))
                  for k, (p, q, rate) in enumerate(pairs))
    file_params = CmeSpanParameters("synthetic", "xml", None, "CME", ccs, tuple(contracts), inter)
    dense = rng.integers(-50, 51, (accounts, len(insts))) * (rng.random((accounts, len(insts))) < 0.3)
    return built_in, file_params, InstrumentUniverse.of(insts), sp.csr_matrix(dense.astype(float))


def run(accounts: int = 10_000, repeat: int = 5) -> dict[str, float]:
    built_in, file_params, universe, q = setup(accounts)
    onehot = np.kron(np.eye(len(ROOTS)), np.ones((2, 1)))
    delta = np.asarray(q @ onehot)  # DV01 1 per contract: delta in contracts

    def builtin_once() -> np.ndarray:
        inputs = SpanInputs(np.asarray(q @ onehot), np.asarray(q.maximum(0) @ onehot),
                            np.asarray((-q).maximum(0) @ onehot), delta)
        return span_requirement(inputs, built_in).requirement

    def file_once() -> np.ndarray:
        return cme_span(q, universe, file_params).maintenance

    np.testing.assert_allclose(file_once(), builtin_once(), rtol=1e-9, atol=1e-6)
    times: dict[str, list[float]] = {"built-in": [], "file": []}
    for _ in range(repeat):
        for name, fn in (("built-in", builtin_once), ("file", file_once)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"accounts": accounts, "built_in_s": med["built-in"], "file_s": med["file"],
            "ratio_file_over_built_in": med["file"] / med["built-in"], "load_avg_1m": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    res = run(args.accounts, args.repeat)
    print(f"{'accounts':>10} {'built-in s':>12} {'file s':>10} {'file / built-in':>16} {'load 1m':>8}")
    print(f"{res['accounts']:>10} {res['built_in_s']:>12.4f} {res['file_s']:>10.4f} "
          f"{res['ratio_file_over_built_in']:>16.2f} {res['load_avg_1m']:>8.2f}")


if __name__ == "__main__":
    main()
