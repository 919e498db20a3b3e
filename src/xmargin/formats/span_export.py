"""The built-in calibrated SPAN parameters written as a CME SPAN parameter set.

Used by ``xmargin cme-params export`` and by the check that the two paths agree: margining a
book with ``--cme-params`` on this file gives the built-in totals.  The translation is exact
in the algorithm's terms (:mod:`xmargin.margin.span` vs :mod:`xmargin.formats.span_cme`):

* each root is a combined commodity holding one product, its contracts carry the same risk
  array ``-move x weight x scanning range`` (a loss is positive);
* the built-in forms calendar spreads on contracts and inter-commodity spreads on DV01: each
  contract's delta-scaling factor is ``DV01 / DV01 of the root's reference (front calibration)
  contract``, the inter-commodity delta-per-spread ratio of a root is ``100 / reference DV01``
  (so a spread is $100/bp on each leg) and the calendar spreads are series-to-series spreads
  of every pair of months with ratios equal to each month's scaling factor (so a spread is one
  contract a leg), charged the calibrated intra-commodity charge;
* credit rates and their order are the calibrated pairs'; the initial-to-maintenance ratios
  are CME's published rule (the built-in has none of its own); no spot charges.

PA2 fields have fixed precision (whole-dollar risk arrays and charges, 4-decimal ratios), so
a PA2 export reproduces the built-in figures to that rounding; the XML export is exact.
"""

from __future__ import annotations

from datetime import date
from itertools import combinations

from xmargin.formats.span_params import (
    CmeSpanParameters,
    CombinedCommodity,
    InterSpread,
    IntraSpread,
    SpanContract,
    SpreadLeg,
)
from xmargin.margin.context import MarginContext
from xmargin.reference.futures import TreasuryFuture, parse_future_symbol
from xmargin.reference.stir import RateFuture

INTER_UNIT_DV01 = 100.0  # dollars per bp per inter-commodity spread leg


def exchange_of(root: str) -> str:
    return "CME" if root in ("SR3", "SR1") else "CBT"


def span_from_context(context: MarginContext) -> CmeSpanParameters:
    """The context's calibrated SPAN parameters for its universe's futures and the calibration
    contracts, as a file would carry them."""
    span = context.span
    as_of: date = context.snapshot.as_of
    moves, weights = span.scenario_moves()
    dv01: dict[str, float] = dict(span.info.get("dv01_per_contract", {}))  # type: ignore[arg-type]
    futures: dict[str, TreasuryFuture | RateFuture] = {}
    for sym in dv01:
        futures[sym] = parse_future_symbol(sym, as_of)
    for j, inst in enumerate(context.universe.instruments):
        if isinstance(inst, TreasuryFuture | RateFuture) and inst.root in span.roots:
            futures[inst.symbol] = inst
            dv01[inst.symbol] = float(context.attributes.dv01[j])
    ref = {root: dv01[syms[0]] for root, syms in span.info.get("contracts", {}).items()}  # type: ignore[union-attr]
    contracts: list[SpanContract] = []
    commodities: dict[str, CombinedCommodity] = {}
    for p, root in enumerate(span.roots):
        mine = sorted((f for f in futures.values() if f.root == root), key=lambda f: (f.year, f.month))
        scale = {f.symbol: dv01[f.symbol] / ref[root] for f in mine}
        risk = tuple(float(v) for v in -(moves * weights) * span.scan_range[p])
        for f in mine:
            contracts.append(SpanContract(root, f.year * 100 + f.month, risk, exchange_of(root), "FUT", 1.0,
                                          scale[f.symbol]))
        spreads = tuple(
            IntraSpread(k + 1, float(span.intra_charge[p]),
                        (SpreadLeg(str(a.year * 100 + a.month), scale[a.symbol], "A"),
                         SpreadLeg(str(b.year * 100 + b.month), scale[b.symbol], "B")), "month")
            for k, (a, b) in enumerate(combinations(mine, 2))
        )
        commodities[root] = CombinedCommodity(root, exchange_of(root), (root,), (), spreads, (),
                                              ratio_source="CME rule (built-in calibration)")
    inter = tuple(
        InterSpread(k + 1, float(rate), (SpreadLeg(span.roots[p], INTER_UNIT_DV01 / ref[span.roots[p]], "A"),
                                         SpreadLeg(span.roots[q], INTER_UNIT_DV01 / ref[span.roots[q]], "B")))
        for k, (p, q, rate) in enumerate(span.inter_pairs)
    )
    return CmeSpanParameters(f"built-in calibration {as_of}", "built-in", as_of, "CME", commodities, tuple(contracts),
                             inter)
