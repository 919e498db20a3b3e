"""Which clearinghouse holds an instrument, and whether it may be cross-margined.

FICC clears cash Treasuries and repo; CME clears futures.  Eligibility comes from a data
file (``xmargin/data/eligibility.toml`` by default), so a change in the public lists is a
data change, not a code change.  Every entry of the file names its source.

Rules (``../shared/methodology/sources-2026-12.md``):

* FICC: Treasury notes and bonds, and repo on them (DTCC page, primary), with **more than
  ``min_remaining_years`` (1 year) to maturity** (the 2023 announcement, secondary; read as
  the security's remaining maturity, for repo its collateral's: a choice).  A note that
  comes within one year of maturity leaves the arrangement on its *roll-out date*
  (maturity minus one year) and is margined stand-alone from then on.  TIPS, STRIPS,
  agency and MBS are excluded; bills are not listed.
* CME: the listed futures roots (DTCC page; ZF from CME's FAQ).  Options: not listed.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from xmargin.errors import InputError
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.repo import Repo
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

FICC = "FICC"
CME = "CME"
PACKAGED = "xmargin/data/eligibility.toml"


def clearinghouse(instrument: Instrument) -> str:
    """``"FICC"`` for cash Treasuries and repo, ``"CME"`` for futures."""
    return CME if isinstance(instrument, TreasuryFuture | RateFuture) else FICC


def _cash_kind(instrument: TreasuryBill | TreasuryBond) -> str:
    if isinstance(instrument, TreasuryBill):
        return "bill"
    return instrument.kind  # "note" or "bond" (UST: forms count as notes)


def _add_years(day: date, years: float) -> date:
    """``day`` moved by whole years (29 February -> 28 February); fractional years by days."""
    whole = int(years)
    if whole == years:
        try:
            return day.replace(year=day.year + whole)
        except ValueError:
            return day.replace(year=day.year + whole, day=28)
    from datetime import timedelta

    return day + timedelta(days=round(years * 365.25))


@dataclass(frozen=True)
class EligibilityRules:
    ficc_cash: frozenset[str]
    ficc_repo_collateral: frozenset[str]
    cme_futures: frozenset[str]
    source: str
    #: Years to maturity a FICC note/bond (repo: its collateral) must exceed; 0 = no rule.
    min_remaining_years: float = 0.0
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    sha256: str = field(default="", compare=False)

    def _security(self, instrument: Instrument) -> TreasuryBill | TreasuryBond | None:
        if isinstance(instrument, TreasuryFuture | RateFuture):
            return None
        return instrument.collateral if isinstance(instrument, Repo) else instrument

    def roll_out_date(self, instrument: Instrument) -> date | None:
        """The date a FICC note/bond (repo: its collateral) leaves the arrangement, or None."""
        sec = self._security(instrument)
        if sec is None or self.min_remaining_years <= 0:
            return None
        return _add_years(sec.maturity, -self.min_remaining_years)

    def why(self, instrument: Instrument, as_of: date | None = None) -> tuple[bool, str]:
        """Eligibility on ``as_of`` and the reason, citing the source."""
        if isinstance(instrument, TreasuryFuture | RateFuture):
            if instrument.root in self.cme_futures:
                return True, f"CME {instrument.root} listed ({self.sources.get(instrument.root, self.source)})"
            return False, f"CME {instrument.root} is not on the eligible futures list ({self.source})"
        sec = self._security(instrument)
        assert sec is not None
        kinds = self.ficc_repo_collateral if isinstance(instrument, Repo) else self.ficc_cash
        what = "repo collateral" if isinstance(instrument, Repo) else "security"
        kind = _cash_kind(sec)
        if kind not in kinds:
            return False, f"{what} is a Treasury {kind}: not eligible ({self.sources.get('excluded', self.source)})"
        roll = self.roll_out_date(instrument)
        if as_of is not None and roll is not None and as_of >= roll:
            return False, (f"{what} matures {sec.maturity}: {self.min_remaining_years:g} year(s) or less to "
                           f"maturity, out of the arrangement since {roll} "
                           f"({self.sources.get('min_remaining', self.source)})")
        tail = f"; leaves the arrangement on {roll}" if roll is not None else ""
        return True, f"Treasury {kind} ({self.sources.get('cash', self.source)}){tail}"

    def is_eligible(self, instrument: Instrument, as_of: date | None = None) -> bool:
        """Eligible product; with ``as_of`` also more than the minimum time to maturity."""
        if isinstance(instrument, TreasuryFuture | RateFuture):
            return instrument.root in self.cme_futures
        sec = self._security(instrument)
        assert sec is not None
        kinds = self.ficc_repo_collateral if isinstance(instrument, Repo) else self.ficc_cash
        if _cash_kind(sec) not in kinds:
            return False
        roll = self.roll_out_date(instrument)
        return as_of is None or roll is None or as_of < roll

    def entries(self) -> list[dict[str, str]]:
        """The lists as rows (clearinghouse, product, rule, source) for reports."""
        rows = [{"clearinghouse": FICC, "product": f"cash {k}", "rule": "eligible",
                 "source": self.sources.get("cash", self.source)} for k in sorted(self.ficc_cash)]
        rows += [{"clearinghouse": FICC, "product": f"repo on {k}", "rule": "eligible",
                  "source": self.sources.get("cash", self.source)} for k in sorted(self.ficc_repo_collateral)]
        if self.min_remaining_years > 0:
            rows.append({"clearinghouse": FICC, "product": "notes, bonds, repo collateral",
                         "rule": f"more than {self.min_remaining_years:g} year(s) to maturity",
                         "source": self.sources.get("min_remaining", self.source)})
        rows += [{"clearinghouse": CME, "product": root, "rule": "eligible",
                  "source": self.sources.get(root, self.source)} for root in sorted(self.cme_futures)]
        return rows


def load_eligibility(path: str | Path | None = None) -> EligibilityRules:
    """The eligibility lists from ``path`` or the packaged default."""
    if path is None:
        text = resources.files("xmargin").joinpath("data/eligibility.toml").read_text()
        source = PACKAGED
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InputError(f"cannot read eligibility file: {exc}", source=path) from None
        source = str(path)
    try:
        data: dict[str, Any] = tomllib.loads(text)
        ficc, cme = data["ficc"], data["cme"]
        sources = {k: str(v) for k, v in dict(cme.get("sources", {})).items()}
        for key in ("cash", "excluded", "min_remaining"):
            if f"{key}_source" in ficc:
                sources[key] = str(ficc[f"{key}_source"])
        years = ficc.get("min_remaining_years", 0.0)
        if isinstance(years, bool) or not isinstance(years, int | float) or years < 0:
            raise InputError(f"{years!r} is not a non-negative number of years", source=source,
                             field="ficc.min_remaining_years")
        return EligibilityRules(
            ficc_cash=frozenset(ficc["cash"]),
            ficc_repo_collateral=frozenset(ficc["repo_collateral"]),
            cme_futures=frozenset(cme["futures"]),
            source=source,
            min_remaining_years=float(years),
            sources=sources,
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"malformed eligibility file ({exc!r}); expected [ficc] cash, repo_collateral and [cme] futures", source=source) from None
