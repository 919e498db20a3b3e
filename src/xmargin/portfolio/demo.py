"""A realistic demo book from real market data (``xmargin demo``).

Several clearing members (dually registered BD-FCMs, common members of FICC and CME), each
with a house account, affiliate accounts and a few hundred end-user customers drawn from
archetypes a risk manager recognises.  Everything is real except who holds what: CUSIPs come
from the securities master (``master.notes_and_bonds(outstanding_on=as_of)``), futures are the
nearest listed contracts, deliverable baskets and cheapest-to-deliver come from the pricing
engine, repo is built with :func:`~xmargin.reference.repo.make_repo` at the as-of SOFR fixing
plus a term spread, and hedge ratios are DV01 ratios from
:func:`~xmargin.pricing.revalue.sensitivities` on the as-of curve.

Accounts (the arrangement as filed, :mod:`xmargin.portfolio.members`).  Every demo member is a
dually registered BD-FCM, a FICC netting member and a CME clearing member (the registrations
are written to ``members.csv``).  An **affiliate** of a member (e.g. its hedge-fund or
asset-management arm; the 2025 amendment) is an account of type ``affiliate`` linked to the
member: margined on its own positions only, never netted with the member's house account or
with customers.  Customers are margined gross: one account each (CFTC Regulation
39.13(g)(8)(i)).  An electing customer keeps its positions in its cross-margining account
(FICC Cross-Margining Customer Account, CME customer cross-margin account), except that a
share ``partial_share`` of them (choice: 20%) keep their SOFR and fed funds futures in their
ordinary accounts, margined stand-alone: those customers get both figures.  Notes and bonds
within one year of maturity are not eligible (:mod:`xmargin.reference.eligibility`).

Archetypes and sizes (``dv01_range``: dollars per bp of the account's main risk leg, drawn
log-uniform; quantities are face dollars in $100,000 lots and whole futures contracts):

=============  =========================================================  ==================
archetype      positions                                                  DV01 $/bp
=============  =========================================================  ==================
basis          repo-financed (80%) or outright long deliverable (CTD 60%  25k - 400k
               of the time), short the contract DV01-neutral (+-3%);
               10% run the reverse basis (reverse repo + short sale, long
               futures)
rv_curve       financed cash long or short hedged with the *neighbouring*  10k - 200k
               futures tenor, plus a DV01-neutral futures curve spread
asset_manager  3-8 cash notes/bonds held outright; 65% hedge 20-80% of     20k - 300k
               the DV01 with short futures, 35% extend duration with
               long futures (10-50%)
directional    futures only: 1-3 Treasury or SOFR/Fed Funds roots, random  2k - 60k
               sign
dealer         cash inventory hedged 80-100% with futures, and a matched   10k - 150k
               repo book (reverse repo in, repo out, different terms)
house          the member's own book: dealer inventory, two basis trades,  1m - 4m
               a matched repo book and a SOFR futures position
affiliate      a basis or a curve book of a member's affiliate             200k - 1m
=============  =========================================================  ==================

Every account draws from its own generator, seeded by ``(seed, member, account)``: the same
configuration always gives the same book, and adding customers does not change the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.errors import InputError, XMarginError
from xmargin.market.snapshot import MarketSnapshot
from xmargin.portfolio.book import Account, Book, build_book
from xmargin.pricing.futures import contract_basket, forward_clean_prices
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities, unit_values
from xmargin.reference.calendar import add_business_days, following
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.repo import Repo, make_repo
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBond

FloatArray = npt.NDArray[np.float64]
Position = tuple[Instrument, float]
Future = TreasuryFuture | RateFuture

#: Listed contracts the demo trades, per root (nearest first; SOFR/Fed Funds contracts already
#: in their reference period are left out by :func:`prepare_market`).
DEMO_CONTRACTS: dict[str, int] = {**{root: 2 for root in TREASURY_FUTURES}, "SR3": 4, "SR1": 3, "ZQ": 3}
#: Repo terms in calendar days (1 = overnight: the next business day) and spread over SOFR, bp.
REPO_TERMS: dict[int, float] = {1: 0.0, 7: 2.0, 30: 4.0, 90: 8.0}
MIN_REMAINING_DAYS = 182  # cash pool: notes and bonds with at least six months left
LOT = 100_000.0  # face dollars


@dataclass(frozen=True)
class ArchetypeSpec:
    name: str
    label: str
    dv01_range: tuple[float, float]  # dollars per bp of the main risk leg


ARCHETYPES: dict[str, ArchetypeSpec] = {a.name: a for a in (
    ArchetypeSpec("basis", "cash-futures basis trader", (25_000.0, 400_000.0)),
    ArchetypeSpec("rv_curve", "relative-value curve fund", (10_000.0, 200_000.0)),
    ArchetypeSpec("asset_manager", "asset manager hedging cash with futures", (20_000.0, 300_000.0)),
    ArchetypeSpec("directional", "directional futures-only account", (2_000.0, 60_000.0)),
    ArchetypeSpec("dealer", "dealer with a repo book", (10_000.0, 150_000.0)),
    ArchetypeSpec("house", "member house account", (1_000_000.0, 4_000_000.0)),
    ArchetypeSpec("affiliate", "affiliate of the member (own account)", (200_000.0, 1_000_000.0)),
)}
CUSTOMER_ARCHETYPES = ("basis", "rv_curve", "asset_manager", "directional", "dealer")
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("basis", 0.25), ("rv_curve", 0.15), ("asset_manager", 0.30), ("directional", 0.20), ("dealer", 0.10),
)


@dataclass(frozen=True)
class DemoConfig:
    """Generator parameters (all exposed as ``xmargin demo`` options)."""

    members: int = 5
    customers_per_member: int = 300
    affiliates_per_member: int = 1
    seed: int = 20260430
    xm_share: float = 0.75  # share of customer and affiliate accounts electing cross-margining
    house_xm: bool = True  # do the members' house accounts elect cross-margining
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX  # customer archetype weights
    repo_haircut: float = 0.02  # cash lent = (1 - haircut) x collateral dirty value
    #: share of electing customers that keep their SOFR / fed funds futures in their ordinary
    #: accounts (choice)
    partial_share: float = 0.2

    def __post_init__(self) -> None:
        mix_ok = (bool(self.mix) and all(n in CUSTOMER_ARCHETYPES and w >= 0 for n, w in self.mix)
                  and sum(w for _, w in self.mix) > 0)
        for name, ok, allowed in (
            ("members", 1 <= self.members <= 99, "an integer in 1-99"),
            ("customers_per_member", 0 <= self.customers_per_member <= 9999, "an integer in 0-9999"),
            ("affiliates_per_member", 0 <= self.affiliates_per_member <= 9, "an integer in 0-9"),
            ("seed", self.seed >= 0, "a non-negative integer"),
            ("xm_share", 0.0 <= self.xm_share <= 1.0, "in [0, 1]"),
            ("repo_haircut", 0.0 <= self.repo_haircut < 0.5, "in [0, 0.5)"),
            ("partial_share", 0.0 <= self.partial_share <= 1.0, "in [0, 1]"),
            ("mix", mix_ok, f"non-negative weights, not all zero, of {list(CUSTOMER_ARCHETYPES)}"),
        ):
            if not ok:
                raise InputError(f"{name} must be {allowed}, got {getattr(self, name)!r}",
                                 source="demo configuration", field=name)

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members, "customers_per_member": self.customers_per_member,
                "affiliates_per_member": self.affiliates_per_member, "seed": self.seed,
                "xm_share": self.xm_share, "house_xm": self.house_xm, "mix": dict(self.mix),
                "repo_haircut": self.repo_haircut, "partial_share": self.partial_share,
                "repo_terms_spread_bp": dict(REPO_TERMS),
                "dv01_ranges": {a.name: list(a.dv01_range) for a in ARCHETYPES.values()}}


def demo_as_of(master: SecuritiesMaster, curve_dates: npt.NDArray[np.datetime64]) -> date:
    """Default demo date: the last curve on or before the master's last original issue date.

    The securities master is built from auction results that stop at a date (2024-08 in the
    shared data); after it, new issues and the futures baskets they would join are missing,
    so a later as-of date would trade an incomplete market.  ``curve_dates``: the par curve
    history's dates (ascending).
    """
    last_issue = max(r.issue_date for r in master.records.values())
    i = int(np.searchsorted(curve_dates, np.datetime64(last_issue, "D"), side="right")) - 1
    if i < 0:
        raise InputError(f"no par curve on or before the securities master's last issue date {last_issue}")
    return curve_dates[i].astype(date)  # type: ignore[no-any-return]


@dataclass(eq=False)
class DemoMarket:
    """What the generator trades on one date: cash pool, futures, baskets, repo terms, DV01s."""

    snapshot: MarketSnapshot
    bonds: tuple[TreasuryBond, ...]  # cash pool, by maturity
    bond_years: FloatArray  # years to maturity
    bond_dv01: FloatArray  # dollars per bp per $1 face
    bond_dirty: FloatArray  # per 100 face
    futures: dict[str, tuple[Future, ...]]  # priceable contracts by root, nearest first
    future_dv01: dict[str, float]  # dollars per bp per contract, by symbol
    basis_bonds: dict[str, tuple[int, ...]]  # Treasury contract symbol -> pool rows, CTD first
    root_years: dict[str, float]  # Treasury root -> years to maturity of its front CTD
    repo_pool: tuple[int, ...]  # pool rows used as repo collateral
    sofr_pct: float
    repos: dict[tuple[int, int], tuple[Repo, float]]  # (pool row, term days) -> (repo, DV01 per $1 face)
    skipped: dict[str, str]  # contracts left out (cannot be priced on the date) -> why

    @property
    def treasury_roots(self) -> list[str]:
        """Treasury roots with a deliverable basket, shortest first."""
        return sorted(self.root_years, key=lambda r: self.root_years[r])

    def repo(self, row: int, term_days: int) -> tuple[Repo, float]:
        """The repo on pool bond ``row`` (a ``repo_pool`` row) for ``term_days``, and its DV01 in
        dollars per bp per $1 of collateral face (the bond's less the cash leg's)."""
        return self.repos[(row, term_days)]


def _repo_terms(snapshot: MarketSnapshot, master: SecuritiesMaster, bonds: Sequence[TreasuryBond],
                dirty: FloatArray, rows: Sequence[int], sofr_pct: float,
                haircut: float) -> dict[tuple[int, int], tuple[Repo, float]]:
    """Repos starting on the as-of date on each pool row, for every term, with their DV01."""
    as_of = snapshot.as_of
    made: dict[tuple[int, int], Repo] = {}
    for row in rows:
        for term, spread_bp in REPO_TERMS.items():
            end = add_business_days(as_of, 1) if term == 1 else following(as_of + timedelta(days=term))
            made[(row, term)] = make_repo(bonds[row], start=as_of, end=end, face=100.0,
                                          cash_amount=round(float(dirty[row]) * (1.0 - haircut), 4),
                                          rate_pct=round(sofr_pct + spread_bp / 100.0, 4), as_of=as_of,
                                          source="demo generator")
    dv01, _ = sensitivities(InstrumentUniverse.of(list(made.values())), snapshot, master)
    return {key: (repo, float(d)) for (key, repo), d in zip(made.items(), dv01, strict=True)}


def prepare_market(snapshot: MarketSnapshot, master: SecuritiesMaster, contracts: Sequence[Future],
                   *, haircut: float = 0.02) -> DemoMarket:
    """The demo's tradeable market on the snapshot's date (contracts that cannot be priced,
    e.g. with no deliverable in the master, are left out)."""
    as_of = snapshot.as_of
    records = [r for r in master.notes_and_bonds(outstanding_on=as_of)
               if isinstance(r.definition, TreasuryBond) and (r.maturity - as_of).days >= MIN_REMAINING_DAYS]
    bonds = tuple(r.definition for r in records if isinstance(r.definition, TreasuryBond))
    row_of = {b.identifier: k for k, b in enumerate(bonds)}
    futures: dict[str, list[Future]] = {}
    basis: dict[str, tuple[int, ...]] = {}
    skipped: dict[str, str] = {}
    for c in contracts:
        if isinstance(c, RateFuture) and c.reference_start <= as_of:
            continue  # in its reference period: mostly fixed already, little rate risk left
        try:
            sensitivities(InstrumentUniverse.of([c]), snapshot, master)
            if isinstance(c, TreasuryFuture):
                basket = [d for d in contract_basket(c, master, as_of) if d.identifier in row_of]
                cheap = forward_clean_prices(basket, c.last_delivery_day, snapshot.curve)[:, 0]
                cheap = cheap / np.array([d.conversion_factor for d in basket])
                basis[c.symbol] = tuple(row_of[basket[k].identifier] for k in np.argsort(cheap, kind="stable")[:5])
        except (XMarginError, ValueError) as exc:
            skipped[c.symbol] = str(exc)
            continue
        futures.setdefault(c.root, []).append(c)
    if not bonds or not basis:
        raise InputError(f"no tradeable Treasury market on {as_of}: the securities master has no outstanding "
                         "notes/bonds or no futures contract with a deliverable basket", field="as_of")
    universe = InstrumentUniverse.of([*bonds, *(c for cs in futures.values() for c in cs)])
    dv01, _ = sensitivities(universe, snapshot, master)
    dirty = unit_values(InstrumentUniverse.of(bonds), snapshot, snapshot.curve, master)[:, 0] * 100.0
    years = np.array([(b.maturity - as_of).days / 365.25 for b in bonds])
    fronts = {root: cs[0].symbol for root, cs in futures.items() if cs[0].symbol in basis}
    recent = sorted(range(len(bonds)), key=lambda k: (records[k].issue_date, bonds[k].identifier))[-20:]
    repo_pool = sorted({k for rows in basis.values() for k in rows} | set(recent))
    if snapshot.sofr is not None:
        sofr = snapshot.sofr.on_or_before(as_of)[1]
    else:  # no SOFR file: the shortest published par yield stands in
        sofr = float(snapshot.par_yields[0] * 100.0)
    return DemoMarket(
        snapshot, bonds, years, dv01[: len(bonds)], dirty,
        {r: tuple(cs) for r, cs in futures.items()},
        {universe.ids[k]: float(dv01[k]) for k in range(len(bonds), len(universe))},
        basis, {root: float(years[basis[sym][0]]) for root, sym in fronts.items()},
        tuple(repo_pool), sofr, _repo_terms(snapshot, master, bonds, dirty, repo_pool, sofr, haircut), skipped)


# --- sizing helpers ---------------------------------------------------------------------------

def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _face(dv01: float, dv01_per_face: float) -> float:
    """Face dollars (whole $100k lots, at least one) carrying ``dv01`` dollars per bp."""
    return max(round(abs(dv01) / dv01_per_face / LOT), 1) * LOT * float(np.sign(dv01) or 1.0)


def _contracts(dv01: float, dv01_per_contract: float) -> float:
    """Whole contracts (at least one) carrying ``dv01`` dollars per bp (signed)."""
    return float(max(round(abs(dv01) / abs(dv01_per_contract)), 1) * (np.sign(dv01) or 1.0))


def _future(m: DemoMarket, rng: np.random.Generator, root: str) -> Future:
    listed = m.futures[root]
    return listed[0] if len(listed) == 1 or rng.random() < 0.7 else listed[1]


def _hedge(m: DemoMarket, contract: Future, dv01: float) -> Position:
    """Futures carrying ``dv01`` dollars per bp (sign included): the DV01 hedge ratio."""
    return contract, _contracts(dv01, m.future_dv01[contract.symbol])


def _nearest_root(m: DemoMarket, years: float) -> str:
    return min(m.treasury_roots, key=lambda r: abs(m.root_years[r] - years))


def _cash(m: DemoMarket, row: int, dv01: float, rng: np.random.Generator, *,
          financed: bool) -> tuple[Position, float]:
    """A cash position carrying about ``dv01`` (signed) in pool bond ``row``, and its exact DV01.

    Financed positions are repo'd (long: a repo, positive) or reversed in and sold short
    (short: a reverse repo, negative); their DV01 is the repo's (bond less cash leg).
    """
    face = _face(dv01, float(m.bond_dv01[row]))
    if not financed:
        return (m.bonds[row], face), face * float(m.bond_dv01[row])
    repo, unit = m.repo(row, int(rng.choice(list(REPO_TERMS))))
    return (repo, face), face * unit


# --- archetypes --------------------------------------------------------------------------------

def basis_trade(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    roots = [r for r in m.treasury_roots if r in m.futures]
    contract = _future(m, rng, str(rng.choice(roots)))
    rows = m.basis_bonds.get(contract.symbol) or m.basis_bonds[m.futures[contract.root][0].symbol]
    row = rows[0] if rng.random() < 0.6 else int(rng.choice(rows))
    sign = -1.0 if rng.random() < 0.1 else 1.0
    cash, risk = _cash(m, row, sign * dv01, rng, financed=rng.random() < 0.8 or sign < 0)
    return [cash, _hedge(m, contract, -risk * rng.uniform(0.97, 1.03))]


def rv_curve(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    row = int(rng.choice(m.repo_pool))
    roots = m.treasury_roots
    k = roots.index(_nearest_root(m, float(m.bond_years[row])))
    neighbours = [roots[j] for j in (k - 1, k + 1) if 0 <= j < len(roots)] or [roots[k]]
    neighbour = str(rng.choice(neighbours))
    leg = dv01 * rng.uniform(0.5, 1.0) * (1.0 if rng.random() < 0.5 else -1.0)
    cash, risk = _cash(m, row, leg, rng, financed=True)
    out = [cash, _hedge(m, _future(m, rng, neighbour), -risk)]
    if len(roots) < 2:
        return out
    a, b = sorted(rng.choice(len(roots), size=2, replace=False))
    spread = dv01 * rng.uniform(0.3, 0.8) * (1.0 if rng.random() < 0.5 else -1.0)
    out += [_hedge(m, _future(m, rng, roots[a]), spread), _hedge(m, _future(m, rng, roots[b]), -spread)]
    return out


def asset_manager(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    rows = rng.choice(len(m.bonds), size=int(rng.integers(3, 9)), replace=False)
    weights = rng.dirichlet(np.ones(len(rows)))
    out: list[Position] = [_cash(m, int(row), dv01 * float(w), rng, financed=False)[0]
                           for row, w in zip(rows, weights, strict=True)]
    root = _nearest_root(m, float(np.dot(weights, m.bond_years[rows])))
    if rng.random() < 0.65:  # hedge part of the duration with short futures
        out.append(_hedge(m, _future(m, rng, root), -dv01 * rng.uniform(0.2, 0.8)))
    else:  # duration extension: long futures, no offset
        out.append(_hedge(m, _future(m, rng, root), dv01 * rng.uniform(0.1, 0.5)))
    return out


def directional(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    roots = sorted(m.futures)
    picks = rng.choice(len(roots), size=int(rng.integers(1, 4)), replace=False)
    weights = rng.dirichlet(np.ones(len(picks)))
    out: list[Position] = []
    for p, w in zip(picks, weights, strict=True):
        contract = m.futures[roots[int(p)]][int(rng.integers(len(m.futures[roots[int(p)]])))]
        out.append(_hedge(m, contract, dv01 * float(w) * (1.0 if rng.random() < 0.5 else -1.0)))
    return out


def matched_repo_book(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    """Reverse repo in and repo out the same collateral, different terms: term risk only."""
    out: list[Position] = []
    terms = list(REPO_TERMS)
    for row in rng.choice(m.repo_pool, size=int(rng.integers(2, 6)), replace=False):
        face = _face(dv01 * rng.uniform(0.5, 2.0), float(m.bond_dv01[int(row)]))
        t_in, t_out = rng.choice(terms, size=2, replace=False)
        out += [(m.repo(int(row), int(t_in))[0], -face), (m.repo(int(row), int(t_out))[0], face)]
    return out


def dealer(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    rows = rng.choice(len(m.bonds), size=int(rng.integers(2, 5)), replace=False)
    out: list[Position] = []
    for row in rows:
        cash, risk = _cash(m, int(row), dv01 / len(rows), rng, financed=False)
        root = _nearest_root(m, float(m.bond_years[int(row)]))
        out += [cash, _hedge(m, _future(m, rng, root), -risk * rng.uniform(0.8, 1.0))]
    return out + matched_repo_book(m, rng, dv01)


def house(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    out = dealer(m, rng, dv01 * 0.4)
    out += basis_trade(m, rng, dv01 * 0.3) + basis_trade(m, rng, dv01 * 0.3)
    if "SR3" in m.futures:
        out.append(_hedge(m, m.futures["SR3"][-1], dv01 * 0.05 * (1.0 if rng.random() < 0.5 else -1.0)))
    return out


def affiliate(m: DemoMarket, rng: np.random.Generator, dv01: float) -> list[Position]:
    return basis_trade(m, rng, dv01) if rng.random() < 0.5 else rv_curve(m, rng, dv01)


BUILDERS: dict[str, Callable[[DemoMarket, np.random.Generator, float], list[Position]]] = {
    "basis": basis_trade, "rv_curve": rv_curve, "asset_manager": asset_manager, "directional": directional,
    "dealer": dealer, "house": house, "affiliate": affiliate,
}


# --- the book ----------------------------------------------------------------------------------

def _account(config: DemoConfig, m: DemoMarket, ids: tuple[int, int, int], name: str, member_id: str,
             kind: str, holdings: list[tuple[int, Instrument, float]], elected: list[bool]) -> Account:
    """One account: its own generator draws the archetype (customers), election and positions
    (and, drawn last so the rest of the book does not move, which stay out of the
    cross-margining account)."""
    rng = np.random.default_rng([config.seed, *ids[:2]])
    if kind == "customer":
        names = [n for n, _ in config.mix]
        weights = np.array([w for _, w in config.mix], dtype=float)
        archetype = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    else:
        archetype = "house" if ids[1] == 0 else "affiliate"
    xm = config.house_xm if archetype == "house" else bool(rng.random() < config.xm_share)
    lo, hi = ARCHETYPES[archetype].dv01_range
    positions = [(inst, qty) for inst, qty in BUILDERS[archetype](m, rng, _log_uniform(rng, lo, hi)) if qty != 0]
    partial = kind == "customer" and xm and bool(rng.random() < config.partial_share)
    for inst, qty in positions:
        holdings.append((ids[2], inst, qty))
        elected.append(xm and not (partial and isinstance(inst, RateFuture)))
    return Account(name, member_id, kind, xm, archetype)


def generate_book(market: DemoMarket, config: DemoConfig,
                  progress: Callable[[int, int], None] | None = None) -> Book:
    """The demo book (deterministic for a configuration; see the module docstring).

    Member ``CMnn`` has accounts ``CMnn-HOUSE``, ``CMnn-AFFa`` (affiliates) and ``CMnn-Ccccc``
    (customers).
    """
    accounts: list[Account] = []
    holdings: list[tuple[int, Instrument, float]] = []
    elected: list[bool] = []
    for mem in range(1, config.members + 1):
        member_id = f"CM{mem:02d}"
        plan = [(0, f"{member_id}-HOUSE", "house")]
        plan += [(a, f"{member_id}-AFF{a}", "affiliate") for a in range(1, config.affiliates_per_member + 1)]
        plan += [(100 + c, f"{member_id}-C{c:04d}", "customer") for c in range(1, config.customers_per_member + 1)]
        for k, name, kind in plan:
            accounts.append(_account(config, market, (mem, k, len(accounts)), name, member_id, kind, holdings,
                                     elected))
        if progress is not None:
            progress(mem, config.members)
    return build_book(accounts, holdings, source=f"xmargin demo (seed {config.seed}, as of {market.snapshot.as_of})",
                      elected=elected)
