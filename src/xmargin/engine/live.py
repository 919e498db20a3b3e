"""The live margin engine: margins kept current trade by trade.

The engine holds the instrument scenario P&L matrices of its universe (a
:class:`~xmargin.margin.context.MarginContext`) and, per account, the state the margin models
need, split like :mod:`xmargin.margin.calculator` into four sub-portfolios: E-FICC, E-CME
(eligible positions of a cross-margining account) and R-FICC, R-CME (everything else).  Per
sub-portfolio it keeps

* the scenario P&L vector under the FICC scenarios and (E-FICC, E-CME, R-CME) under the CME
  scenarios;
* FICC: the floor sum and the net DV01 per maturity bucket;
* CME: the SPAN inputs per root (net, long and short contracts, net DV01);
* the number of positions and of positions the models cannot price;

and the margin figures derived from each (VaR, floor, concentration add-on, SPAN).  A trade
changes one position, so one sub-portfolio: its vectors move by ``quantity x`` one row of the
P&L matrices, its figures and (for E) the combined VaRs are recomputed with the same margin
functions :func:`~xmargin.margin.calculator.margins_for_positions` uses, on 1-row arrays,
and the account's figures are reassembled.  Nothing else is touched.  A sub-portfolio whose
last position closes is reset to exact zeros, so rounding left by the incremental sums can
never make an empty book look like a position (the reduction tests ``> 0``).

A trade in an instrument outside the universe prices just the new rows
(:func:`extend_context`) and goes on; a new market snapshot (e.g. an intraday curve,
:func:`intraday_snapshot`) rebuilds the context and every account from its positions.

``what_if`` gives the margin impact of a proposed trade without applying it;
``prepare`` / ``commit`` split ``apply`` so a caller (the ledger) can make the trade durable
between the two.

Cost per trade: one or two vector updates of length ``S`` and at most three VaRs (partial
sorts of ``S`` values) plus SPAN on one row: a few hundred microseconds at 2,500+ scenarios
(``benchmarks/bench_live.py``).  A latency-sensitive service should call ``gc.freeze()`` once
its reference data is loaded, so that Python's full collections do not walk it mid-trade.
The engine is not thread-safe: one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.errors import InputError
from xmargin.margin.calculator import AccountMargins
from xmargin.margin.context import MarginContext, build_context
from xmargin.margin.cross import reduction_factors
from xmargin.margin.ficc import concentration_addon, ficc_requirement
from xmargin.margin.params import MarginParams
from xmargin.margin.span import SpanInputs, SpanResult, span_requirement
from xmargin.margin.var import var_with_stress
from xmargin.market.snapshot import MarketSnapshot
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.lookup import Instrument, instrument_id

FloatArray = npt.NDArray[np.float64]
Row = dict[str, Any]  # one account's figures: the fields of AccountMargins as floats / bools

EF, EC, RF, RC = 0, 1, 2, 3  # sub-portfolios
SIDE_NAMES = ("E-FICC", "E-CME", "R-FICC", "R-CME")
HEADLINE = ("ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined", "ficc_reduction_factor",
            "cme_reduction_factor", "applied_reduction_factor", "ficc_requirement", "cme_requirement",
            "total_before", "total_after", "savings", "savings_pct")
MARGIN_FIELDS = tuple(f.name for f in fields(AccountMargins))


# ----------------------------------------------------------------------------- context


def extend_context(context: MarginContext, instruments: Iterable[Instrument]) -> MarginContext:
    """``context`` over its universe plus ``instruments``, pricing only the new rows."""
    return context.extended(instruments)


def intraday_snapshot(snapshot: MarketSnapshot, par_yields: npt.ArrayLike) -> MarketSnapshot:
    """The snapshot with a new par curve (decimal, at ``snapshot.tenors``): an intraday market."""
    par = np.asarray(par_yields, dtype=np.float64)
    if par.shape != snapshot.par_yields.shape:
        raise InputError(f"expected {len(snapshot.tenors)} par yields at {snapshot.tenors}, got {par.shape}",
                         field="par_yields")
    if not np.all(np.isfinite(par)):
        raise InputError("par yields must be finite", field="par_yields")
    return replace(snapshot, par_yields=par, curve=snapshot.curves_from_par(par))


# ----------------------------------------------------------------------------- state


class _Side:
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

    def empty_like(self) -> _Side:
        return _Side(len(self.pnl_f), len(self.pnl_c), len(self.bucket), len(self.net))


@dataclass
class _Risk:
    """Margin figures of one sub-portfolio (1-element arrays)."""

    var: FloatArray
    stress: npt.NDArray[np.bool_]
    floor: FloatArray
    conc: FloatArray
    span: SpanResult | None
    cme_var: FloatArray


@dataclass
class _AccountState:
    account: Account
    positions: dict[int, float]
    sides: list[_Side]
    risks: list[_Risk]
    comb: tuple[FloatArray, FloatArray]  # F_comb, C_comb of E
    margins: Row
    version: int = 0


@dataclass(frozen=True)
class Pending:
    """A trade evaluated against an account's state, not yet applied (see ``LiveEngine.prepare``)."""

    account: str
    instrument: str
    quantity: float
    before: Row
    after: Row
    _state: _AccountState
    _new: bool
    _version: int

    def impact(self) -> dict[str, Any]:
        """Headline figures before and after and their change (``after - before``)."""
        b, a = self.before, self.after
        return {
            "account": self.account,
            "instrument": self.instrument,
            "quantity": self.quantity,
            "before": {k: b[k] for k in HEADLINE},
            "after": {k: a[k] for k in HEADLINE},
            "change": {k: a[k] - b[k] for k in HEADLINE},
        }


