"""CME SPAN risk parameter files in the positional "expanded unpacked" format (``.pa2``).

Layouts: CME Group, "SPAN Risk Parameter File Layouts for the Positional Formats" (the
expanded-format pages of cmegroupclientsite.atlassian.net/wiki/spaces/pubspan and the older
www.cme-ch.com/span/spanl3xx.htm pages).  Columns below are 0-based Python slices of the
published 1-based positions.  Records read (others listed by CME are accepted and ignored):

* ``0 `` exchange complex header: complex [2:8], business date CCYYMMDD [8:16], S/I [16],
  file id [17:19], creation date [23:31] and time [31:35], format "U2" [35:37];
* ``1 `` exchange header: acronym [2:5], code [7:9];
* ``2 `` combined commodity: exchange [2:5], CC code [6:12], currency [13:16], then up to six
  product slots of 16 bytes from [22]: product code X(10), contract type X(3) (FUT, OOF...),
  risk-array decimal locator 9 and sign; a CC with more products repeats the record;
* ``3 `` intra-commodity tiers: CC [2:8], method [8:10], four tiers of 14 bytes from [10]
  (tier number 9(2), start and end CCYYMM), initial-to-maintenance ratios 9V9(3) for member,
  hedger and speculator accounts at [68:72], [72:76], [76:80];
* ``C `` tier-to-tier intra-commodity spread: CC [2:8], method [8:10], priority 9(2) [10:12],
  number of legs 9(2) [12:14], charge 9(7) dollars per spread [14:21], legs of 7 bytes from
  [21]: leg number 9(2), tier number 9(2), delta-per-spread ratio 9(2), side A/B;
* ``E `` series-to-series intra-commodity spread: CC [2:8], priority 9(5) [8:13], charge 9(7)
  [13:20], four legs of 14 bytes from [20]: month YYMM, remaining period X(3), ratio
  9(2)V9(4), side;
* ``4 `` delivery (spot) charges, method "10": CC [2:8], method [8:10], number of months
  [10:12], two months of 22 bytes from [12]: month number 9(2), CCYYMM, charge per delta
  consumed by spreads 9(7) and per delta in outrights 9(7) (dollars);
* ``5 `` combined commodity groups: group [2:5], ten CC codes of 6 bytes from [12];
* ``6 `` inter-commodity spread: group [2:5], priority 9(4) [5:9], credit rate 9(3)V9(4) in
  percent [9:16], four legs of 18 bytes from [16]: exchange X(3), required flag, CC X(6),
  delta-per-spread ratio 9(3)V9(4), side; method [88:90];
* ``81``/``82`` risk arrays: exchange [2:5], product [5:15], underlying [15:25], type [25:28],
  contract month [29:35]; scenario values of 5 digits and a sign from [54] (``81``: scenarios
  1-9 to [108], settlement price [108:122]; ``82``: 10-16 to [96], composite delta 9V9(4)
  and sign [96:102]); the decimal locator comes from the product's ``2`` record;
* ``B `` array calculation parameters: exchange [2:5], product [5:15], type [15:18], futures
  month [18:24], price scan range 9(5) [52:57], delta-scaling factor 9(2)V9(4) [85:91];
* ``S `` scanning tiers: CC [2:8], method [8:10], number of tiers [10:12].

Where the public pages disagree or could not be reached, the choice is stated: the type 3
ratios follow the published standard-format layout (9V9(3), no decimal locators), which real
2025 CME files follow; the ``C`` and ``8x`` field widths follow an open-source
parser written from CME's www.cme-ch.com/span/spanl300.htm pages (rpolton/span-for-margin,
``CME.ExpandedFormat.fs``; the expanded ``C`` and ``8`` pages themselves could not be reached
from here); the composite delta's 4 implied decimals (9V9(4), futures 1.0000) are inferred from
a published 2025 CBOT ``82`` record whose deltas read ``10000``; 9(7) charge rates are whole dollars.  A malformed record (a number
field with anything but digits, a sign that is not ``+``/``-``, a record shorter than its last
field, an unknown record type) raises :class:`~xmargin.errors.InputError` naming the line.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from datetime import date
from pathlib import Path

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

#: Record types of the published layout that are accepted and not used (price conversion,
#: options, currency, redefinition, daily adjustment, combination and debt-security records).
IGNORED = frozenset({"P ", "T ", "R ", "V ", "X ", "Y ", "Z ", "83", "84", "91", "92", "9 ", "Q "})
KNOWN = frozenset({"0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "81", "82", "B ", "C ", "E ", "S "}) | IGNORED
MAX_BYTES = 2 * 1024**3  # a zipped member larger than this is refused (a full CME file is a few hundred MB)
#: Minimum length of each used record (the end of its last mandatory field).
MIN_LENGTH = {"0 ": 37, "1 ": 9, "2 ": 35, "3 ": 24, "4 ": 34, "5 ": 18, "6 ": 52, "81": 108, "82": 102,
              "B ": 91, "C ": 28, "E ": 34, "S ": 12}


class _Line:
    """One record with typed field access that names the line and columns on error."""

    def __init__(self, text: str, n: int, source: str) -> None:
        self.text, self.n, self.source = text, n, source

    def fail(self, why: str, start: int, end: int, name: str) -> InputError:
        return InputError(f"record '{self.text[:2]}' {why} (columns {start + 1}-{end})", source=self.source,
                          row=self.n, field=name)

    def x(self, start: int, end: int) -> str:
        return self.text[start:end].strip()

    def num(self, start: int, end: int, name: str, decimals: int = 0, blank: float | None = None) -> float:
        raw = self.text[start:end]
        if not raw.strip():
            if blank is not None:
                return blank
            raise self.fail(f"has no {name}", start, end, name)
        if len(raw) != end - start or not raw.isdigit():
            raise self.fail(f"field {name} '{raw}' is not a {end - start}-digit number", start, end, name)
        return int(raw) / 10.0**decimals

    def signed(self, start: int, name: str, decimals: int) -> float:
        value = self.num(start, start + 5, name, decimals)
        sign = self.text[start + 5:start + 6]
        if sign not in ("+", "-", " "):
            raise self.fail(f"field {name} has sign '{sign}' (expected + or -): a field of the wrong width?",
                            start, start + 6, name)
        return -value if sign == "-" else value


def _read_text(path: Path) -> tuple[str, str]:
    """The file's text and a label (``archive.zip:member`` for a zipped file)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read SPAN file: {exc.strerror}", source=path) from None
    label = str(path)
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
            preferred = [m for m in names if m.lower().endswith((".pa2", ".spn", ".xml", ".txt"))] or names
            if not preferred:
                raise InputError("empty zip archive", source=path)
            size = zf.getinfo(preferred[0]).file_size
            if size > MAX_BYTES:
                raise InputError(f"{preferred[0]} unpacks to {size:,} bytes, more than {MAX_BYTES:,}", source=path)
            raw = zf.read(preferred[0])
            label = f"{path}:{preferred[0]}"
    return raw.decode("latin-1"), label


