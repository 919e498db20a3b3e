"""Take apart the basis check (validation/basis.py) on given days: the model's unscaled P&L of each
look-back window (the EMIR floor columns) against the check's realised P&L, window by window.

``python tools/basis_check_days.py CONFIG.toml 2019-03-21:NOTE10 2019-06-12:CTD ...`` (CONFIG must set
``[ficc.scenarios] floor = true``; the books as ``python -m xmargin.validation.basis --from 2019-01-02`` sets
them).  One line per book-day: ``F_comb``, ``q99`` and the shortfall; the floor VaR (``k``-th worst of all
``W`` windows); the model's quantile over the windows the check observes (equal to ``q99`` when the two agree
window by window), over those and the proxied ones, and over every window but those replayed with a zero
basis change; how many proxied and zero windows are among the model's ``k`` worst; the largest difference
between the model's and the check's P&L on an observed window.  docs/validation-residual.md, session 6.
"""

from __future__ import annotations

import sys
import warnings
from datetime import date

import numpy as np

from xmargin.config import PAR_YIELDS_FILE, resolve_data_dir
from xmargin.margin.calculator import margins_for_positions
from xmargin.margin.params import load_params
from xmargin.margin.var import tail_rank
from xmargin.market import curve_kernel
from xmargin.market.history import load_par_yields
from xmargin.reference.eligibility import load_eligibility
from xmargin.validation import nearby_index
from xmargin.validation.backtest import EngineSpec, _is_futures, day_context
from xmargin.validation.basis import HORIZON, basis_books, loss_quantile, realised_distribution


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    data_dir = resolve_data_dir(None)
    params = load_params(argv[0])
    if not params.ficc.scenarios.floor:
        raise SystemExit("the configuration must set [ficc.scenarios] floor = true")
    hist = load_par_yields(data_dir / PAR_YIELDS_FILE)
    books: dict[int, tuple] = {}
    print("day book F_comb q99 short | floor VaR k/W | q obs | q obs+proxied (k/n) | q all but zero | "
          "worst k: proxied zero | max |model - check| observed")
    for arg in argv[1:]:
        day_s, name = arg.split(":")
        d = date.fromisoformat(day_s)
        start = max(date(2019, 1, 2), date(d.year, 1, 1)) if d.year == 2019 else date(d.year, 1, 1)
        if d.year not in books:
            books[d.year] = basis_books(data_dir, start)
        accounts, legs = books[d.year]
        spec = EngineSpec(data_dir, params, load_eligibility(), accounts, legs, start, HORIZON, ("ficc", "cme"),
                          "monthly", pnl="actual")
        nearby = [nearby_index(leg.instrument, start, HORIZON) if _is_futures(leg.instrument) else 0 for leg in legs]
        row = int(np.searchsorted(hist.dates, np.datetime64(d, "D")))
        with curve_kernel.compiled(), np.errstate(all="ignore"):
            day = day_context(spec, row, nearby)
            ctx = day.context
            m = margins_for_positions(ctx, day.positions, np.ones(len(accounts), bool))
            adjusted, _, observed = realised_distribution(day)
        fl = ctx.ficc_scenarios.floor_mask
        q = day.positions.toarray()
        a = [x.account for x in accounts].index(name)
        rows = np.flatnonzero(q[a])
        w = q[a, rows]
        model = w @ ctx.ficc_pnl.filled[rows][:, fl]
        check = w @ np.nan_to_num(adjusted[rows])
        ok = observed[rows].all(axis=0)
        res = ctx.residual
        change = res.ficc_changes[res.factors.index("basis:ZN"), fl] if res is not None else np.zeros(len(model))
        zero = (change == 0) & ~ok
        proxied = ~ok & ~zero
        k = tail_rank(len(model), ctx.params.ficc.confidence)
        worst = np.argsort(model)[:k]
        q99, _ = loss_quantile(check, ok, 0.99)
        q_obs, _ = loss_quantile(model, ok, 0.99)
        q_op, n_op = loss_quantile(model, ok | proxied, 0.99)
        q_nz, _ = loss_quantile(model, ~zero, 0.99)
        f = m.ficc_combined[a]
        print(f"{day_s} {name} {f:,.0f} {q99:,.0f} {q99 - f:,.2f} | {-np.sort(model)[k - 1]:,.0f} {k}/{len(model)} | "
              f"{q_obs:,.0f} | {q_op:,.0f} ({tail_rank(n_op, 0.99)}/{n_op}) | {q_nz:,.0f} | "
              f"{int(proxied[worst].sum())} {int(zero[worst].sum())} | {np.abs(model - check)[ok].max():,.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
