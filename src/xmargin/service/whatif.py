"""Margin contexts for what-ifs in instruments the engine does not hold.

The rows of a posted portfolio's instruments come from the engine's context and from
instruments priced for earlier what-ifs (:class:`WhatIfInstruments`, kept least recently used
first out); only instruments seen for the first time are priced, and
:func:`assemble_context` stacks the rows into one context without pricing anything again
(the last such contexts are kept by their instruments, up to ``ASSEMBLED_ROWS`` rows).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from xmargin.margin.context import InstrumentAttributes, MarginContext, build_context
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.pricing.scenario_pnl import InstrumentPnL
from xmargin.scenarios.residual import gather_residual


def assemble_context(template: MarginContext, universe: InstrumentUniverse,
                     sources: list[tuple[MarginContext, int]]) -> MarginContext:
    """A context over ``universe`` whose row ``k`` is row ``sources[k][1]`` of ``sources[k][0]``.

    Every per-instrument figure depends on its own row only (see
    :meth:`MarginContext.extended`), so rows can be taken from any contexts sharing the
    template's scenario sets and SPAN calibration: the result is the context
    :func:`~xmargin.margin.context.build_context` would give for ``universe``, without pricing
    anything again."""
    ids = set(universe.ids)

    def rows(name: str) -> InstrumentPnL:
        parts = [(getattr(src, name), i) for src, i in sources]
        failures: dict[str, str] = {}
        for p, _ in parts:
            failures |= {k: v for k, v in p.failures.items() if k in ids}
        out = InstrumentPnL(universe, np.array([p.base_values[i] for p, i in parts]),
                            np.stack([p.pnl[i] for p, i in parts]), failures)
        # its ``filled`` rows are the sources' (computed once per source, not per what-if)
        vars(out)["filled"] = np.stack([p.filled[i] for p, i in parts])
        return out

    attrs = InstrumentAttributes(**{f: np.stack([getattr(src.attributes, f)[i] for src, i in sources])
                                    for f in InstrumentAttributes.__dataclass_fields__})
    residual = None
    if any(src.residual is not None for src, _ in sources):  # residual factors: the same rows
        residual = gather_residual([(src.residual, i) for src, i in sources if src.residual is not None])
        if residual.loadings.shape[0] != len(sources):
            raise ValueError("what-if rows mix contexts with and without residual factors")
    return replace(template, universe=universe, ficc_pnl=rows("ficc_pnl"), cme_pnl=rows("cme_pnl"),
                   attributes=attrs, residual=residual)


def _same_model(a: MarginContext, b: MarginContext) -> bool:
    return (a.ficc_scenarios is b.ficc_scenarios and a.cme_scenarios is b.cme_scenarios and a.span is b.span
            and a.params == b.params and a.eligibility == b.eligibility and a.snapshot is b.snapshot)


ASSEMBLED_ROWS = 1024  # what-if contexts kept by their instruments: at most this many rows in all (~45 MB)


class WhatIfInstruments:
    """Rows of instruments priced for what-ifs (not traded), at most ``limit`` of them kept."""

    def __init__(self, limit: int, assembled_rows: int = ASSEMBLED_ROWS) -> None:
        self.limit = limit
        self._extra: OrderedDict[str, tuple[MarginContext, int]] = OrderedDict()
        self._lock = threading.Lock()  # pricing threads share the cache (pricing itself runs outside)
        # the last contexts assembled, by their instruments: a desk re-runs one portfolio with
        # other quantities, and stacking the rows again cost about a fifth of such a request
        self._assembled: OrderedDict[tuple[str, ...], MarginContext] = OrderedDict()
        self.assembled_rows = assembled_rows  # rows (instruments) of the kept contexts, at most

    def at_hand(self, base: MarginContext, universe: InstrumentUniverse) -> bool:
        """Whether every instrument of ``universe`` has its rows at hand (the engine's, or
        priced for an earlier what-if on the same model): :meth:`context` then prices nothing."""
        index = base.universe._index
        cache = self._extra
        with self._lock:
            known = self._assembled.get(universe.ids)
            if known is not None and _same_model(known, base):
                return True
            return all(i in index or (i in cache and _same_model(cache[i][0], base)) for i in universe.ids)

    def context(self, base: MarginContext, universe: InstrumentUniverse) -> MarginContext:
        """The context of ``universe``: rows of ``base`` (the engine's context), and of
        instruments priced for earlier what-ifs; only instruments seen for the first time are
        priced.  The same instruments again (in the same order, on the same model): the context
        assembled last time."""
        key = universe.ids
        with self._lock:
            known = self._assembled.get(key)
            if known is not None and _same_model(known, base):
                self._assembled.move_to_end(key)
                return known
        out = self._context(base, universe)
        if _same_model(out, base) and len(key) <= self.assembled_rows:
            with self._lock:
                self._assembled.pop(key, None)
                self._assembled[key] = out
                while sum(len(k) for k in self._assembled) > self.assembled_rows:
                    self._assembled.popitem(last=False)
        return out

    def _context(self, base: MarginContext, universe: InstrumentUniverse) -> MarginContext:
        index = base.universe._index
        cache = self._extra
        with self._lock:
            new = [inst for inst, i in zip(universe.instruments, universe.ids, strict=True)
                   if i not in index and not (i in cache and _same_model(cache[i][0], base))]
        if new:
            priced = build_context(base.snapshot, base.master, InstrumentUniverse.of(new), base.params,
                                   base.eligibility)
            if not _same_model(priced, base):  # the caches let go of this market: price it all afresh
                return build_context(base.snapshot, base.master, universe, base.params, base.eligibility)
            with self._lock:
                for k, i in enumerate(priced.universe.ids):
                    cache[i] = (priced, k)
        sources: list[tuple[MarginContext, int]] = []
        with self._lock:
            for i in universe.ids:
                if i in index:
                    sources.append((base, index[i]))
                else:
                    if i not in cache:  # evicted by another thread meanwhile: price it again
                        return build_context(base.snapshot, base.master, universe, base.params, base.eligibility)
                    cache.move_to_end(i)
                    sources.append(cache[i])
            while len(cache) > self.limit:
                cache.popitem(last=False)
        return assemble_context(base, universe, sources)