def load_span_file(path: str | Path) -> CmeSpanParameters:
    """A CME SPAN file (PA2 or XML, zipped or not), detected from its content."""
    path = Path(path)
    text, label = _read_text(path)
    if text.lstrip("\ufeff \r\n\t").startswith("<"):
        from xmargin.formats.spn_xml import parse_spn_xml

        return parse_spn_xml(text, label)
    return parse_pa2(text.splitlines(), label)


def parse_pa2(lines: Iterable[str], source: str) -> CmeSpanParameters:
    header: dict[str, object] = {}
    ccs: dict[str, dict[str, object]] = {}
    decimals: dict[tuple[str, str], int] = {}
    arrays: dict[tuple[str, str, int], dict[str, object]] = {}
    dsf: dict[tuple[str, str, int], float] = {}
    inter: list[InterSpread] = []
    notes: list[str] = []
    exchange = ""

    def cc(code: str) -> dict[str, object]:
        return ccs.setdefault(code, {"products": [], "tiers": [], "spreads": [], "spot": [], "ratios": None,
                                     "exchange": exchange})

    for n, raw in enumerate(lines, start=1):
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        r = _Line(text, n, source)
        kind = text[:2] if len(text) >= 2 else text + " "
        if kind not in KNOWN:
            raise InputError(f"unknown record type '{kind.strip()}' (known: {', '.join(sorted(k.strip() for k in KNOWN))})",
                             source=source, row=n, field="record type")
        if kind in IGNORED:
            continue
        if len(text) < MIN_LENGTH[kind]:
            raise InputError(f"record '{kind.strip()}' is truncated: {len(text)} characters, its fields need "
                             f"{MIN_LENGTH[kind]}", source=source, row=n, field="record length")
        if kind == "0 ":
            d = int(r.num(8, 16, "business date"))
            try:
                header["date"] = date(d // 10000, d // 100 % 100, d % 100)
            except ValueError:
                raise r.fail(f"business date {d} is not a date", 8, 16, "business date") from None
            header["complex"] = r.x(2, 8)
        elif kind == "1 ":
            exchange = r.x(2, 5)
        elif kind == "2 ":
            c = cc(r.x(6, 12))
            c["exchange"] = r.x(2, 5)
            for k in range(22, min(len(text), 118), 16):
                product = r.x(k, k + 10)
                if product:
                    if product not in c["products"]:  # type: ignore[operator]
                        c["products"].append(product)  # type: ignore[union-attr]
                    locator = int(r.num(k + 13, k + 14, "risk array decimal locator", blank=0))
                    negative = text[k + 14:k + 15] == "-"  # a negative locator scales up
                    decimals[(r.x(2, 5), product, r.x(k + 10, k + 13))] = -locator if negative else locator
        elif kind == "3 ":
            c = cc(r.x(2, 8))
            for k in range(10, 66, 14):
                if text[k:k + 14].strip():
                    c["tiers"].append(Tier(int(r.num(k, k + 2, "tier number")), int(r.num(k + 2, k + 8, "tier start")),  # type: ignore[union-attr]
                                           int(r.num(k + 8, k + 14, "tier end"))))
            if len(text) >= 80 and text[68:80].strip():
                c["ratios"] = {"member": r.num(68, 72, "member ratio", 3), "hedger": r.num(72, 76, "hedger ratio", 3),
                               "speculator": r.num(76, 80, "speculator ratio", 3)}
        elif kind == "C ":
            legs_n = int(r.num(12, 14, "number of legs"))
            if len(text) < 21 + 7 * legs_n:
                raise InputError(f"record 'C' is truncated: {legs_n} legs need {21 + 7 * legs_n} characters",
                                 source=source, row=n, field="record length")
            legs = []
            for k in range(21, 21 + 7 * legs_n, 7):
                side = text[k + 6]
                if side not in "AB":
                    raise r.fail(f"leg side '{side}' is not A or B", k + 6, k + 7, "leg side")
                legs.append(SpreadLeg(str(int(r.num(k + 2, k + 4, "tier number"))), r.num(k + 4, k + 6, "leg ratio"), side))
            cc(r.x(2, 8))["spreads"].append(IntraSpread(int(r.num(10, 12, "priority")), r.num(14, 21, "charge rate"),  # type: ignore[union-attr]
                                                         tuple(legs), "tier"))
        elif kind == "E ":
            legs = []
            for k in range(20, min(len(text), 76), 14):
                if text[k:k + 4].strip():
                    yymm = int(r.num(k, k + 4, "leg month"))
                    side = text[k + 13:k + 14]
                    if side not in ("A", "B"):
                        raise r.fail(f"leg side '{side}' is not A or B", k + 13, k + 14, "leg side")
                    legs.append(SpreadLeg(str(2000 * 100 + yymm), r.num(k + 7, k + 13, "leg ratio", 4), side))
            cc(r.x(2, 8))["spreads"].append(IntraSpread(int(r.num(8, 13, "priority")), r.num(13, 20, "charge rate"),  # type: ignore[union-attr]
                                                         tuple(legs), "month"))
        elif kind == "4 ":
            method = r.x(8, 10)
            if method != "10":
                notes.append(f"line {n}: spot charge method {method} of {r.x(2, 8)} not supported (table method 10 only)")
                continue
            count = int(r.num(10, 12, "number of delivery months"))
            for k in (12, 34)[:count]:
                cc(r.x(2, 8))["spot"].append(SpotCharge(int(r.num(k + 2, k + 8, "delivery month")),  # type: ignore[union-attr]
                                                        r.num(k + 8, k + 15, "spread charge rate"),
                                                        r.num(k + 15, k + 22, "outright charge rate")))
        elif kind == "6 ":
            legs = []
            for k in (16, 34, 52, 70):
                if text[k:k + 18].strip():
                    side = text[k + 17:k + 18]
                    if side not in ("A", "B"):
                        raise r.fail(f"leg side '{side}' is not A or B", k + 17, k + 18, "leg side")
                    legs.append(SpreadLeg(r.x(k + 4, k + 10), r.num(k + 10, k + 17, "delta per spread ratio", 4), side))
            method = r.x(88, 90)
            if text[100:101] == "F":  # flat-rate credit in dollars, not a weighted-price-risk share
                notes.append(f"line {n}: flat-rate inter-commodity spread (credit method F) not applied")
                continue
            if method == "04":  # scanning-based (target leg) spreads are not delta-based: not applied
                notes.append(f"line {n}: scanning-based inter-commodity spread (method 04) not applied")
                continue
            inter.append(InterSpread(int(r.num(5, 9, "priority")), r.num(9, 16, "credit rate", 4) / 100.0, tuple(legs)))
        elif kind in ("81", "82"):
            if r.x(25, 28) != "FUT":
                continue  # options: not margined by this engine
            ex, product, month = r.x(2, 5), r.x(5, 15), int(r.num(29, 35, "contract month"))
            key = (ex, product, month)
            dl = decimals.get((ex, product, "FUT"), 0)
            entry = arrays.setdefault(key, {"values": [None] * 16, "line": n, "delta": 1.0})
            first, count = (0, 9) if kind == "81" else (9, 7)
            for k in range(count):
                entry["values"][first + k] = r.signed(54 + 6 * k, f"scenario {first + k + 1}", dl)  # type: ignore[index]
            if kind == "82" and text[96:101].strip():
                entry["delta"] = r.signed(96, "composite delta", 4) or 1.0  # a future's delta is 1 when not given
        elif kind == "B ":
            if r.x(15, 18) == "FUT":
                dsf[(r.x(2, 5), r.x(5, 15), int(r.num(18, 24, "futures month")))] = r.num(85, 91, "delta scaling factor", 4)
        elif kind == "S ":
            method, tiers = r.x(8, 10), int(r.num(10, 12, "number of tiers", blank=0))
            if tiers > 1 and method in ("10", "21", "22"):
                notes.append(f"line {n}: {tiers} scanning tiers of {r.x(2, 8)} scanned as one tier")
            if tiers > 1 and method in ("20", "21", "23"):
                notes.append(f"line {n}: tiered inter-commodity spreading of {r.x(2, 8)} done on its whole net delta")
            if text[82:83] in ("2", "3"):
                notes.append(f"line {n}: weighted futures price risk method {text[82]} of {r.x(2, 8)} read as method 1 "
                             "(price risk / net delta)")
    if "date" not in header:
        raise InputError("no type '0' exchange complex header record: not a SPAN expanded (PA2) file", source=source)
    contracts = []
    for (ex, product, month), entry in arrays.items():
        values = entry["values"]
        if any(v is None for v in values):  # type: ignore[union-attr]
            raise InputError(f"risk array of {product} {month} has no {'82' if values[9] is None else '81'} record",  # type: ignore[index]
                             source=source, row=entry["line"], field="risk array")  # type: ignore[arg-type]
        contracts.append(SpanContract(product, month, tuple(values), ex, "FUT", float(entry["delta"]),  # type: ignore[arg-type]
                                      dsf.get((ex, product, month), 1.0), None, entry["line"]))  # type: ignore[arg-type]
    commodities = {
        code: CombinedCommodity(code, str(c["exchange"]), tuple(c["products"]), tuple(c["tiers"]), tuple(c["spreads"]),  # type: ignore[arg-type]
                                tuple(c["spot"]), dict(c["ratios"] or CME_RULE_RATIOS),  # type: ignore[arg-type]
                                "file (type 3 record)" if c["ratios"] else "CME rule (file gives none)")
        for code, c in ccs.items()
    }
    return CmeSpanParameters(source, "pa2", header["date"], str(header.get("complex", "")), commodities,  # type: ignore[arg-type]
                             tuple(contracts), tuple(sorted(inter, key=lambda s: s.priority)), tuple(notes))
