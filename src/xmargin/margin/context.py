"""Everything computed once per as-of date and model, shared by every account.

A :class:`MarginContext` holds the two scenario sets (FICC: 3-day, CME: 2-day), the
instrument scenario P&L matrices of the book's universe under each, the calibrated SPAN
parameters and the per-instrument attributes the margin models need (clearinghouse,
eligibility, floor weight, DV01 by maturity bucket, SPAN root).  Building it is the heavy
step; margins for any number of accounts are then cheap array arithmetic on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.config import PAR_YIELDS_FILE
from xmargin.diskcache import (
    cached,
    futures_files_key,
    market_files_key,
    master_files_key,
    text_hash,
)
from xmargin.errors import XMarginError
from xmargin.margin.calibration import calibrate_span
from xmargin.margin.ficc import floor_rate, maturity_bucket
from xmargin.margin.params import CmeParams, MarginParams
from xmargin.margin.span import SpanParameters
from xmargin.market.futures_history import default_futures_path
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.residual_pnl import residual_for_sets, with_residual
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities
from xmargin.pricing.scenario_pnl import InstrumentPnL, instrument_pnl
from xmargin.reference.eligibility import CME, EligibilityRules, clearinghouse, load_eligibility
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument, instrument_id
from xmargin.reference.repo import Repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.historical import ScenarioSet, ScenarioSpec, build_scenarios
from xmargin.scenarios.residual import ResidualParams, ResidualRisk

FloatArray = npt.NDArray[np.float64]


CACHED_UNIVERSE_MIN = 64  # universes smaller than this are priced, not cached on disk (cheap, many)


def snapshot_key(snapshot: MarketSnapshot) -> dict[str, object]:
    """What a snapshot is, for the on-disk cache: its data files' checksums, date and curve."""
    return {"data_dir": str(snapshot.data_dir), "as_of": snapshot.as_of.isoformat(), "tenors": list(snapshot.tenors),
            "par": text_hash(np.asarray(snapshot.par_yields, dtype=np.float64).tobytes().hex()),
            "files": market_files_key(snapshot.data_dir)}


@lru_cache(maxsize=8)
def _scenarios(snapshot: MarketSnapshot, spec: ScenarioSpec) -> ScenarioSet:
    def build() -> ScenarioSet:
        history = load_par_yields(snapshot.data_dir / PAR_YIELDS_FILE)
        return build_scenarios(history, snapshot, spec)

    return cached("scenarios", {"snapshot": snapshot_key(snapshot), "spec": repr(spec)}, build)


def futures_key(snapshot: MarketSnapshot, residual: ResidualParams | None) -> tuple[tuple[str, str], ...]:
    """Checksums of the futures price files behind the residual basis factors (none when they
    are off): part of every cache key of what those factors feed (the rows, the calibration)."""
    if residual is None or not (residual.any and residual.futures_basis):
        return ()
    path = default_futures_path(snapshot.data_dir, residual.futures_history or None)
    return tuple(sorted(futures_files_key(path).items()))


@lru_cache(maxsize=4)
def _span(snapshot: MarketSnapshot, master: SecuritiesMaster, cme: CmeParams, residual: ResidualParams | None = None,
          futures: tuple[tuple[str, str], ...] = ()) -> SpanParameters:
    """The SPAN calibration; ``futures``: :func:`futures_key` of ``residual`` (the calibration's
    one-day P&L carries the basis)."""
    def build() -> SpanParameters:
        history = load_par_yields(snapshot.data_dir / PAR_YIELDS_FILE)
        return calibrate_span(snapshot, master, history, cme, residual)

    return cached("span", {"snapshot": snapshot_key(snapshot), "master": master_files_key(snapshot.data_dir),
                           "cme": repr(cme), "residual": repr(residual), "futures": dict(futures)}, build)


def _years_to_maturity(inst: Instrument, as_of: date) -> float:
    target = inst.collateral if isinstance(inst, Repo) else inst
    maturity = getattr(target, "maturity", None)
    return 0.0 if maturity is None else (maturity - as_of).days / 365.25


@dataclass(frozen=True, eq=False)
class InstrumentAttributes:
    """Per-instrument inputs of the margin models, aligned with the universe rows."""

    is_cme: npt.NDArray[np.bool_]
    eligible: npt.NDArray[np.bool_]
    market_value: FloatArray  # dollars per unit on the as-of curve (gross, collateral for repo)
    floor_weight: FloatArray  # floor dollars per unit of |quantity| (FICC only)
    dv01: FloatArray  # dollars per bp per unit (gain for a 1 bp fall)
    bucket_dv01: FloatArray  # N x B: dv01 placed in its maturity bucket (FICC only)
    span_root: npt.NDArray[np.int64]  # index into SpanParameters.roots, -1 if none
    span_onehot: FloatArray  # N x P


