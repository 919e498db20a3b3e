"""Request and response models of the HTTP service (Pydantic; they make the OpenAPI document).

Inputs forbid unknown fields and bound every string, list and number, so a schema violation
is answered 422 naming the field before anything else runs.  The domain checks that follow
(instrument identifiers, repo terms, whole futures contracts, account consistency) are the
ones of the portfolio and trade file contracts (:mod:`xmargin.portfolio.io`,
:mod:`xmargin.engine.trades`) and answer 422 naming the field too.

Money in dollars, factors as fractions, ``savings_pct`` in percent; a figure that cannot be
computed (an unpriceable position) is ``null``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    Strict,
    StrictBool,
    StringConstraints,
    field_validator,
)

from xmargin.portfolio.fields import MAX_QUANTITY

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/@#+-]*$")]
InstrumentText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
TradeId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#+-]*$")]
Archetype = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]
# Strict numbers and booleans: JSON true is not 1, "5" is not 5, 1 is not true (an int is a number).
Money = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
Quantity = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
RatePct = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-50.0, le=100.0)]
AccountType = Literal["house", "customer", "affiliate"]
MAX_POSITIONS = 5000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- portfolio


class _RepoTermsIn(_In):
    """The repo fields of a position or trade: all four together make it a repo on the named
    collateral (``xmargin.portfolio.fields.position_instrument``)."""

    repo_start: date | None = None
    repo_end: date | None = None
    repo_rate: RatePct | None = Field(default=None, description="percent")
    cash_amount: Money | None = None


class PositionIn(_RepoTermsIn):
    """One position of the portfolio file contract (``xmargin.portfolio.io``)."""

    account: Name
    member: Name
    account_type: AccountType
    instrument: InstrumentText = Field(description="CUSIP, UST:<coupon>:<maturity> or a futures symbol")
    quantity: Quantity = Field(description="face dollars (cash, repo collateral; repo > 0, reverse repo < 0) "
                                           "or contracts (futures)")
    cross_margin: StrictBool = True
    archetype: Archetype = ""


class AccountPositionIn(_RepoTermsIn):
    """A position inside an account (the account's fields may be repeated, they must agree)."""

    instrument: InstrumentText
    quantity: Quantity
    account: Name | None = None
    member: Name | None = None
    account_type: AccountType | None = None
    cross_margin: StrictBool | None = None
    archetype: Archetype | None = None


class AccountIn(_In):
    account: Name
    member: Name
    account_type: AccountType
    cross_margin: StrictBool = True
    archetype: Archetype = ""
    positions: list[AccountPositionIn] = Field(default_factory=list, max_length=MAX_POSITIONS)


class AccountsPortfolioIn(_In):
    accounts: list[AccountIn] = Field(min_length=1, max_length=MAX_POSITIONS)


EXAMPLE_PORTFOLIO = [  # instruments listed on the demo's date, 2024-08-15
    {"account": "FUND-1", "member": "CM01", "account_type": "customer", "instrument": "91282CKQ3",
     "quantity": 50_000_000},
    {"account": "FUND-1", "member": "CM01", "account_type": "customer", "instrument": "ZNZ24", "quantity": -450},
    {"account": "FUND-2", "member": "CM01", "account_type": "customer", "instrument": "ZBZ24", "quantity": 25,
     "cross_margin": False},
]


class PortfolioIn(RootModel[list[PositionIn] | AccountsPortfolioIn]):
    """A portfolio in either JSON form of the portfolio file contract: a list of positions, or
    ``{"accounts": [{"account", "member", "account_type", "cross_margin", "positions": [...]}]}``."""

    model_config = ConfigDict(json_schema_extra={"examples": [cast(Any, EXAMPLE_PORTFOLIO)]})

    root: Annotated[list[PositionIn], Field(min_length=1, max_length=MAX_POSITIONS)] | AccountsPortfolioIn


# ----------------------------------------------------------------------------- margin document


class Headline(BaseModel):
    ficc_standalone: float | None
    cme_standalone: float | None
    ficc_combined: float | None
    cme_combined: float | None
    ficc_reduction_factor: float | None
    cme_reduction_factor: float | None
    applied_reduction_factor: float | None
    ficc_requirement: float | None
    cme_requirement: float | None
    total_before: float | None
    total_after: float | None
    savings: float | None
    savings_pct: float | None


class AccountRecord(Headline):
    """One account of the ``xmargin margin --format json`` document."""

    account: str
    member: str
    account_type: str
    cross_margin: bool
    components: dict[str, float | bool | None]
    status: Literal["ok", "fallback", "error"]
    reason: str
    explain: dict[str, Any] | None = None


class MarginDocument(BaseModel):
    """The ``xmargin margin --format json`` document (``xmargin.workflow.margin_payload``)."""

    as_of: date
    model: dict[str, Any]
    warnings: list[str]
    accounts: list[AccountRecord]
    totals: dict[str, float]


# ----------------------------------------------------------------------------- trades


class TradeIn(_RepoTermsIn):
    """A trade: the trade file contract (``xmargin.engine.trades``) as one JSON object.

    ``member``, ``account_type`` and ``cross_margin`` default to those of an existing account
    (and ``member`` to the key's member); ``time`` defaults to now (UTC)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"trade_id": "example-1", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": -5}]})

    trade_id: TradeId
    account: Name
    instrument: InstrumentText
    quantity: Quantity
    member: Name | None = None
    account_type: AccountType | None = None
    cross_margin: StrictBool | None = None
    archetype: Archetype | None = None
    time: datetime | None = None
    source: Literal["FICC", "CME"] | None = None

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """The time in UTC (no offset means UTC); a time an offset pushes out of range is refused."""
        if value is None:
            return None
        try:
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            raise ValueError("time is out of range once converted to UTC") from None


class ProposedTradeIn(_RepoTermsIn):
    """A proposed trade for the incremental what-if (nothing is applied or recorded)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": -100}]})

    account: Name
    instrument: InstrumentText
    quantity: Quantity
    member: Name | None = None
    account_type: AccountType | None = None
    cross_margin: StrictBool | None = None


class MarginCall(BaseModel):
    kind: Literal["margin_call", "excess"]
    account: str
    requirement: float | None = None
    collateral_value: float | None = None
    amount_due: float | None = None
    excess: float | None = None
    call_met: bool | None = None


class TradeResult(BaseModel):
    """What recording a trade did: the ledger entry, the account's margin after it and any
    margin call.  A repeated ``trade_id`` answers this same document (``replayed`` true)."""

    trade_id: str
    account: str
    member: str
    instrument: str
    quantity: float
    time: str
    source: str
    ledger_seq: int
    margin: Headline
    calls: list[MarginCall]
    replayed: bool = False


class WhatIfResult(BaseModel):
    """Incremental what-if (``LiveEngine.what_if``): before, after and change (after - before)."""

    account: str
    member: str
    instrument: str
    quantity: float
    new_account: bool
    before: Headline
    after: Headline
    change: Headline


# ----------------------------------------------------------------------------- summaries


class Figures(BaseModel):
    """A sum of account figures (``xmargin.reports.savings.Figures``)."""

    accounts: int
    before: float
    after: float
    ficc_before: float
    ficc_after: float
    cme_before: float
    cme_after: float
    stressed_loss_before: float
    stressed_loss_after: float
    savings: float | None
    savings_pct: float | None
    liquidity_freed_ficc: float | None
    liquidity_freed_cme: float | None
    funding_saved: float | None
    coverage_before: float | None
    coverage_after: float | None


class Position(BaseModel):
    instrument: str
    quantity: float


class CollateralStatus(BaseModel):
    requirement: float
    collateral_value: float
    call: float
    called: float
    excess: float


class AccountSummary(BaseModel):
    account: str
    member: str
    account_type: str
    cross_margin: bool
    archetype: str
    figures: Headline
    components: dict[str, float | bool | None]
    positions: list[Position]
    collateral: CollateralStatus
    as_of: date
    version: int


class AccountRow(Headline):
    account: str
    member: str
    account_type: str
    archetype: str
    cross_margin: bool
    positions: int


class AccountList(BaseModel):
    as_of: date
    version: int
    accounts: list[AccountRow]


class Funding(BaseModel):
    rate_pct: float
    base: str
    base_pct: float
    spread_bp: float


class MemberSummary(BaseModel):
    member: str
    as_of: date
    version: int
    house: Figures
    customers: Figures
    total: Figures
    accounts: list[AccountRow]
    excluded: list[str]
    funding: Funding


class MemberTotals(BaseModel):
    member: str
    house: Figures
    customers: Figures
    total: Figures


class MarketSummary(BaseModel):
    as_of: date
    version: int
    market: Figures
    market_house: Figures
    market_customers: Figures
    members: list[MemberTotals]
    by_archetype: dict[str, Figures]
    excluded: list[str]
    funding: Funding


# ----------------------------------------------------------------------------- service


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed"]
    as_of: date | None = None
    accounts: int | None = None
    members: int | None = None
    ledger_seq: int | None = None
    error: str | None = None


class Me(BaseModel):
    name: str
    scope: Literal["admin", "member"]
    member: str | None
    members: list[str]
    as_of: date


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorDoc(BaseModel):
    """422: the request was not used; ``loc`` names the field (``["body", "quantity"]``)."""

    detail: list[ErrorItem]


class Problem(BaseModel):
    detail: str
