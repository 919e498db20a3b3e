"""CME SPAN risk parameters as published in a SPAN file, whatever its format.

One :class:`CmeSpanParameters` holds what the standard SPAN algorithm needs for futures
(:mod:`xmargin.formats.span_cme`), read from a positional PA2 file (:mod:`.pa2`) or a SPAN XML
file (:mod:`.spn_xml`):

* per futures contract, its 16-scenario **risk array**: dollars per contract, a positive value
  is a loss of a long position (CME's sign convention); scenarios 15 and 16 already carry the
  extreme-move cover fraction, as CME publishes them;
* per combined commodity: the products it groups, its **intra-commodity tiers** and tier or
  series spreads (charge in dollars per spread, spread priority), its **spot-month charges**
  (dollars per delta consumed by spreads and per delta left in outrights) and its
  **initial-to-maintenance ratios** by account class (member, hedger, speculator);
* the **inter-commodity spreads**: credit rate (a fraction), legs with delta-per-spread ratio
  and side, formed in priority order.

Left out (futures-only engine): options and their composite deltas beyond 1, scanning tiers
(a combined commodity is scanned as one tier), short option minimum, currency conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from xmargin.reference.cme_codes import PRODUCT_ALIASES

#: Account classes of CME's initial-to-maintenance ratios, and the class of each of our
#: account types.  **Choice**: a customer account is a speculator (non-hedger) account, the
#: conservative reading; CME's published rule: initial = 110% of maintenance for speculators,
#: 100% for hedgers and members.
ACCOUNT_CLASSES = ("member", "hedger", "speculator")
ACCOUNT_CLASS_OF = {"house": "member", "customer": "speculator"}
CME_RULE_RATIOS = {"member": 1.0, "hedger": 1.0, "speculator": 1.1}

@dataclass(frozen=True)
class SpanContract:
    """One futures contract of the file.  ``month`` is YYYYMM; ``delta`` the composite delta
    per contract and ``delta_scaling`` the B-record delta-scaling factor (their product is the
    contract's delta in spread units)."""

    product: str
    month: int
    risk_array: tuple[float, ...]
    exchange: str = ""
    contract_type: str = "FUT"
    delta: float = 1.0
    delta_scaling: float = 1.0
    price: float | None = None
    line: int | None = None

    @property
    def spread_delta(self) -> float:
        return self.delta * self.delta_scaling


@dataclass(frozen=True)
class Tier:
    number: int
    start: int  # YYYYMM
    end: int  # YYYYMM

    def holds(self, month: int) -> bool:
        return self.start <= month <= self.end


@dataclass(frozen=True)
class SpreadLeg:
    """A spread leg: ``key`` is a tier number (tier spreads), a contract month YYYYMM (series
    spreads) or a combined commodity code (inter-commodity spreads)."""

    key: str
    ratio: float
    side: str  # "A" or "B": A legs on one side of the market, B legs on the other


@dataclass(frozen=True)
class IntraSpread:
    priority: int
    rate: float  # dollars per spread
    legs: tuple[SpreadLeg, ...]
    by: str = "tier"  # "tier" or "month"


@dataclass(frozen=True)
class SpotCharge:
    month: int  # YYYYMM of the contract in delivery
    spread_rate: float  # dollars per delta consumed by spreads
    outright_rate: float  # dollars per delta left in outrights


@dataclass(frozen=True)
class CombinedCommodity:
    code: str
    exchange: str = ""
    products: tuple[str, ...] = ()
    intra_tiers: tuple[Tier, ...] = ()
    intra_spreads: tuple[IntraSpread, ...] = ()
    spot_charges: tuple[SpotCharge, ...] = ()
    initial_ratio: dict[str, float] = field(default_factory=lambda: dict(CME_RULE_RATIOS))
    ratio_source: str = "CME rule (file gives none)"

    def tier_of(self, month: int) -> int:
        """The intra-commodity tier holding ``month`` (1 when the file defines no tiers)."""
        if not self.intra_tiers:
            return 1
        for t in self.intra_tiers:
            if t.holds(month):
                return t.number
        return 0


@dataclass(frozen=True)
class InterSpread:
    priority: int
    rate: float  # credit rate, a fraction (0.75 = 75%)
    legs: tuple[SpreadLeg, ...]


@dataclass(frozen=True)
class CmeSpanParameters:
    source: str
    file_format: str  # "pa2" or "xml"
    business_date: date | None
    exchange_complex: str
    commodities: dict[str, CombinedCommodity]
    contracts: tuple[SpanContract, ...]
    inter_spreads: tuple[InterSpread, ...]
    notes: tuple[str, ...] = ()  # what the reader accepted but the algorithm does not use

    def commodity_of_product(self) -> dict[str, str]:
        return {p: cc.code for cc in self.commodities.values() for p in cc.products}

    def find(self, root: str, month: int) -> SpanContract | None:
        """The contract of our ``root`` (by its Globex root or a CME clearing code) for YYYYMM."""
        names = set(PRODUCT_ALIASES.get(root, (root,))) | {root}
        for c in self._by_month().get(month, ()):
            if c.product in names:
                return c
        return None

    def products(self) -> list[str]:
        return sorted({c.product for c in self.contracts})

    def _by_month(self) -> dict[int, list[SpanContract]]:
        cache = self.__dict__.get("_month_index")
        if cache is None:
            cache = {}
            for c in self.contracts:
                cache.setdefault(c.month, []).append(c)
            object.__setattr__(self, "_month_index", cache)
        return cache
