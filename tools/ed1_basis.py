"""How far the front Eurodollar future (ED1, 3-month LIBOR) moves apart from the Treasury bill curve.

Research figures for docs/methodology.md section 15 ("Not modelled"): whether ED1 settlements
could stand in for SOFR futures before SR3 listed (2018-05).  For each day with an ED1 settlement
and a par curve: ``basis = (100 - settle) - f``, ``f`` the bill-curve forward rate (percent) from
the front contract's IMM date (third Wednesday of its month) for 91 days, from par yields of 1M-1Y
interpolated linearly in days (treated as zero rates: a stand-in good to a few bp, which cancel in
3-day changes).  The front is the next IMM contract whose last trading day (taken as the Monday
before the IMM Wednesday) is not past; 3-day changes across a roll are left out.  Prints, per
year, the standard deviation and 1%/99% quantiles of the 3-day basis change and the standard
deviation of the 3-day outright ED1 change, in basis points.

    python tools/ed1_basis.py [DATA_DIR]      (default ../shared/data)
"""

from __future__ import annotations

import csv
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np

TENOR_DAYS = {"1M": 30.4, "2M": 60.8, "3M": 91.3, "4M": 121.7, "6M": 182.6, "1Y": 365.25}


def imm_date(day: date) -> date:
    """The IMM Wednesday of the front quarterly contract still trading on ``day``."""
    for k in range(6):
        m = day.month + k
        y, m = day.year + (m - 1) // 12, (m - 1) % 12 + 1
        if m in (3, 6, 9, 12):
            wed = date(y, m, 15) + timedelta((2 - date(y, m, 15).weekday()) % 7)
            if day <= wed - timedelta(2):
                return wed
    raise ValueError(day)


def forward(par: dict[str, float], t1: float, t2: float) -> float:
    keys = [k for k in TENOR_DAYS if k in par]
    t = np.array([TENOR_DAYS[k] for k in keys])
    r = np.array([par[k] for k in keys])
    r1, r2 = np.interp(t1, t, r), np.interp(t2, t, r)
    return float((r2 * t2 - r1 * t1) / (t2 - t1))


def main(data_dir: Path) -> None:
    ed = {r["date"]: float(r["settle"]) for r in csv.DictReader((data_dir / "futures/quandl_chris/ED1.csv").open())}
    par = {r["date"]: {k: float(v) for k, v in r.items() if k != "date" and v}
           for r in csv.DictReader((data_dir / "yields/par_yield_curve.csv").open())}
    days = sorted(d for d in set(ed) & set(par) if d >= "2004-01-01")
    basis, front, price = [], [], []
    for d in days:
        wed = imm_date(date.fromisoformat(d))
        t1 = max((wed - date.fromisoformat(d)).days, 0)
        basis.append((100.0 - ed[d]) - forward(par[d], t1, t1 + 91.0))
        front.append(wed)
        price.append(ed[d])
    b, p = np.array(basis), np.array(price)
    ok = np.array([front[i] == front[i + 3] for i in range(len(days) - 3)])
    years = np.array([d[:4] for d in days[:-3]])[ok]
    db, dp = 100 * (b[3:] - b[:-3])[ok], 100 * (p[3:] - p[:-3])[ok]
    print("| year | windows | std of 3-day basis change (bp) | 1% | 99% | std of 3-day ED1 change (bp) |")
    print("|---|---:|---:|---:|---:|---:|")
    for y in sorted(set(years)):
        s = years == y
        print(f"| {y} | {s.sum()} | {db[s].std():.1f} | {np.quantile(db[s], 0.01):.1f} | "
              f"{np.quantile(db[s], 0.99):.1f} | {dp[s].std():.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data"))
