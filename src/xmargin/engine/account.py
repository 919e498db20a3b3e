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
P&L matrices), its figures with the formulas of the margin functions
:func:`~xmargin.margin.calculator.margins_for_positions` uses, applied to one account
(:mod:`xmargin.engine.figures`; the vector work in the compiled loops of
:mod:`xmargin.engine.kernels`, the same figures bit for bit), the combined VaRs of E and the
account's figures reassembled.  A sub-portfolio whose last position closes is
reset to exact zeros, so rounding left by the incremental sums can never make an empty book
look like a position (the reduction tests ``> 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.engine import kernels
from xmargin.engine.figures import (
    SpanOfOne,
    SpanOfOneResult,
    VarOfOne,
    axpy,
    concentration_of_one,
    ficc_requirement_of_one,
    lowest_sums,
    reduction_of_one,
    worst,
)
from xmargin.margin.calculator import AccountMargins
from xmargin.margin.context import MarginContext
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
    """Margin figures of one sub-portfolio (dollars)."""

    var: float
    stress: bool
    floor: float
    conc: float
    span: SpanOfOneResult | None
    cme_var: float


@dataclass
class AccountState:
    account: Account
    positions: dict[int, float]
    sides: list[Side]
    risks: list[Risk]
    comb: tuple[float, float]  # VaRs of E under the FICC and the CME scenarios (dollars)
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
        self._floor_w = a.floor_weight.astype(np.float64)
        self._bucket = np.ascontiguousarray(a.bucket_dv01, dtype=np.float64)
        self._onehot = np.ascontiguousarray(a.span_onehot, dtype=np.float64)
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
        self._axpy = kernels.compiled("sum_of") if fast else axpy
        self._lowest_sums = kernels.compiled("lowest_sums") if fast else lowest_sums
        self._conc = kernels.compiled("concentration") if fast else concentration_of_one
        compiled = fast and self._var_f.compiled and self._var_c.compiled
        self._moved_tails = kernels.compiled("moved_tails") if compiled else None
        # per instrument, as Python lists (the hot path reads single elements)
        self._side_xm = np.where(a.eligible, np.where(a.is_cme, EC, EF), np.where(a.is_cme, RC, RF)).tolist()
        self._side_plain = np.where(a.is_cme, RC, RF).tolist()
        self._bad_j, self._fb_j, self._floor_j = self._bad.tolist(), self._fb.tolist(), self._floor_w.tolist()
        self._roots_moved = kernels.compiled("roots_moved") if fast else None
        self._rows = (list(self._F), list(self._C), list(self._bucket), list(self._onehot), list(self._dv01_root))
        self._var_model = p.cme.standalone_model == "var"
        self._conc_args = (p.ficc.concentration_dv01_threshold, p.ficc.concentration_cost_bp)
        self.template = Side(self._F.shape[1], self._C.shape[1], self._bucket.shape[1], self._onehot.shape[1])

    def side_of(self, j: int, xm: bool) -> int:
        return self._side_xm[j] if xm else self._side_plain[j]

    def moved(self, side: Side, k: int, j: int, old: float, new: float, vectors: bool = True) -> Side:
        """``side`` after the position in instrument ``j`` goes from ``old`` to ``new``;
        ``vectors=False``: the P&L vectors left to the caller (:meth:`change`) unless the side is
        now empty."""
        out = Side.__new__(Side)
        out.count = side.count + (new != 0.0) - (old != 0.0)
        bad, fb = self._bad_j[j], self._fb_j[j]
        out.n_bad = side.n_bad + (((new != 0.0) - (old != 0.0)) if bad else 0)
        out.n_fb = side.n_fb + (((new != 0.0) - (old != 0.0)) if fb else 0)
        if out.count == 0:  # empty: exact zeros, no rounding residue
            z = self.template
            out.pnl_f, out.pnl_c, out.floor, out.bucket = z.pnl_f, z.pnl_c, 0.0, z.bucket
            out.net, out.long, out.short, out.delta = z.net, z.long, z.short, z.delta
            out.n_bad = out.n_fb = 0
            return out
        dq = new - old
        f_rows, c_rows, bucket_rows, onehot_rows, dv01_rows = self._rows
        if vectors:
            out.pnl_f = self._axpy(side.pnl_f, dq, f_rows[j])
            out.pnl_c = self._axpy(side.pnl_c, dq, c_rows[j]) if k != RF else side.pnl_c
        if k == EF or k == RF:
            out.floor = side.floor + (abs(new) - abs(old)) * self._floor_j[j]
            out.bucket = self._axpy(side.bucket, dq, bucket_rows[j])
            out.net, out.long, out.short, out.delta = side.net, side.long, side.short, side.delta
        else:
            out.floor, out.bucket = side.floor, side.bucket
            oh, d_long, d_short = onehot_rows[j], max(new, 0.0) - max(old, 0.0), max(-new, 0.0) - max(-old, 0.0)
            if self._roots_moved is not None:
                out.net, out.long, out.short, out.delta = self._roots_moved(
                    side.net, side.long, side.short, side.delta, oh, dv01_rows[j], dq, d_long, d_short)
            else:
                out.net = side.net + dq * oh
                out.long = side.long + d_long * oh
                out.short = side.short + d_short * oh
                out.delta = side.delta + dq * dv01_rows[j]
        return out

    def change(self, sides: list[Side], risks: list[Risk], comb: tuple[float, float], k: int, j: int, old: float,
               new: float) -> tuple[list[Side], list[Risk], tuple[float, float]]:
        """Every sub-portfolio, its figures and E's combined VaRs after the position in instrument
        ``j`` (sub-portfolio ``k``) goes from ``old`` to ``new``: :meth:`moved`, :meth:`risk` and
        :meth:`combined` of the one sub-portfolio that moves, each of its P&L vectors updated with
        its order statistics in one compiled pass (the same figures)."""
        sides, risks = list(sides), list(risks)
        side = sides[k]
        out = sides[k] = self.moved(side, k, j, old, new, vectors=self._moved_tails is None)
        e = k in (EF, EC)
        if self._moved_tails is None or out.count == 0:
            risks[k] = self.risk(out, k)
            return sides, risks, (self.combined(sides) if e else comb)
        dq = new - old
        other = sides[EC if k == EF else EF]
        vf, vc = self._var_f, self._var_c
        own_f = k == EF or k == RF
        n_base, k_base, k_full = vf.args
        t = self._moved_tails(side.pnl_f, self._rows[0][j], dq, other.pnl_f, n_base, k_base, k_full, own_f, e)
        out.pnl_f = t[0]
        var = (vf.finish(t[1], t[2], t[3]) or vf.numpy(t[0])) if own_f else None
        comb_f = (vf.finish(t[4], t[5], t[6]) or vf.numpy(other.pnl_f + t[0]))[0] if e else comb[0]
        comb_c = comb[1]
        if k == RF:
            out.pnl_c = side.pnl_c
        else:
            own_c = not own_f and self._var_model
            n_base, k_base, k_full = vc.args
            t = self._moved_tails(side.pnl_c, self._rows[1][j], dq, other.pnl_c, n_base, k_base, k_full, own_c, e)
            out.pnl_c = t[0]
            if own_c:
                var = vc.finish(t[1], t[2], t[3]) or vc.numpy(t[0])
            if e:
                comb_c = (vc.finish(t[4], t[5], t[6]) or vc.numpy(other.pnl_c + t[0]))[0]
        risks[k] = self.risk(out, k, var)
        return sides, risks, (comb_f, comb_c)

    def risk(self, side: Side, k: int, var: tuple[float, bool] | None = None) -> Risk:
        """The figures of sub-portfolio ``k``; ``var``: its VaR and stress flag if known (FICC's,
        or CME's under the VaR model)."""
        if k == EF or k == RF:
            var_f, stress = var or self._var_f(side.pnl_f)
            conc = self._conc(side.bucket, *self._conc_args)
            return Risk(var_f, stress, side.floor, conc, None, 0.0)
        span = self._span(side.net, side.long, side.short, side.delta)
        cme_var = (var or self._var_c(side.pnl_c))[0] if self._var_model else 0.0
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
            cme_e, cme_r = span_e.requirement, span_r.requirement
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
            "span_scan_risk": span_e.scan_risk + span_r.scan_risk,
            "span_intra_spread_charge": span_e.intra_spread_charge + span_r.intra_spread_charge,
            "span_inter_spread_credit": span_e.inter_spread_credit + span_r.inter_spread_credit,
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
