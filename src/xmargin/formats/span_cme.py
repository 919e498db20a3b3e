"""The standard SPAN algorithm for futures with CME's published parameters.

For each combined commodity (CC) an account holds, with its positions ``n_j`` (contracts) in
the CC's contracts ``j`` and their risk arrays ``R_j`` (dollars per contract, loss positive,
CME's sign convention; scenarios 15-16 already scaled by the cover fraction):

1. **Scan risk** ``= max(0, max_s sum_j n_j R_j[s])`` over the 16 scenarios (one scanning
   tier); time risk ``= (L[1] + L[2]) / 2`` and price risk ``= scan risk - time risk``.
2. **Intra-commodity spread charge**: deltas ``d_j = n_j x composite delta x delta-scaling
   factor``; the file's tier (or series) spreads are formed in priority order, each leg taking
   ``spreads x ratio`` delta from its tier (front month first), A legs on one side of the
   market and B legs on the other; charge ``= spreads x rate``.
3. **Spot-month charge**: for a contract month in delivery, delta consumed by the spreads
   above times the spread rate plus delta left in outrights times the outright rate.
4. **Inter-commodity credits**, spreads in priority order on the CC's net delta: spreads
   ``s = min_leg |remaining delta| / ratio`` (A legs one sign, B legs the other), each leg
   credited ``rate x s x ratio x WFPR`` with the weighted futures price risk
   ``WFPR = price risk / |net delta|`` (CME's normal method 1); remaining deltas shrink.
5. **Maintenance** per CC ``= max(0, scan + intra + spot - credit)``, summed over CCs;
   **initial** ``= maintenance x`` the CC's initial-to-maintenance ratio of the account class.

Vectorised over accounts (``A x n`` arrays per CC); loops run over spreads only.  Options,
scanning tiers and the short option minimum are left out (futures only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.formats.span_params import ACCOUNT_CLASS_OF, CmeSpanParameters, SpanContract
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.stir import RateFuture

FloatArray = npt.NDArray[np.float64]


@dataclass
class CmeSpanResult:
    """Per account (arrays of length A, dollars): the SPAN steps summed over CCs, and per CC."""

    scan_risk: FloatArray
    intra_spread_charge: FloatArray
    spot_charge: FloatArray
    inter_spread_credit: FloatArray
    maintenance: FloatArray
    initial: FloatArray
    by_commodity: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # spreads formed, when traced


def contract_map(params: CmeSpanParameters, universe: InstrumentUniverse) -> tuple[npt.NDArray[np.int64], dict[str, str]]:
    """Index into ``params.contracts`` of every universe row (-1 if none) and, for each futures
    contract the file lacks, why (the products the file has)."""
    cache = params.__dict__.setdefault("_contract_maps", {})  # per parameter set, by universe
    key = tuple(universe.ids)
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    index = {id(c): k for k, c in enumerate(params.contracts)}
    out = np.full(len(universe), -1, dtype=np.int64)
    missing: dict[str, str] = {}
    for j, inst in enumerate(universe.instruments):
        if isinstance(inst, TreasuryFuture | RateFuture):
            c = params.find(inst.root, inst.year * 100 + inst.month)
            if c is None:
                missing[universe.ids[j]] = (f"not in the CME parameter file {params.source} "
                                            f"(products there: {', '.join(params.products()) or 'none'})")
            else:
                out[j] = index[id(c)]
    if len(cache) > 16:
        cache.clear()
    cache[key] = (out, missing)
    return out, missing


def _take(rem: FloatArray, cols: list[int], amount: FloatArray) -> None:
    """Remove ``amount`` (per account) from ``rem[:, cols]``, front column first."""
    left = amount.copy()
    for c in cols:
        used = np.minimum(rem[:, c], left)
        rem[:, c] -= used
        left -= used


def cme_span(q: sp.csr_matrix, universe: InstrumentUniverse, params: CmeSpanParameters,
             account_types: list[str] | None = None, *, trace: bool = False) -> CmeSpanResult:
    """SPAN of every account (rows of ``q``, contracts per universe column); positions the file
    does not cover are ignored here (the caller reports them)."""
    a = q.shape[0]
    idx, _ = contract_map(params, universe)
    cc_of = params.commodity_of_product()
    groups: dict[str, list[tuple[int, SpanContract]]] = {}
    held = np.asarray(abs(q).sum(axis=0)).ravel() > 0
    for col in np.flatnonzero((idx >= 0) & held):
        c = params.contracts[idx[col]]
        groups.setdefault(cc_of.get(c.product, c.product), []).append((int(col), c))
    classes = [ACCOUNT_CLASS_OF.get(t, "speculator") for t in (account_types or ["house"] * a)]
    z = np.zeros(a)
    res = CmeSpanResult(z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy())
    state: dict[str, dict[str, Any]] = {}
    for code, members in groups.items():
        members.sort(key=lambda t: t[1].month)
        cols = [m[0] for m in members]
        contracts = [m[1] for m in members]
        n = np.asarray(q[:, cols].todense(), dtype=np.float64)
        ra = np.array([c.risk_array for c in contracts])
        loss = n @ ra
        scan = np.maximum(loss.max(axis=1), 0.0)
        time_risk = (loss[:, 0] + loss[:, 1]) / 2.0
        price_risk = np.maximum(scan - time_risk, 0.0)
        d = n * np.array([c.spread_delta for c in contracts])[None, :]
        net = d.sum(axis=1)
        longs, shorts = np.maximum(d, 0.0), np.maximum(-d, 0.0)
        cc = params.commodities.get(code)
        intra = np.zeros(a)
        if cc is not None:
            for spread in sorted(cc.intra_spreads, key=lambda s: s.priority):
                legs = []
                for leg in spread.legs:
                    if spread.by == "month":
                        lc = [k for k, c in enumerate(contracts) if str(c.month) == leg.key]
                    else:
                        lc = [k for k, c in enumerate(contracts) if str(cc.tier_of(c.month)) == leg.key]
                    legs.append((leg, lc))
                if any(not lc for _, lc in legs):
                    continue
                for a_side in (longs, shorts):
                    b_side = shorts if a_side is longs else longs
                    pools = [a_side if leg.side == "A" else b_side for leg, _ in legs]
                    s = np.min([pool[:, lc].sum(axis=1) / leg.ratio for pool, (leg, lc) in zip(pools, legs, strict=True)],
                               axis=0)
                    if not s.any():
                        continue
                    for pool, (leg, lc) in zip(pools, legs, strict=True):
                        _take(pool, lc, s * leg.ratio)
                    intra += s * spread.rate
                    if trace:
                        res.events.append({"step": "intra", "cc": code, "priority": spread.priority, "rate": spread.rate,
                                           "legs": [f"{'tier' if spread.by == 'tier' else 'month'} {leg.key} "
                                                    f"{leg.side} x{leg.ratio:g}" for leg, _ in legs],
                                           "spreads": s, "charge": s * spread.rate})
        consumed = np.abs(d) - longs - shorts
        spot = np.zeros(a)
        if cc is not None:
            for sc in cc.spot_charges:
                sc_cols = [k for k, c in enumerate(contracts) if c.month == sc.month]
                if sc_cols:
                    part = (consumed[:, sc_cols].sum(axis=1) * sc.spread_rate
                            + (longs[:, sc_cols] + shorts[:, sc_cols]).sum(axis=1) * sc.outright_rate)
                    spot += part
                    if trace:
                        res.events.append({"step": "spot", "cc": code, "month": sc.month, "charge": part,
                                           "spread_rate": sc.spread_rate, "outright_rate": sc.outright_rate})
        with np.errstate(divide="ignore", invalid="ignore"):
            wfpr = np.where(net != 0, price_risk / np.abs(net), 0.0)
        state[code] = {"scan": scan, "intra": intra, "spot": spot, "credit": np.zeros(a), "net": net.copy(),
                       "remaining": net.copy(), "wfpr": wfpr, "worst": loss.argmax(axis=1) + 1,
                       "ratio": np.array([(cc.initial_ratio if cc else {}).get(k, 1.0) for k in classes]),
                       "ratio_source": cc.ratio_source if cc else "CME rule"}
    for spread in sorted(params.inter_spreads, key=lambda s: s.priority):
        if any(leg.key not in state for leg in spread.legs):
            continue
        for sign in (1.0, -1.0):
            want = [sign if leg.side == "A" else -sign for leg in spread.legs]
            avail = [np.where(w * state[leg.key]["remaining"] > 0, np.abs(state[leg.key]["remaining"]) / leg.ratio, 0.0)
                     for w, leg in zip(want, spread.legs, strict=True)]
            s = np.min(avail, axis=0)
            if not s.any():
                continue
            total = np.zeros(a)
            for w, leg in zip(want, spread.legs, strict=True):
                st = state[leg.key]
                credit = spread.rate * s * leg.ratio * st["wfpr"]
                st["credit"] += credit
                total += credit
                st["remaining"] -= w * s * leg.ratio
            if trace:
                res.events.append({"step": "inter", "priority": spread.priority, "rate": spread.rate,
                                   "legs": [f"{leg.key} {leg.side} x{leg.ratio:g}" for leg in spread.legs],
                                   "spreads": s, "credit": total})
    for st in state.values():
        maint = np.maximum(st["scan"] + st["intra"] + st["spot"] - st["credit"], 0.0)
        st["maintenance"] = maint
        st["initial"] = maint * st["ratio"]
        res.scan_risk += st["scan"]
        res.intra_spread_charge += st["intra"]
        res.spot_charge += st["spot"]
        res.inter_spread_credit += st["credit"]
        res.maintenance += maint
        res.initial += st["initial"]
    res.by_commodity = state
    return res


def explain_row(res: CmeSpanResult, i: int) -> dict[str, Any]:
    """Each SPAN step of account ``i`` of a traced result, in dollars."""
    ccs = []
    for code, st in res.by_commodity.items():
        if st["scan"][i] == 0 and st["net"][i] == 0 and st["intra"][i] == 0:
            continue
        ccs.append({"combined_commodity": code, "scan_risk": float(st["scan"][i]),
                    "worst_scenario": int(st["worst"][i]), "net_delta": float(st["net"][i]),
                    "weighted_futures_price_risk": float(st["wfpr"][i]),
                    "intra_spread_charge": float(st["intra"][i]), "spot_charge": float(st["spot"][i]),
                    "inter_spread_credit": float(st["credit"][i]), "maintenance": float(st["maintenance"][i]),
                    "initial_ratio": float(st["ratio"][i]), "initial": float(st["initial"][i]),
                    "ratio_source": st["ratio_source"]})
    steps = []
    for ev in res.events:
        amount = ev.get("charge", ev.get("credit"))
        if amount is None or amount[i] == 0:
            continue
        step = {k: v for k, v in ev.items() if k not in ("spreads", "charge", "credit")}
        if "spreads" in ev:
            step["spreads"] = float(ev["spreads"][i])
        step["credit" if ev["step"] == "inter" else "charge"] = float(amount[i])
        steps.append(step)
    return {"combined_commodities": ccs, "spreads": steps,
            "maintenance": float(res.maintenance[i]), "initial": float(res.initial[i])}