class LiveEngine:
    """Margins of every account, updated trade by trade (see the module docstring)."""

    def __init__(self, context: MarginContext) -> None:
        self._accounts: dict[str, _AccountState] = {}
        self._trades: dict[str, tuple[str, str, float]] = {}  # trade id -> account, instrument id, quantity
        self._set_context(context)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_book(cls, context: MarginContext, book: Book) -> LiveEngine:
        """An engine holding ``book``'s positions (the context may be any superset universe)."""
        engine = cls(extend_context(context, book.universe.instruments))
        for i, acc in enumerate(book.accounts):
            row = book.positions.getrow(i)
            pos = {engine.context.universe.index(book.universe.ids[j]): float(q)
                   for j, q in zip(row.indices, row.data, strict=True) if q != 0}
            engine._accounts[acc.account] = engine._fresh_state(acc, pos)
        return engine

    def _set_context(self, context: MarginContext) -> None:
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
        self._template = _Side(self._F.shape[1], self._C.shape[1], self._bucket.shape[1], self._onehot.shape[1])

    def _grow(self, instruments: Sequence[Instrument]) -> None:
        ctx = extend_context(self._ctx, instruments)
        if ctx is not self._ctx:
            if ctx.ficc_scenarios is not self._ctx.ficc_scenarios or ctx.span is not self._ctx.span:
                raise RuntimeError("extending the universe changed the scenario sets")  # pragma: no cover
            self._set_context(ctx)

    def add_instruments(self, instruments: Sequence[Instrument]) -> None:
        """Price ``instruments`` into the universe now (one extension instead of one per trade)."""
        self._grow(instruments)

    @property
    def context(self) -> MarginContext:
        return self._ctx

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def account(self, name: str) -> Account:
        return self._accounts[name].account

    # -- per-account arithmetic ------------------------------------------------------

    def _side_of(self, j: int, xm: bool) -> int:
        e = xm and bool(self._eligible[j])
        c = bool(self._is_cme[j])
        return (EC if c else EF) if e else (RC if c else RF)

    def _moved(self, side: _Side, k: int, j: int, old: float, new: float) -> _Side:
        """``side`` after the position in instrument ``j`` goes from ``old`` to ``new``."""
        out = _Side.__new__(_Side)
        out.count = side.count + (new != 0.0) - (old != 0.0)
        bad, fb = bool(self._bad[j]), bool(self._fb[j])
        out.n_bad = side.n_bad + (((new != 0.0) - (old != 0.0)) if bad else 0)
        out.n_fb = side.n_fb + (((new != 0.0) - (old != 0.0)) if fb else 0)
        if out.count == 0:  # empty: exact zeros, no rounding residue
            z = self._template
            out.pnl_f, out.pnl_c, out.floor, out.bucket = z.pnl_f, z.pnl_c, 0.0, z.bucket
            out.net, out.long, out.short, out.delta = z.net, z.long, z.short, z.delta
            out.n_bad = out.n_fb = 0
            return out
        dq = new - old
        out.pnl_f = side.pnl_f + dq * self._F[j]
        out.pnl_c = side.pnl_c + dq * self._C[j] if k != RF else side.pnl_c
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

    def _risk(self, side: _Side, k: int) -> _Risk:
        p = self._ctx.params
        zero = np.zeros(1)
        if k in (EF, RF):
            var, stress = var_with_stress(side.pnl_f[None, :], self._stress_f, p.ficc.confidence)
            conc = concentration_addon(side.bucket[None, :], p.ficc.concentration_dv01_threshold,
                                       p.ficc.concentration_cost_bp)
            return _Risk(var, stress, np.array([side.floor]), conc, None, zero)
        span = span_requirement(SpanInputs(side.net[None, :], side.long[None, :], side.short[None, :],
                                           side.delta[None, :]), self._ctx.span)
        if p.cme.standalone_model == "var":
            cme_var, _ = var_with_stress(side.pnl_c[None, :], self._stress_c, p.cme.var_confidence)
        else:
            cme_var = zero
        return _Risk(zero, np.zeros(1, dtype=bool), zero, zero, span, cme_var)

    def _combined(self, sides: list[_Side]) -> tuple[FloatArray, FloatArray]:
        p = self._ctx.params
        f_comb, _ = var_with_stress((sides[EF].pnl_f + sides[EC].pnl_f)[None, :], self._stress_f, p.ficc.confidence)
        c_comb, _ = var_with_stress((sides[EF].pnl_c + sides[EC].pnl_c)[None, :], self._stress_c,
                                    p.cme.var_confidence)
        return f_comb, c_comb

    def _assemble(self, sides: list[_Side], risks: list[_Risk], comb: tuple[FloatArray, FloatArray]) -> Row:
        """The account's figures, with the formulas of ``margins_for_positions`` (same operations
        in the same order, on scalars: IEEE doubles either way)."""
        p = self._ctx.params
        ef, ec, rf, rc = risks
        var_e_a = ef.var
        var_e, var_r = float(ef.var[0]), float(rf.var[0])
        floor_e, floor_r = float(ef.floor[0]), float(rf.floor[0])
        conc_e, conc_r = float(ef.conc[0]), float(rf.conc[0])
        ficc_e = float(ficc_requirement(ef.var, ef.floor, ef.conc)[0])
        ficc_r = float(ficc_requirement(rf.var, rf.floor, rf.conc)[0])
        span_e, span_r = ec.span, rc.span
        assert span_e is not None and span_r is not None
        if p.cme.standalone_model == "var":
            cme_e_a, cme_r_a = ec.cme_var, rc.cme_var
            cme_var_e, cme_var_r = float(cme_e_a[0]), float(cme_r_a[0])
        else:
            cme_e_a, cme_r_a = span_e.requirement, span_r.requirement
            cme_var_e = cme_var_r = 0.0
        cme_e, cme_r = float(cme_e_a[0]), float(cme_r_a[0])
        f_comb, c_comb = comb
        bad = sum(s.n_bad for s in sides) > 0
        fallback = (sides[EF].n_fb + sides[EC].n_fb > 0) and not bad
        red = reduction_factors(var_e_a, cme_e_a, f_comb, c_comb, cap=p.cross.reduction_cap,
                                computable=np.array([not (bad or fallback)]))
        r = float(red.applied[0])
        ficc_before = ficc_e + ficc_r
        cme_before = cme_e + cme_r
        topup_e = max(floor_e - var_e, 0.0)
        ficc_after = var_e * (1.0 - r) + topup_e + conc_e + ficc_r
        cme_after = cme_e * (1.0 - r) + cme_r
        before = ficc_before + cme_before
        after = ficc_after + cme_after
        nan = np.nan if bad else 0.0
        pnl_ef, pnl_ec_f, pnl_rf, pnl_rc_f = sides[EF].pnl_f, sides[EC].pnl_f, sides[RF].pnl_f, sides[RC].pnl_f
        return {
            "ficc_standalone": ficc_before + nan,
            "cme_standalone": cme_before + nan,
            "ficc_combined": np.nan if bad or fallback else float(f_comb[0]),
            "cme_combined": np.nan if bad or fallback else float(c_comb[0]),
            "ficc_reduction_factor": float(red.ficc_factor[0]),
            "cme_reduction_factor": float(red.cme_factor[0]),
            "applied_reduction_factor": r,
            "ficc_requirement": ficc_after + nan,
            "cme_requirement": cme_after + nan,
            "total_before": before + nan,
            "total_after": after + nan,
            "savings": before - after + nan,
            "savings_pct": ((before - after) / before * 100.0 if before > 0 else 0.0) + nan,
            "ficc_var": var_e + var_r,
            "ficc_var_eligible": var_e,
            "ficc_floor": floor_e + floor_r,
            "ficc_floor_topup": topup_e + max(floor_r - var_r, 0.0),
            "ficc_concentration": conc_e + conc_r,
            "ficc_stress_used": bool(ef.stress[0] or rf.stress[0]),
            "span_scan_risk": float(span_e.scan_risk[0]) + float(span_r.scan_risk[0]),
            "span_intra_spread_charge": float(span_e.intra_spread_charge[0]) + float(span_r.intra_spread_charge[0]),
            "span_inter_spread_credit": float(span_e.inter_spread_credit[0]) + float(span_r.inter_spread_credit[0]),
            "cme_var": cme_var_e + cme_var_r,
            "cme_standalone_eligible": cme_e,
            "stressed_loss_ficc": _worst(pnl_ef + pnl_rf),
            "stressed_loss_cme": _worst(pnl_ec_f + pnl_rc_f),
            "stressed_loss_combined": _worst(pnl_ef + pnl_rf + pnl_ec_f + pnl_rc_f),
            "computable": not bad,
            "fallback": fallback,
        }

    def _fresh_state(self, account: Account, positions: dict[int, float]) -> _AccountState:
        """State of an account built from its positions (no incremental history)."""
        sides = [self._template.empty_like() for _ in range(4)]
        groups: list[list[tuple[int, float]]] = [[], [], [], []]
        for j, q in sorted(positions.items()):
            if q != 0.0:
                groups[self._side_of(j, account.cross_margin)].append((j, q))
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
        risks = [self._risk(s, k) for k, s in enumerate(sides)]
        comb = self._combined(sides)
        state = _AccountState(account, {j: q for j, q in positions.items() if q != 0.0}, sides, risks, comb,
                              self._assemble(sides, risks, comb))
        return state

    # -- trades -------------------------------------------------------------------------

    def _resolve_account(self, account: Account | str) -> tuple[_AccountState, bool]:
        if isinstance(account, str):
            state = self._accounts.get(account)
            if state is None:
                raise InputError(f"unknown account {account!r}: its first trade must give member, type and "
                                 "cross-margin election", field="account")
            return state, False
        state = self._accounts.get(account.account)
        if state is None:
            return self._fresh_state(account, {}), True
        known = state.account
        if (known.member, known.account_type, known.cross_margin) != (account.member, account.account_type,
                                                                         account.cross_margin):
            raise InputError(
                f"account {account.account} is member {known.member}, {known.account_type}, "
                f"cross_margin={known.cross_margin}; the trade says member {account.member}, "
                f"{account.account_type}, cross_margin={account.cross_margin}",
                field="member",
            )
        return state, False

    def prepare(self, account: Account | str, instrument: Instrument | str, quantity: float) -> Pending:
        """Evaluate a position change of ``quantity`` without applying it."""
        if not np.isfinite(quantity):
            raise InputError(f"quantity {quantity} is not finite", field="quantity")
        if isinstance(instrument, str):
            j = self._ctx.universe._index.get(instrument)
            if j is None:
                raise InputError(f"instrument {instrument!r} is not in the engine's universe", field="instrument")
            inst_id = instrument
        else:
            inst_id = instrument_id(instrument)
            if inst_id not in self._ctx.universe._index:
                self._grow([instrument])
            j = self._ctx.universe.index(inst_id)
        state, new_account = self._resolve_account(account)
        old = state.positions.get(j, 0.0)
        new = old + quantity
        if abs(new) <= 1e-12 * max(abs(old), abs(quantity)):
            new = 0.0
        k = self._side_of(j, state.account.cross_margin)
        sides = list(state.sides)
        sides[k] = self._moved(state.sides[k], k, j, old, new)
        risks = list(state.risks)
        risks[k] = self._risk(sides[k], k)
        comb = self._combined(sides) if k in (EF, EC) else state.comb
        positions = dict(state.positions)
        if new == 0.0:
            positions.pop(j, None)
        else:
            positions[j] = new
        after = self._assemble(sides, risks, comb)
        new_state = _AccountState(state.account, positions, sides, risks, comb, after, state.version + 1)
        return Pending(state.account.account, inst_id, quantity, state.margins, after, new_state, new_account,
                       state.version)

    def commit(self, pending: Pending) -> Row:
        """Apply a prepared trade (fails if the account changed since it was prepared)."""
        current = self._accounts.get(pending.account)
        if pending._new:
            if current is not None:
                raise RuntimeError(f"account {pending.account} was opened since this trade was prepared")
        elif current is None or current.version != pending._version:
            raise RuntimeError(f"account {pending.account} changed since this trade was prepared")
        self._accounts[pending.account] = pending._state
        return pending.after

    def apply(self, account: Account | str, instrument: Instrument | str, quantity: float) -> Row:
        """Change one position and return the account's figures (the fields of :class:`AccountMargins`)."""
        return self.commit(self.prepare(account, instrument, quantity))

    def what_if(self, account: Account | str, instrument: Instrument | str, quantity: float) -> dict[str, Any]:
        """Margin impact of a proposed trade (nothing is applied): see :meth:`Pending.impact`."""
        return self.prepare(account, instrument, quantity).impact()

    # trades with ids (cancellable)

    def prepare_trade(self, trade_id: str, account: Account, instrument: Instrument, quantity: float) -> Pending:
        if trade_id in self._trades:
            raise InputError(f"trade {trade_id} is already applied", field="trade_id")
        return self.prepare(account, instrument, quantity)

    def commit_trade(self, trade_id: str, pending: Pending) -> Row:
        out = self.commit(pending)
        self._trades[trade_id] = (pending.account, pending.instrument, pending.quantity)
        return out

    def prepare_cancel(self, trade_id: str) -> Pending:
        if trade_id not in self._trades:
            raise InputError(f"cannot cancel trade {trade_id}: no such trade", field="trade_id")
        account, inst, qty = self._trades[trade_id]
        return self.prepare(account, inst, -qty)

    def commit_cancel(self, trade_id: str, pending: Pending) -> Row:
        out = self.commit(pending)
        del self._trades[trade_id]
        return out

    def trade(self, trade_id: str, account: Account, instrument: Instrument, quantity: float) -> Row:
        return self.commit_trade(trade_id, self.prepare_trade(trade_id, account, instrument, quantity))

    def cancel(self, trade_id: str) -> Row:
        return self.commit_cancel(trade_id, self.prepare_cancel(trade_id))

    def trade_of(self, trade_id: str) -> tuple[str, str, float] | None:
        return self._trades.get(trade_id)

    # -- market ---------------------------------------------------------------------------

    def set_market(
        self,
        snapshot: MarketSnapshot,
        *,
        params: MarginParams | None = None,
        eligibility: EligibilityRules | None = None,
    ) -> None:
        """A new market snapshot (optionally new model parameters or eligibility lists): rebuild
        the context over the same universe and every account from its positions."""
        ctx = self._ctx
        self._set_context(build_context(snapshot, ctx.master, ctx.universe, params or ctx.params,
                                        eligibility or ctx.eligibility))
        self.rebuild()

    def open_account(self, account: Account) -> None:
        """Declare an account (with no positions yet); a no-op if it is known and agrees."""
        state, new = self._resolve_account(account)
        if new:
            self._accounts[account.account] = state

    def rebuild(self) -> None:
        """Recompute every account from its positions (drops incremental rounding)."""
        for name, state in self._accounts.items():
            self._accounts[name] = replace(self._fresh_state(state.account, state.positions),
                                           version=state.version + 1)

    # -- reading ----------------------------------------------------------------------------

    def margin(self, account: str) -> dict[str, float | bool]:
        """All figures of one account (the fields of :class:`AccountMargins`)."""
        return dict(self._accounts[account].margins)

    def margins(self) -> tuple[list[str], AccountMargins]:
        """``(account names, figures)`` of every account, in the order they were opened."""
        names = list(self._accounts)
        out = AccountMargins.empty(len(names))
        for i, name in enumerate(names):
            row = self._accounts[name].margins
            for f in MARGIN_FIELDS:
                getattr(out, f)[i] = row[f]
        return names, out

    def positions(self, account: str) -> dict[str, float]:
        ids = self._ctx.universe.ids
        return {ids[j]: q for j, q in sorted(self._accounts[account].positions.items())}

    def book(self) -> Book:
        """The positions as a :class:`Book` over the engine's universe (for ``compute_margins``)."""
        names = list(self._accounts)
        holdings = [(i, self._ctx.universe.instruments[j], q)
                    for i, n in enumerate(names) for j, q in sorted(self._accounts[n].positions.items())]
        return build_book([self._accounts[n].account for n in names], holdings, universe=self._ctx.universe)

    def side_pnl(self, account: str) -> dict[str, FloatArray]:
        """The account's scenario P&L vectors per sub-portfolio (FICC scenarios), for inspection."""
        s = self._accounts[account].sides
        return {name: s[k].pnl_f.copy() for k, name in enumerate(SIDE_NAMES)}


def _worst(pnl: FloatArray) -> float:
    return max(-float(pnl.min()), 0.0) if pnl.size else 0.0
