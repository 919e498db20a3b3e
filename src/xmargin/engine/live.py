"""The live margin engine: margins kept current trade by trade.

The engine holds the instrument scenario P&L matrices of its universe (a
:class:`~xmargin.margin.context.MarginContext`) and, per account, the running sums of its four
sub-portfolios (E-FICC, E-CME, R-FICC, R-CME) and the margin figures derived from them: see
:mod:`xmargin.engine.account` for the state and the update formulas.  A trade changes one
position, so one sub-portfolio: its vectors move by ``quantity x`` one row of the P&L
matrices, its figures and (for E) the combined VaRs are recomputed and the account's figures
are reassembled.  Nothing else is touched.

A trade in an instrument outside the universe prices just the new rows
(:func:`extend_context`) and goes on; a new market snapshot (e.g. an intraday curve,
:func:`intraday_snapshot`) rebuilds the context and every account from its positions.

**Positions that end.**  When the market moves to a date on or after a position's end
(:func:`~xmargin.reference.lookup.position_end`: a security's maturity, a repo's end date, a
future's last delivery or final settlement), the position leaves its account on that roll and
is listed in ``LiveEngine.ended`` (:class:`EndedPosition`); its trades can no longer be
cancelled.  The rule follows from the positions and the market date alone, so a replay of the
ledger drops the same positions.  Before this rule the account kept a position nothing could
price and every figure was NaN (``computable: false``) until the position was traded away.
A trade in an instrument that has ended is refused (:class:`~xmargin.errors.ExpiredContractError`).

``what_if`` gives the margin impact of a proposed trade without applying it;
``prepare`` / ``commit`` split ``apply`` so a caller (the ledger) can make the trade durable
between the two.

Cost per trade: one or two vector updates of length ``S`` and at most three VaRs (order
statistics of ``S`` values) plus SPAN on one row, in compiled loops (:mod:`xmargin.engine.kernels`):
about 50 us a what-if at 2,500+ scenarios on a loaded 2-core machine (``benchmarks/bench_live.py``).
A latency-sensitive service should call ``gc.freeze()`` once its reference data is loaded, so
that Python's full collections do not walk it mid-trade.
The engine is not thread-safe: one writer at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.engine.account import (
    HEADLINE,
    MARGIN_FIELDS,
    SIDE_NAMES,
    AccountState,
    Arithmetic,
    FloatArray,
    Row,
)
from xmargin.errors import ExpiredContractError, InputError
from xmargin.margin.calculator import AccountMargins
from xmargin.margin.context import MarginContext, build_context
from xmargin.margin.params import MarginParams
from xmargin.market.snapshot import MarketSnapshot
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.lookup import Instrument, instrument_id, position_end

__all__ = ["HEADLINE", "MARGIN_FIELDS", "SIDE_NAMES", "EndedPosition", "LiveEngine", "Pending", "extend_context",
           "intraday_snapshot"]


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



@dataclass(frozen=True)
class EndedPosition:
    """A position that left its account on a market roll: ``quantity`` (face dollars, contracts or
    repo face) of ``instrument``, which ended on ``ended`` (module docstring)."""

    account: str
    instrument: str
    quantity: float
    ended: date


@dataclass(frozen=True)
class Pending:
    """A trade evaluated against an account's state, not yet applied (see ``LiveEngine.prepare``)."""

    account: str
    instrument: str
    quantity: float
    before: Row
    after: Row
    _state: AccountState
    _new: bool
    _version: int

    def impact(self) -> dict[str, Any]:
        """Headline figures before and after and their change (``after - before``)."""
        return impact_of(self.account, self.instrument, self.quantity, self.before, self.after)


def impact_of(account: str, instrument: str, quantity: float, before: Row, after: Row) -> dict[str, Any]:
    """The :data:`HEADLINE` figures of ``before`` and ``after`` (dollars; factors as fractions) and
    their change ``after - before``."""
    return {
        "account": account,
        "instrument": instrument,
        "quantity": quantity,
        "before": {k: before[k] for k in HEADLINE},
        "after": {k: after[k] for k in HEADLINE},
        "change": {k: after[k] - before[k] for k in HEADLINE},
    }


