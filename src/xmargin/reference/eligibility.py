"""Which clearinghouse holds an instrument, and whether it may be cross-margined.

FICC clears cash Treasuries and repo; CME clears futures.  Eligibility comes from a data
file (``xmargin/data/eligibility.toml`` by default), so a change in the public lists is a
data change, not a code change.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from xmargin.errors import InputError
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.repo import Repo
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

FICC = "FICC"
CME = "CME"


def clearinghouse(instrument: Instrument) -> str:
    """``"FICC"`` for cash Treasuries and repo, ``"CME"`` for futures."""
    return CME if isinstance(instrument, TreasuryFuture | RateFuture) else FICC


def _cash_kind(instrument: TreasuryBill | TreasuryBond) -> str:
    if isinstance(instrument, TreasuryBill):
        return "bill"
    return instrument.kind  # "note" or "bond" (UST: forms count as notes)


@dataclass(frozen=True)
class EligibilityRules:
    ficc_cash: frozenset[str]
    ficc_repo_collateral: frozenset[str]
    cme_futures: frozenset[str]
    source: str

    def is_eligible(self, instrument: Instrument) -> bool:
        if isinstance(instrument, TreasuryFuture | RateFuture):
            return instrument.root in self.cme_futures
        if isinstance(instrument, Repo):
            return _cash_kind(instrument.collateral) in self.ficc_repo_collateral
        return _cash_kind(instrument) in self.ficc_cash


def load_eligibility(path: str | Path | None = None) -> EligibilityRules:
    """The eligibility lists from ``path`` or the packaged default."""
    if path is None:
        text = resources.files("xmargin").joinpath("data/eligibility.toml").read_text()
        source = "xmargin/data/eligibility.toml"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InputError(f"cannot read eligibility file: {exc}", source=path) from None
        source = str(path)
    try:
        data = tomllib.loads(text)
        return EligibilityRules(
            ficc_cash=frozenset(data["ficc"]["cash"]),
            ficc_repo_collateral=frozenset(data["ficc"]["repo_collateral"]),
            cme_futures=frozenset(data["cme"]["futures"]),
            source=source,
        )
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"malformed eligibility file ({exc!r}); expected [ficc] cash, repo_collateral and [cme] futures", source=source) from None
