"""Write :class:`CmeSpanParameters` as a PA2 (expanded unpacked) file, record by record in the
layout of :mod:`xmargin.formats.pa2` (used by the tests' round trips and by
``xmargin cme-params export``).  Every number must fit its published width: a value that does
not raises ``ValueError`` naming the field instead of writing a shifted record.  Risk arrays
are written with decimal locator 0 (whole dollars), the precision of the 5-digit field."""

from __future__ import annotations

from xmargin.formats.span_params import CmeSpanParameters, SpanContract


def _n(value: float, width: int, decimals: int = 0, name: str = "field") -> str:
    scaled = round(value * 10**decimals)
    text = str(abs(scaled)).rjust(width, "0")
    if scaled < 0 or len(text) > width:
        raise ValueError(f"{name} {value} does not fit 9({width}) with {decimals} decimals")
    return text


def _x(value: str, width: int) -> str:
    if len(value) > width:
        raise ValueError(f"'{value}' is longer than X({width})")
    return value.ljust(width)


def _signed(value: float, decimals: int, name: str) -> str:
    return _n(abs(value), 5, decimals, name) + ("-" if round(value * 10**decimals) < 0 else "+")


def _key(c: SpanContract) -> str:
    return (f"{_x(c.exchange, 3)}{_x(c.product, 10)}{_x(c.product, 10)}FUT {c.month:06d}  "
            f"{' ' * 10}0000000")


def write_pa2(p: CmeSpanParameters, *, decimals: int = 0) -> str:
    """The file's text (records of up to 132 characters, one per line)."""
    d = p.business_date
    lines = [f"0 {_x(p.exchange_complex, 6)}{d:%Y%m%d}SFC    {d:%Y%m%d}0000U2  " if d else ""]
    exchanges = sorted({c.exchange for c in p.contracts} | {cc.exchange for cc in p.commodities.values()})
    for ex in exchanges or [""]:
        lines.append(f"1 {_x(ex, 3)}  00")
        for cc in (c for c in p.commodities.values() if c.exchange == ex):
            products = list(cc.products) or [cc.code]
            for k in range(0, len(products), 6):
                slots = "".join(f"{_x(pr, 10)}FUT{decimals}+ " for pr in products[k:k + 6])
                lines.append(f"2 {_x(ex, 3)} {_x(cc.code, 6)}0USD$PN   {slots}")
            tiers = "".join(f"{_n(t.number, 2)}{_n(t.start, 6)}{_n(t.end, 6)}" for t in cc.intra_tiers[:4])
            r = cc.initial_ratio
            lines.append(f"3 {_x(cc.code, 6)}10{tiers.ljust(56)}  {_n(r['member'], 4, 3, 'member ratio')}"
                         f"{_n(r['hedger'], 4, 3, 'hedger ratio')}{_n(r['speculator'], 4, 3, 'speculator ratio')}")
            for s in (s for s in cc.intra_spreads if s.by == "tier"):
                legs = "".join(f"{k + 1:02d}{_n(int(leg.key), 2, 0, 'tier')}{_n(leg.ratio, 2, 0, 'ratio')}{leg.side}"
                               for k, leg in enumerate(s.legs))
                lines.append(f"C {_x(cc.code, 6)}10{_n(s.priority, 2)}{_n(len(s.legs), 2)}"
                             f"{_n(s.rate, 7, 0, 'charge rate')}{legs}")
            for s in (s for s in cc.intra_spreads if s.by == "month"):
                legs = "".join(f"{int(leg.key) % 10000:04d}   {_n(leg.ratio, 6, 4, 'ratio')}{leg.side}" for leg in s.legs)
                lines.append(f"E {_x(cc.code, 6)}{_n(s.priority, 5)}{_n(s.rate, 7, 0, 'charge rate')}{legs}")
            if cc.spot_charges:
                months = "".join(f"{k + 1:02d}{sc.month:06d}{_n(sc.spread_rate, 7, 0, 'spot spread rate')}"
                                 f"{_n(sc.outright_rate, 7, 0, 'spot outright rate')}"
                                 for k, sc in enumerate(cc.spot_charges[:2]))
                lines.append(f"4 {_x(cc.code, 6)}10{len(cc.spot_charges[:2]):02d}{months}")
        for c in (c for c in p.contracts if c.exchange == ex):
            lines.append(f"B {_x(ex, 3)}{_x(c.product, 10)}FUT{c.month:06d}   {' ' * 6}   {'0' * 16}"
                         f"{'0' * 5}{'0' * 5}{'0' * 5}{'0' * 5}{'0' * 7}{'0' * 6}"
                         f"{_n(c.delta_scaling, 6, 4, 'delta scaling factor')}")
            ra = [_signed(v, decimals, f"{c.product} {c.month} scenario {k + 1}") for k, v in enumerate(c.risk_array)]
            lines.append(f"81{_key(c)}{''.join(ra[:9])}{'0' * 14}N")
            lines.append(f"82{_key(c)}{''.join(ra[9:])}{_signed(c.delta, 4, 'composite delta')}")
    groups: dict[str, list[str]] = {}
    for cc in p.commodities.values():
        groups.setdefault("ALL", []).append(cc.code)
    for g, codes in groups.items():
        for k in range(0, len(codes), 10):
            lines.append(f"5 {_x(g, 3)}       {''.join(_x(c, 6) for c in codes[k:k + 10])}")
    for s in p.inter_spreads:
        legs = "".join(f"{_x(p.commodities[leg.key].exchange if leg.key in p.commodities else '', 3)}Y"
                       f"{_x(leg.key, 6)}{_n(leg.ratio, 7, 4, 'delta per spread ratio')}{leg.side}" for leg in s.legs)
        lines.append(f"6 ALL{_n(s.priority, 4)}{_n(s.rate * 100.0, 7, 4, 'credit rate')}{legs.ljust(72)}01")
    return "\n".join(lines) + "\n"