@dataclass(frozen=True, eq=False)
class MarginContext:
    snapshot: MarketSnapshot
    master: SecuritiesMaster
    params: MarginParams
    eligibility: EligibilityRules
    universe: InstrumentUniverse
    ficc_scenarios: ScenarioSet
    cme_scenarios: ScenarioSet
    ficc_pnl: InstrumentPnL
    cme_pnl: InstrumentPnL
    span: SpanParameters
    attributes: InstrumentAttributes
    #: residual factors beyond the Treasury curve, already in ``ficc_pnl``/``cme_pnl``
    residual: ResidualRisk | None = None
    #: CME stand-alone SPAN from a CME parameter file instead of the calibration
    #: (:class:`xmargin.formats.cme_margin.FileSpanModel`); ``None``: the calibration.
    cme_span_model: Any = None

    @property
    def failures(self) -> dict[str, str]:
        return {**self.ficc_pnl.failures, **self.cme_pnl.failures}

    def extended(self, instruments: Iterable[Instrument]) -> MarginContext:
        """This context over its universe plus ``instruments``, pricing only the new rows.

        Every per-instrument figure (scenario P&L, DV01, floor weight, SPAN root) depends on
        its own row only, so the new rows are priced on their own (the scenario sets and the
        SPAN calibration are shared through the caches) and appended; if the caches no longer
        hold this context's objects the whole context is rebuilt instead.
        """
        new = [i for i in instruments if instrument_id(i) not in self.universe._index]
        new = list(InstrumentUniverse.of(new).instruments)
        if not new:
            return self
        return self.with_rows(build_context(self.snapshot, self.master, InstrumentUniverse.of(new), self.params,
                                            self.eligibility), _fallback=new)

    def with_rows(self, small: MarginContext, _fallback: list[Instrument] | None = None) -> MarginContext:
        """This context plus the rows of ``small`` (priced on the same market and model, e.g. in
        another thread) for the instruments this universe does not hold; nothing is priced
        unless ``small`` no longer shares this context's scenario sets and SPAN calibration
        (then the whole context is rebuilt)."""
        keep = [k for k, i in enumerate(small.universe.ids) if i not in self.universe._index]
        if not keep:
            return self
        new = [small.universe.instruments[k] for k in keep]
        if (small.ficc_scenarios is not self.ficc_scenarios or small.cme_scenarios is not self.cme_scenarios
                or small.span is not self.span or small.params != self.params
                or small.eligibility != self.eligibility or small.snapshot is not self.snapshot):
            return build_context(self.snapshot, self.master, self.universe.extended(_fallback or new), self.params,
                                 self.eligibility)
        if not len(self.universe) and len(keep) == len(small.universe):
            return small  # nothing to stack onto: the new context as built (no copy)
        bigger = self.universe.extended(new)
        rows = np.array(keep, dtype=np.int64)

        def stacked(a: InstrumentPnL, b: InstrumentPnL) -> InstrumentPnL:
            return InstrumentPnL(bigger, np.concatenate([a.base_values, b.base_values[rows]]),
                                 np.vstack([a.pnl, b.pnl[rows]]), {**a.failures, **b.failures})

        a, b = self.attributes, small.attributes
        attrs = InstrumentAttributes(**{f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)[rows]])
                                        for f in fields(InstrumentAttributes)})
        residual = self.residual
        if residual is not None and small.residual is not None:
            residual = residual.stacked(small.residual.take(rows))
        return replace(self, universe=bigger, ficc_pnl=stacked(self.ficc_pnl, small.ficc_pnl),
                       cme_pnl=stacked(self.cme_pnl, small.cme_pnl), attributes=attrs, residual=residual)


def instrument_attributes(
    universe: InstrumentUniverse,
    snapshot: MarketSnapshot,
    master: SecuritiesMaster,
    params: MarginParams,
    eligibility: EligibilityRules,
    span: SpanParameters,
    base_values: FloatArray,
) -> InstrumentAttributes:
    n = len(universe)
    insts = universe.instruments
    is_cme = np.array([clearinghouse(i) == CME for i in insts], dtype=bool)
    eligible = np.array([eligibility.is_eligible(i, snapshot.as_of) for i in insts], dtype=bool)
    try:
        dv01, _ = sensitivities(universe, snapshot, master)
    except XMarginError:  # an unpriceable row: fall back to one by one
        dv01 = np.full(n, np.nan)
        for k, inst in enumerate(insts):
            try:
                dv01[k] = sensitivities(InstrumentUniverse.of([inst]), snapshot, master)[0][0]
            except XMarginError:
                dv01[k] = np.nan
    years = np.array([_years_to_maturity(i, snapshot.as_of) for i in insts])
    table = params.ficc.floor_table
    market_value = np.array(
        [base_values[k] if not isinstance(inst, Repo) else np.nan for k, inst in enumerate(insts)]
    )
    repo_rows = [k for k, inst in enumerate(insts) if isinstance(inst, Repo)]
    if repo_rows:  # gross market value of a repo is its collateral's
        collateral = InstrumentUniverse.of([insts[k].collateral for k in repo_rows])  # type: ignore[union-attr]
        from xmargin.pricing.revalue import unit_values

        collateral_values = unit_values(collateral, snapshot, snapshot.curve, master)[:, 0]
        # the collateral universe is de-duplicated: several repos may share one collateral
        market_value[repo_rows] = collateral_values[[collateral.index(insts[k].collateral) for k in repo_rows]]  # type: ignore[union-attr]
    floor_weight = np.where(is_cme, 0.0, np.abs(np.nan_to_num(market_value)) * floor_rate(years, table))
    buckets = maturity_bucket(years, table)
    bucket_dv01 = np.zeros((n, len(table)))
    ficc_rows = np.flatnonzero(~is_cme)
    bucket_dv01[ficc_rows, buckets[ficc_rows]] = np.nan_to_num(dv01[ficc_rows])
    span_root = np.array(
        [span.roots.index(i.root) if isinstance(i, TreasuryFuture | RateFuture) and i.root in span.roots else -1
         for i in insts],
        dtype=np.int64,
    )
    onehot = np.zeros((n, len(span.roots)))
    has = span_root >= 0
    onehot[np.flatnonzero(has), span_root[has]] = 1.0
    return InstrumentAttributes(is_cme, eligible, market_value, floor_weight, dv01, bucket_dv01, span_root, onehot)