class LiveEngine:
    """Margins of every account, updated trade by trade (see the module docstring)."""

    def __init__(self, context: MarginContext) -> None:
        self._accounts: dict[str, AccountState] = {}
        self._trades: dict[str, tuple[str, str, float]] = {}  # trade id -> account, instrument id, quantity
        self._end_of: dict[str, date] = {}  # instrument id -> position_end, memoised for the hot path
        self._ended_ids: dict[str, date] = {}  # instrument id -> end date, of positions dropped on a roll
        self.ended: list[EndedPosition] = []  # the positions the last set_market dropped
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
            engine._accounts[acc.account] = engine._k.fresh_state(acc, pos)
        return engine

    def _set_context(self, context: MarginContext) -> None:
        # one attribute, swapped whole: a reader in another thread sees the old pair or the new one
        self._pair = (context, Arithmetic(context))

    @property
    def _ctx(self) -> MarginContext:
        return self._pair[0]

    @property
    def _k(self) -> Arithmetic:
        return self._pair[1]

    def _grow(self, instruments: Sequence[Instrument]) -> None:
        ctx = extend_context(self._ctx, instruments)
        if ctx is not self._ctx:
            if ctx.ficc_scenarios is not self._ctx.ficc_scenarios or ctx.span is not self._ctx.span:
                raise RuntimeError("extending the universe changed the scenario sets")  # pragma: no cover
            self._set_context(ctx)

    def add_instruments(self, instruments: Sequence[Instrument]) -> None:
        """Price ``instruments`` into the universe now (one extension instead of one per trade)."""
        self._grow(instruments)

    def add_priced(self, rows: MarginContext) -> None:
        """Add the rows of a context priced elsewhere (e.g. outside a lock: :func:`price_rows`) for
        the instruments the universe does not hold yet; nothing is priced here."""
        ctx = self._ctx.with_rows(rows)
        if ctx is not self._ctx:
            self._set_context(ctx)

    @property
    def context(self) -> MarginContext:
        return self._ctx

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def account(self, name: str) -> Account:
        return self._accounts[name].account

    # -- trades -------------------------------------------------------------------------

    def _resolve_account(self, account: Account | str, kern: Arithmetic | None = None) -> tuple[AccountState, bool]:
        if isinstance(account, str):
            state = self._accounts.get(account)
            if state is None:
                raise InputError(f"unknown account {account!r}: its first trade must give member, type and "
                                 "cross-margin election", field="account")
            return state, False
        state = self._accounts.get(account.account)
        if state is None:
            return (kern or self._k).fresh_state(account, {}), True
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
        kern, state, inst_id, new_account, j, new, sides, risks, comb = self._change(account, instrument, quantity)
        positions = dict(state.positions)
        if new == 0.0:
            positions.pop(j, None)
        else:
            positions[j] = new
        after = kern.assemble(sides, risks, comb)
        new_state = AccountState(state.account, positions, sides, risks, comb, after, state.version + 1)
        return Pending(state.account.account, inst_id, quantity, state.margins, after, new_state, new_account,
                       state.version)

    def what_if_headline(self, account: Account | str, instrument: Instrument | str,
                         quantity: float) -> tuple[Row, Row]:
        """The account's figures before (all of them) and the :data:`HEADLINE` figures after a
        proposed trade, nothing applied: :meth:`prepare`'s arithmetic, the same figures, without
        what a trade what-if does not report (the stressed losses, the components)."""
        kern, state, _, _, _, _, sides, risks, comb = self._change(account, instrument, quantity)
        return state.margins, kern.assemble(sides, risks, comb, headline_only=True)

    def _change(self, account: Account | str, instrument: Instrument | str, quantity: float) -> tuple[Any, ...]:
        """The checks and the arithmetic of a position change: ``(arithmetic, account state,
        instrument id, new account?, instrument index, new position, sides, risks, combined)``."""
        if not math.isfinite(quantity):  # (np.isfinite on a scalar: ~1 us more)
            raise InputError(f"quantity {quantity} is not finite", field="quantity")
        ctx, kern = self._pair
        if isinstance(instrument, str):
            j = ctx.universe._index.get(instrument)
            if j is None:
                raise InputError(f"instrument {instrument!r} is not in the engine's universe", field="instrument")
            inst_id = instrument
        else:
            inst_id = instrument_id(instrument)
            if inst_id not in ctx.universe._index:
                self._grow([instrument])
                ctx, kern = self._pair
            j = ctx.universe.index(inst_id)
        end = self._end_of.get(inst_id)
        if end is None:  # an instrument's end never changes: computed once (a few microseconds)
            end = self._end_of[inst_id] = position_end(ctx.universe.instruments[j])
        if end <= ctx.snapshot.as_of:
            raise ExpiredContractError(f"{inst_id} ended on {end}, on or before the market date {ctx.snapshot.as_of}: "
                                       "no position can be taken or changed", field="instrument")
        state, new_account = self._resolve_account(account, kern)
        old = state.positions.get(j, 0.0)
        new = old + quantity
        if abs(new) <= 1e-12 * max(abs(old), abs(quantity)):
            new = 0.0
        k = kern.side_of(j, state.account.cross_margin)
        sides, risks, comb = kern.change(state.sides, state.risks, state.comb, k, j, old, new)
        return kern, state, inst_id, new_account, j, new, sides, risks, comb

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
        """Margin impact of a proposed trade (nothing is applied): :meth:`Pending.impact` of
        :meth:`prepare`, computed as :meth:`what_if_headline` does (the same arithmetic, without the
        figures the impact does not report, and without building the new account state)."""
        kern, state, inst_id, _, _, _, sides, risks, comb = self._change(account, instrument, quantity)
        after = kern.assemble(sides, risks, comb, headline_only=True)
        return impact_of(state.account.account, inst_id, quantity, state.margins, after)

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
        if inst in self._ended_ids:
            raise InputError(f"cannot cancel trade {trade_id}: {inst} ended on {self._ended_ids[inst]} and the "
                             "position left the account on that market roll", field="trade_id")
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
        self.ended = self._drop_ended(snapshot.as_of)
        self.rebuild()

    def _drop_ended(self, as_of: date) -> list[EndedPosition]:
        """Remove the positions whose instrument ended on or before ``as_of`` (module docstring)."""
        universe = self._ctx.universe
        out: list[EndedPosition] = []
        for name, state in self._accounts.items():
            gone = {j: end for j in state.positions if (end := position_end(universe.instruments[j])) <= as_of}
            if not gone:
                continue
            out += [EndedPosition(name, universe.ids[j], state.positions[j], end) for j, end in sorted(gone.items())]
            self._accounts[name] = replace(state, positions={j: q for j, q in state.positions.items() if j not in gone})
        self._ended_ids.update({p.instrument: p.ended for p in out})
        return out

    def open_account(self, account: Account) -> None:
        """Declare an account (with no positions yet); a no-op if it is known and agrees."""
        state, new = self._resolve_account(account)
        if new:
            self._accounts[account.account] = state

    def rebuild(self) -> None:
        """Recompute every account from its positions (drops incremental rounding)."""
        for name, state in self._accounts.items():
            self._accounts[name] = replace(self._k.fresh_state(state.account, state.positions),
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


