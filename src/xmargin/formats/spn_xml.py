"""CME SPAN risk parameter files in SPAN XML (``.spn``, the PC-SPAN 4 "spanFile" schema).

Elements read (CME's schema; element names as in the published schema and in public
readers of real CME/NSE files)::

    spanFile/pointInTime/date                         business date CCYYMMDD
    .../clearingOrg/ec                                exchange complex
    .../clearingOrg/pbRateDef{r, isM, acctType}       rate ids: isM=0 initial; acctType M/H/S
    .../clearingOrg/ccDef{cc, pfLink{exch, pfCode, pfType}, adjRate{r, val},
        intraTiers/tier{tn, sPe, ePe},
        dSpread{spread, rate/val, tLeg{tn, rs, i} | pLeg{pe, rs, i}},
        spotRate{pe, sprd, outr}}
    .../clearingOrg/interSpreads/dSpread{spread, rate/val, pLeg{cc, rs, i}}
    .../clearingOrg/exchange{exch, futPf{pfCode, fut{pe, d, sc, ra/a x16}}}

Units (**choice** where the schema is silent): risk array values ``a`` in dollars per
contract, positive a loss (as in the PA2 file); intra-commodity ``rate/val`` dollars per
spread; inter-commodity ``rate/val`` a fraction (0.75 = 75%; a value above 1 is read as percent, noted);
``spotRate`` dollars per delta;
``adjRate/val`` of an initial rate id (``isM`` 0) the initial-to-maintenance ratio.  Parsed
with expat, DTDs refused; a malformed file raises :class:`~xmargin.errors.InputError` naming
the line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from xmargin.errors import InputError
from xmargin.formats.span_params import (
    CME_RULE_RATIOS,
    CmeSpanParameters,
    CombinedCommodity,
    InterSpread,
    IntraSpread,
    SpanContract,
    SpotCharge,
    SpreadLeg,
    Tier,
)
from xmargin.portfolio.xmltree import Node, parse_tree

_CLASS = {"M": "member", "H": "hedger", "S": "speculator"}


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        root = parse_tree(text, source)
        if root.tag != "spanFile":
            raise InputError("not a SPAN XML file (no <spanFile> root element)", source=source, row=1)
        self.root = root

    def text(self, node: Node, tag: str, default: str | None = None) -> str:
        child = node.one(tag)
        if child is None or not child.text.strip():
            if default is not None:
                return default
            raise InputError(f"<{node.tag}> has no <{tag}>", source=self.source, row=node.line, field=tag)
        return child.text.strip()

    def number(self, node: Node, tag: str, default: float | None = None) -> float:
        raw = self.text(node, tag, None if default is None else str(default))
        try:
            return float(raw)
        except ValueError:
            child = node.one(tag)
            raise InputError(f"<{tag}> '{raw}' is not a number", source=self.source,
                             row=child.line if child else node.line, field=tag) from None


def _month(text: str) -> int:
    """CCYYMM from a period code CCYYMM or CCYYMMDD."""
    return int(text[:6])


def parse_spn_xml(text: str, source: str) -> CmeSpanParameters:
    rd = _Reader(text, source)
    pit = rd.root.one("pointInTime")
    if pit is None:
        raise InputError("<spanFile> has no <pointInTime>", source=source, row=rd.root.line, field="pointInTime")
    raw_date = rd.text(pit, "date")
    try:
        business = date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:8]))
    except ValueError:
        raise InputError(f"<date> '{raw_date}' is not CCYYMMDD", source=source, row=pit.line, field="date") from None
    orgs = pit.all("clearingOrg")
    if not orgs:
        raise InputError("<pointInTime> has no <clearingOrg>", source=source, row=pit.line, field="clearingOrg")
    org = orgs[0]
    initial_ids: dict[str, str] = {}
    for d in org.all("pbRateDef"):
        if rd.text(d, "isM", "1") == "0" and rd.text(d, "acctType", "") in _CLASS:
            initial_ids.setdefault(_CLASS[rd.text(d, "acctType")], rd.text(d, "r"))
    commodities: dict[str, CombinedCommodity] = {}
    for c in org.all("ccDef"):
        code = rd.text(c, "cc")
        products = tuple(rd.text(link, "pfCode") for link in c.all("pfLink") if rd.text(link, "pfType", "FUT") == "FUT")
        exchange = next((rd.text(link, "exch", "") for link in c.all("pfLink")), "")
        adj = {rd.text(r, "r"): rd.number(r, "val") for r in c.all("adjRate")}
        ratios = dict(CME_RULE_RATIOS)
        found = {k: adj[r] for k, r in initial_ids.items() if r in adj}
        ratios.update(found)
        tiers = tuple(Tier(int(rd.number(t, "tn")), _month(rd.text(t, "sPe")), _month(rd.text(t, "ePe")))
                      for it in c.all("intraTiers") for t in it.all("tier"))
        spreads = []
        for s in c.all("dSpread"):
            rate = s.one("rate")
            if rate is None:
                raise InputError("<dSpread> has no <rate>", source=source, row=s.line, field="rate")
            tlegs, plegs = s.all("tLeg"), s.all("pLeg")
            by = "tier" if tlegs else "month"
            legs = tuple(SpreadLeg(str(int(rd.number(leg, "tn"))) if by == "tier" else str(_month(rd.text(leg, "pe"))),
                                   rd.number(leg, "i", 1.0), rd.text(leg, "rs")) for leg in (tlegs or plegs))
            spreads.append(IntraSpread(int(rd.number(s, "spread")), rd.number(rate, "val"), legs, by))
        spot = tuple(SpotCharge(_month(rd.text(r, "pe")), rd.number(r, "sprd", 0.0), rd.number(r, "outr", 0.0))
                     for r in c.all("spotRate"))
        commodities[code] = CombinedCommodity(code, exchange, products, tiers, tuple(spreads), spot, ratios,
                                              "file (pbRateDef/adjRate)" if found else "CME rule (file gives none)")
    inter = []
    notes = []
    for block in org.all("interSpreads"):
        for s in block.all("dSpread"):
            rate = s.one("rate")
            if rate is None:
                raise InputError("<dSpread> has no <rate>", source=source, row=s.line, field="rate")
            legs = tuple(SpreadLeg(rd.text(leg, "cc"), rd.number(leg, "i", 1.0), rd.text(leg, "rs")) for leg in s.all("pLeg"))
            val = rd.number(rate, "val")
            if val > 1.0:  # a credit above 100% cannot be a fraction: the file gives percent
                notes.append(f"line {rate.line}: inter-commodity credit rate {val:g} read as percent")
                val /= 100.0
            inter.append(InterSpread(int(rd.number(s, "spread")), val, legs))
    contracts = []
    for ex in org.all("exchange"):
        exch = rd.text(ex, "exch", "")
        for pf in ex.all("futPf"):
            product = rd.text(pf, "pfCode")
            for f in pf.all("fut"):
                ra = f.one("ra")
                if ra is None:
                    raise InputError(f"<fut> of {product} has no risk array <ra>", source=source, row=f.line, field="ra")
                values = []
                for a in ra.all("a"):
                    try:
                        values.append(float(a.text))
                    except ValueError:
                        raise InputError(f"risk array value '{a.text.strip()}' is not a number", source=source,
                                         row=a.line, field="a") from None
                if len(values) != 16:
                    raise InputError(f"risk array of {product} has {len(values)} values, expected 16", source=source,
                                     row=ra.line, field="ra")
                contracts.append(SpanContract(product, _month(rd.text(f, "pe")), tuple(values), exch, "FUT",
                                              rd.number(f, "d", 1.0), rd.number(f, "sc", 1.0),
                                              rd.number(f, "p", 0.0) or None, f.line))
    return CmeSpanParameters(source, "xml", business, rd.text(org, "ec", ""), commodities, tuple(contracts),
                             tuple(sorted(inter, key=lambda s: s.priority)), tuple(notes))


def write_spn_xml(p: CmeSpanParameters) -> str:
    """The parameters as a SPAN XML document (the elements :func:`parse_spn_xml` reads)."""

    def sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
        e = ET.SubElement(parent, tag)
        if text is not None:
            e.text = repr(text) if isinstance(text, float) else str(text)
        return e

    root = ET.Element("spanFile")
    sub(root, "fileFormat", "4.00")
    pit = sub(root, "pointInTime")
    sub(pit, "date", f"{p.business_date:%Y%m%d}" if p.business_date else "")
    sub(pit, "isSetl", 1)
    org = sub(pit, "clearingOrg")
    sub(org, "ec", p.exchange_complex)
    ids = {"member": ("M", "2"), "hedger": ("H", "3"), "speculator": ("S", "4")}
    rd = sub(org, "pbRateDef")
    for tag, v in (("r", 1), ("isCust", 0), ("acctType", "N"), ("isM", 1), ("pbc", "CORE")):
        sub(rd, tag, v)
    for acct, r in ids.values():
        rd = sub(org, "pbRateDef")
        for tag, v in (("r", r), ("isCust", int(acct != "M")), ("acctType", acct), ("isM", 0), ("pbc", "CORE")):
            sub(rd, tag, v)
    for cc in p.commodities.values():
        c = sub(org, "ccDef")
        sub(c, "cc", cc.code)
        sub(c, "name", cc.code)
        sub(c, "currency", "USD")
        for pr in cc.products:
            link = sub(c, "pfLink")
            sub(link, "exch", cc.exchange)
            sub(link, "pfCode", pr)
            sub(link, "pfType", "FUT")
        adj = sub(c, "adjRate")
        sub(adj, "r", 1)
        sub(adj, "val", 1.0)
        for klass, (_, r) in ids.items():
            adj = sub(c, "adjRate")
            sub(adj, "r", r)
            sub(adj, "val", float(cc.initial_ratio[klass]))
        tiers = sub(c, "intraTiers")
        for t in cc.intra_tiers:
            te = sub(tiers, "tier")
            sub(te, "tn", t.number)
            sub(te, "sPe", t.start)
            sub(te, "ePe", t.end)
        for s in cc.intra_spreads:
            d = sub(c, "dSpread")
            sub(d, "spread", s.priority)
            rate = sub(d, "rate")
            sub(rate, "r", 1)
            sub(rate, "val", float(s.rate))
            for leg in s.legs:
                le = sub(d, "tLeg" if s.by == "tier" else "pLeg")
                sub(le, "cc", cc.code)
                sub(le, "tn" if s.by == "tier" else "pe", leg.key)
                sub(le, "rs", leg.side)
                sub(le, "i", float(leg.ratio))
        for sc in cc.spot_charges:
            r = sub(c, "spotRate")
            sub(r, "r", 1)
            sub(r, "pe", sc.month)
            sub(r, "sprd", float(sc.spread_rate))
            sub(r, "outr", float(sc.outright_rate))
    inter = sub(org, "interSpreads")
    for s in p.inter_spreads:
        d = sub(inter, "dSpread")
        sub(d, "spread", s.priority)
        rate = sub(d, "rate")
        sub(rate, "r", 1)
        sub(rate, "val", float(s.rate))
        for leg in s.legs:
            le = sub(d, "pLeg")
            sub(le, "cc", leg.key)
            sub(le, "rs", leg.side)
            sub(le, "i", float(leg.ratio))
    for exch in sorted({c.exchange for c in p.contracts}):
        ex = sub(org, "exchange")
        sub(ex, "exch", exch)
        for product in sorted({c.product for c in p.contracts if c.exchange == exch}):
            pf = sub(ex, "futPf")
            sub(pf, "pfCode", product)
            for k, f in enumerate(c for c in p.contracts if c.exchange == exch and c.product == product):
                fe = sub(pf, "fut")
                sub(fe, "cId", k + 1)
                sub(fe, "pe", f.month)
                if f.price is not None:
                    sub(fe, "p", float(f.price))
                sub(fe, "d", float(f.delta))
                sub(fe, "sc", float(f.delta_scaling))
                ra = sub(fe, "ra")
                sub(ra, "r", 1)
                for v in f.risk_array:
                    sub(ra, "a", float(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
