"""Clearing members' registrations, and who may carry which cross-margining account.

The arrangement as filed (``../shared/methodology/sources-2026-12.md``, "End-user clients"):

* a **house** cross-margining account needs a common member: a FICC (GSD) netting member
  that is also a CME clearing member;
* a **customer** cross-margining account needs the customer to clear both legs through the
  same *dually registered* broker-dealer / futures commission merchant, a member of both
  clearinghouses (CME/DTCC press release, February 2025: primary): FICC netting member, CME
  clearing member and BD-FCM;
* an **affiliate** of a member (the 2025 amendment, secondary) is its own account linked to
  the member; when the members file lists the member's affiliates, an affiliate account
  must be one of them.  It needs the same registrations as a house account.

An account that has *not* elected cross-margining may sit at any member.  Without a members
file every member is taken as dually registered (stated in each output's provenance).

Members file, CSV (header required, any order)::

    member,ficc_netting_member,cme_clearing_member,bd_fcm[,name][,affiliates]

``affiliates``: account names separated by ``;``.  TOML: ``[[member]]`` tables with the same
keys (``affiliates`` a list).  A JSON portfolio may carry the same objects in ``"members"``.
"""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmargin.errors import InputError
from xmargin.portfolio.book import Book
from xmargin.portfolio.fields import bool_field, text_field

REGISTRATIONS = ("ficc_netting_member", "cme_clearing_member", "bd_fcm")
LABELS = {"ficc_netting_member": "FICC netting member", "cme_clearing_member": "CME clearing member",
          "bd_fcm": "BD-FCM (dually registered broker-dealer and FCM)"}
ASSUMED = "not supplied: every member taken as a FICC netting member, CME clearing member and BD-FCM"


@dataclass(frozen=True)
class Member:
    member: str
    ficc_netting_member: bool
    cme_clearing_member: bool
    bd_fcm: bool
    name: str = ""
    affiliates: tuple[str, ...] = ()

    def needs(self, account_type: str) -> tuple[str, ...]:
        """Registrations a cross-margining account of ``account_type`` needs at this member."""
        if account_type == "customer":
            return REGISTRATIONS
        return ("ficc_netting_member", "cme_clearing_member")

    def missing(self, account_type: str) -> list[str]:
        return [r for r in self.needs(account_type) if not getattr(self, r)]

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "name": self.name, **{r: getattr(self, r) for r in REGISTRATIONS},
                "affiliates": list(self.affiliates),
                "may_carry_customer_cross_margining": not self.missing("customer")}


@dataclass(frozen=True)
class MemberRegistry:
    members: dict[str, Member]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "members": [m.to_dict() for m in self.members.values()]}


def _member_from_row(row: Mapping[str, Any], source: str, n: int | None) -> Member:
    raw = row.get("affiliates") or ()
    affiliates = tuple(a.strip() for a in raw.split(";")) if isinstance(raw, str) else tuple(str(a) for a in raw)
    return Member(
        member=text_field(row, "member", source, n),
        ficc_netting_member=bool_field(row, "ficc_netting_member", source, n, False),
        cme_clearing_member=bool_field(row, "cme_clearing_member", source, n, False),
        bd_fcm=bool_field(row, "bd_fcm", source, n, False),
        name=str(row.get("name") or "").strip(),
        affiliates=tuple(a for a in affiliates if a),
    )


def registry_from_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], source: str) -> MemberRegistry:
    members: dict[str, Member] = {}
    for n, row in rows:
        if not isinstance(row, Mapping):
            raise InputError("each member must be an object", source=source, row=n)
        unknown = [k for k in row if k not in ("member", "name", "affiliates", *REGISTRATIONS)]
        if unknown:
            raise InputError(f"unknown field(s) {unknown}", source=source, row=n, field=unknown[0])
        m = _member_from_row(row, source, n)
        if m.member in members:
            raise InputError(f"member {m.member} is listed twice", source=source, row=n, field="member")
        members[m.member] = m
    if not members:
        raise InputError("no members", source=source)
    return MemberRegistry(members, source)


def load_members(path: str | Path) -> MemberRegistry:
    """A members file (CSV, TOML, or a JSON portfolio/list with ``members``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read members file: {exc.strerror}", source=path) from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"not valid TOML: {exc}", source=path) from None
        items = data.get("member", [])
        if not isinstance(items, list):
            raise InputError("expected [[member]] tables", source=path, field="member")
        return registry_from_rows(enumerate(items, start=1), str(path))
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", source=path, row=exc.lineno) from None
        items = data.get("members") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InputError("expected a list of members or an object with 'members'", source=path, field="members")
        return registry_from_rows(enumerate(items, start=1), str(path))
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("member", *REGISTRATIONS) if c not in header]
    if missing:
        raise InputError(f"missing column(s) {missing}", source=path, row=1, field=missing[0])
    reader.fieldnames = header
    return registry_from_rows(((n, r) for n, r in enumerate(reader, start=2) if any((v or "").strip()
                                                                                  for v in r.values())), str(path))


def portfolio_members(path: str | Path) -> MemberRegistry | None:
    """The ``members`` a JSON portfolio carries, if any."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # the portfolio reader reports it
    if isinstance(data, dict) and "members" in data:
        return load_members(path)
    return None


def check_registrations(book: Book, registry: MemberRegistry | None) -> None:
    """Refuse cross-margining accounts at members that cannot carry them.

    Raises :class:`InputError` naming the portfolio, the account's first row and the field.
    """
    if registry is None:
        return
    for i, acc in enumerate(book.accounts):
        row = book.first_rows[i] if book.first_rows else None
        member = registry.members.get(acc.member)
        if member is None:
            raise InputError(f"account {acc.account}: member {acc.member} is not in the members file "
                             f"{registry.source} (known: {', '.join(sorted(registry.members))})",
                             source=book.source, row=row, field="member")
        if acc.account_type == "affiliate" and member.affiliates and acc.account not in member.affiliates:
            raise InputError(f"account {acc.account} is not a registered affiliate of member {acc.member} "
                             f"(affiliates: {', '.join(member.affiliates)})", source=book.source, row=row,
                             field="account_type")
        if not acc.cross_margin:
            continue
        lacking = member.missing(acc.account_type)
        if lacking:
            what = ("customer cross-margining needs a dually registered BD-FCM, a member of both clearinghouses"
                    if acc.account_type == "customer" else "cross-margining needs a member of both clearinghouses")
            raise InputError(
                f"account {acc.account} ({acc.account_type}) elects cross-margining at member {acc.member}, "
                f"which is not a {' / '.join(LABELS[r] for r in lacking)}: {what}; "
                "clear the account elsewhere or set cross_margin=false",
                source=book.source, row=row, field="cross_margin")