def _with_universe(pnl: InstrumentPnL, universe: InstrumentUniverse) -> InstrumentPnL:
    """``pnl`` over the caller's universe object, keeping its filled matrix (no copy)."""
    out = replace(pnl, universe=universe)
    if "filled" in pnl.__dict__:
        out.__dict__["filled"] = pnl.__dict__["filled"]
    return out


def rows_key(snapshot: MarketSnapshot, universe: InstrumentUniverse, params: MarginParams,
             eligibility: EligibilityRules) -> dict[str, object]:
    """What a context's rows are, for the on-disk cache: the market and securities files, the
    futures price history behind the residual basis factors (when they are on), the parameters,
    the eligibility lists and the universe."""
    return {"snapshot": snapshot_key(snapshot), "master": master_files_key(snapshot.data_dir),
            "futures": dict(futures_key(snapshot, params.residual)), "params": repr(params),
            "eligibility": [sorted(eligibility.ficc_cash), sorted(eligibility.ficc_repo_collateral),
                            sorted(eligibility.cme_futures)],
            "universe": text_hash(repr(universe.instruments)), "size": len(universe)}


def build_context(
    snapshot: MarketSnapshot,
    master: SecuritiesMaster,
    universe: InstrumentUniverse,
    params: MarginParams | None = None,
    eligibility: EligibilityRules | None = None,
) -> MarginContext:
    """Scenario sets, instrument P&L matrices, SPAN calibration and attributes for a universe."""
    params = params or MarginParams()
    eligibility = eligibility or load_eligibility()
    ficc_set = _scenarios(snapshot, params.ficc.scenarios)
    cme_set = _scenarios(snapshot, params.cme.var_scenarios)
    residual = params.residual if params.residual.any else None
    span = _span(snapshot, master, params.cme, residual, futures_key(snapshot, residual))

    def rows() -> tuple[InstrumentPnL, InstrumentPnL, InstrumentAttributes, ResidualRisk | None]:
        ficc_pnl = instrument_pnl(universe, snapshot, master, ficc_set.curves)
        cme_pnl = instrument_pnl(universe, snapshot, master, cme_set.curves)
        residual = residual_for_sets(universe, snapshot, master, params.residual, (ficc_set, cme_set))
        if residual is not None:  # residual risk factors on top of the curve rows
            ficc_pnl = with_residual(ficc_pnl, residual.pnl(residual.ficc_changes))
            cme_pnl = with_residual(cme_pnl, residual.pnl(residual.cme_changes))
        for p in (ficc_pnl, cme_pnl):  # the filled matrix rides in the cache entry (shared, not per process)
            p.__dict__["filled"] = p.pnl if not np.isnan(p.pnl).any() else p.filled
        attributes = instrument_attributes(universe, snapshot, master, params, eligibility, span,
                                           ficc_pnl.base_values)
        return ficc_pnl, cme_pnl, attributes, residual

    if len(universe) < CACHED_UNIVERSE_MIN:
        ficc_pnl, cme_pnl, attributes, residual = rows()
    else:  # the rows (curve and residual) come from the disk cache (memory-mapped, shared between processes)
        ficc_pnl, cme_pnl, attributes, residual = cached("context-rows", rows_key(snapshot, universe, params,
                                                                                  eligibility), rows)
        ficc_pnl, cme_pnl = _with_universe(ficc_pnl, universe), _with_universe(cme_pnl, universe)
    return MarginContext(snapshot, master, params, eligibility, universe, ficc_set, cme_set, ficc_pnl, cme_pnl,
                         span, attributes, residual)
