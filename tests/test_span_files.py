"""CME SPAN parameter files: a hand-computed SPAN result, round trips, malformed files.

The parameter set below is written by the tests from the published layouts (PA2 expanded
format and SPAN XML, see :mod:`xmargin.formats.pa2` and :mod:`xmargin.formats.spn_xml`); no
real CME file could be fetched here.  The worked example follows CME's standard SPAN steps
(CME Group, "CME SPAN Methodology Overview": scan risk over the 16 scenarios, intra-commodity
spread charge, spot-month charge, inter-commodity credits by priority, initial =
maintenance x ratio); every figure is computed by hand in the docstring.
"""

from __future__ import annotations

import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmargin.errors import InputError
from xmargin.formats.pa2 import load_span_file, parse_pa2
from xmargin.formats.pa2_write import write_pa2
from xmargin.formats.span_cme import cme_span, explain_row
from xmargin.formats.span_params import (
    CmeSpanParameters,
    CombinedCommodity,
    InterSpread,
    IntraSpread,
    SpanContract,
    SpotCharge,
    SpreadLeg,
    Tier,
)
from xmargin.formats.spn_xml import write_spn_xml
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture


def ladder(scan: float) -> tuple[float, ...]:
    """CME's 16 futures scenarios for a price scan range (loss of a long positive): 0, 0, then
    -+1/3, -+2/3, -+3/3 of the range twice each, and the extremes 2 ranges x 35%."""
    thirds = []
    for k in (1, 2, 3):
        v = scan * k / 3
        thirds += [-v, -v, v, v]
    return (0.0, 0.0, *thirds, -2 * scan * 0.35, 2 * scan * 0.35)


def params() -> CmeSpanParameters:
    """ZN (clearing code 21, range $1,200): Sep-24 and Dec-24, tiers 1 and 2, tier spread 1 vs 2
    at $150, Sep-24 in delivery (spot: $50 per delta in spreads, $100 per delta outright),
    ratios member 1.00 / hedger 1.00 / speculator 1.10.  ZF (25, range $600): Sep-24 and
    Dec-24, series spread at $80.  Inter-commodity ZF/ZN at 50%, 2 ZF deltas : 1 ZN delta."""
    zn = [SpanContract("21", m, ladder(1200.0), "CBT") for m in (202409, 202412)]
    zf = [SpanContract("25", m, ladder(600.0), "CBT", delta_scaling=1.0) for m in (202409, 202412)]
    ccs = {
        "21": CombinedCommodity("21", "CBT", ("21",), (Tier(1, 202409, 202409), Tier(2, 202412, 202412)),
                                (IntraSpread(1, 150.0, (SpreadLeg("1", 1.0, "A"), SpreadLeg("2", 1.0, "B")), "tier"),),
                                (SpotCharge(202409, 50.0, 100.0),),
                                {"member": 1.0, "hedger": 1.0, "speculator": 1.1}, "file (type 3 record)"),
        "25": CombinedCommodity("25", "CBT", ("25",), (),
                                (IntraSpread(1, 80.0, (SpreadLeg("202409", 1.0, "A"), SpreadLeg("202412", 1.0, "B")),
                                             "month"),),
                                (), {"member": 1.0, "hedger": 1.0, "speculator": 1.1}, "file (type 3 record)"),
    }
    inter = (InterSpread(1, 0.5, (SpreadLeg("25", 2.0, "A"), SpreadLeg("21", 1.0, "B"))),)
    return CmeSpanParameters("test", "pa2", date(2024, 6, 26), "CME", ccs, (*zn, *zf), inter)


UNIVERSE = InstrumentUniverse.of([TreasuryFuture("ZN", 2024, 9), TreasuryFuture("ZN", 2024, 12),
                                  TreasuryFuture("ZF", 2024, 9), TreasuryFuture("ZF", 2024, 12)])


def book(*rows: tuple[float, float, float, float]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=float))


def test_hand_computed_span_for_a_small_book() -> None:
    """Account 1: ZN Sep +5, ZN Dec -2, ZF Sep -4 (a customer: speculator ratio 1.10).

    1. Scan: ZN net +3, every contract the same array: worst scenario 13 (price down a full
       range) 3 x 1,200 = 3,600; ZF net -4: scenario 11 (up a range) 4 x 600 = 2,400.
    2. Intra ZN: tier 1 long 5 vs tier 2 short 2: 2 spreads x $150 = 300 (Sep long 3 left).
    3. Spot ZN Sep: 2 deltas in spreads x $50 + 3 outright x $100 = 400.
    4. Inter ZF(A, 2)/ZN(B, 1): ZF -4, ZN +3 -> s = min(4/2, 3/1) = 2 spreads; WFPR ZF
       2,400/4 = 600, ZN 3,600/3 = 1,200; credits 0.5 x 2 x 2 x 600 = 1,200 (ZF) and
       0.5 x 2 x 1 x 1,200 = 1,200 (ZN).
    5. Maintenance ZN 3,600 + 300 + 400 - 1,200 = 3,100, ZF 2,400 - 1,200 = 1,200: 4,300;
       initial 4,300 x 1.10 = 4,730.
    Account 2 (house): ZF Sep +1 outright: 600, initial 600.  Account 3 (house): ZN Dec +1,
    ZN Sep -1: scan 0, intra 150, spot 1 x 50 = 50: 200.
    """
    res = cme_span(book((5, -2, -4, 0), (0, 0, 1, 0), (-1, 1, 0, 0)), UNIVERSE, params(),
                   ["customer", "house", "house"], trace=True)
    assert res.scan_risk.tolist() == pytest.approx([6000.0, 600.0, 0.0])
    assert res.intra_spread_charge.tolist() == pytest.approx([300.0, 0.0, 150.0])
    assert res.spot_charge.tolist() == pytest.approx([400.0, 0.0, 50.0])
    assert res.inter_spread_credit.tolist() == pytest.approx([2400.0, 0.0, 0.0])
    assert res.maintenance.tolist() == pytest.approx([4300.0, 600.0, 200.0])
    assert res.initial.tolist() == pytest.approx([4730.0, 600.0, 200.0])
    ex = explain_row(res, 0)
    by_cc = {c["combined_commodity"]: c for c in ex["combined_commodities"]}
    assert by_cc["21"]["worst_scenario"] == 13 and by_cc["25"]["worst_scenario"] == 11
    assert [s["step"] for s in ex["spreads"]] == ["intra", "spot", "inter"]
    assert ex["spreads"][2]["spreads"] == pytest.approx(2.0)


def test_priority_order_decides_which_spread_takes_the_delta() -> None:
    """A second inter spread ZF/ZN at 80% with priority 0 goes first and takes all the delta:
    s = 2, credits 0.8 x 2 x (2 x 600 + 1 x 1,200) = 3,840; the 50% spread finds none left."""
    p = params()
    first = InterSpread(0, 0.8, (SpreadLeg("25", 2.0, "A"), SpreadLeg("21", 1.0, "B")))
    res = cme_span(book((5, -2, -4, 0)), UNIVERSE, replace(p, inter_spreads=(first, *p.inter_spreads)))
    assert res.inter_spread_credit.tolist() == pytest.approx([3840.0])


def test_same_direction_exposures_earn_no_credit() -> None:
    res = cme_span(book((1, 0, 2, 0)), UNIVERSE, params())
    assert res.inter_spread_credit.tolist() == [0.0]
    assert res.maintenance.tolist() == pytest.approx([1200.0 + 100.0 + 1200.0])  # spot: 1 outright x $100


def _same(a: CmeSpanParameters, b: CmeSpanParameters) -> None:
    strip = [replace(c, line=None) for c in b.contracts]
    assert [replace(c, line=None) for c in a.contracts] == strip
    assert {k: replace(v, ratio_source="") for k, v in a.commodities.items()} == \
        {k: replace(v, ratio_source="") for k, v in b.commodities.items()}
    assert a.inter_spreads == b.inter_spreads
    assert a.business_date == b.business_date and a.exchange_complex == b.exchange_complex


def test_pa2_round_trip_of_every_record_type(tmp_path: Path) -> None:
    """Records 0, 1, 2, 3, C, E, 4, 5, 6, B, 81, 82 written from the layout and read back; the
    file is also read zipped."""
    p = params()
    text = write_pa2(p)
    assert {line[:2] for line in text.splitlines()} == {"0 ", "1 ", "2 ", "3 ", "C ", "E ", "4 ", "5 ", "6 ", "B ",
                                                        "81", "82"}
    _same(parse_pa2(text.splitlines(), "t.pa2"), p)
    (tmp_path / "cme.pa2").write_text(text)
    with zipfile.ZipFile(tmp_path / "cme.zip", "w") as zf:
        zf.writestr("cme.20240626.s.pa2", text)
    _same(load_span_file(tmp_path / "cme.pa2"), p)
    z = load_span_file(tmp_path / "cme.zip")
    _same(z, p)
    assert z.source.endswith("cme.zip:cme.20240626.s.pa2")


def test_xml_round_trip(tmp_path: Path) -> None:
    (tmp_path / "cme.spn").write_text(write_spn_xml(params()))
    back = load_span_file(tmp_path / "cme.spn")
    assert back.file_format == "xml"
    _same(back, params())


def test_published_sample_records_are_read() -> None:
    """Records in the published expanded layout (a ``0`` header and CBOT ``2``/``81`` lines of
    the shape CME publishes): the 81 values are whole dollars, a price rise a gain (negative)."""
    lines = [
        "0 CME   20250620SE     202506201407U2YNCLR        C CUST  H HEDGE 1 CORE  M MAINT ",
        "2 CBT 26    0USD$PN   26        FUT   26        OOF   59        OOF   ",
        "81CBT26        26        FUT 202507            000000000000+00000+00567-00567-00567+00567+01133-01133-01133+00000000284100N",
        "82CBT26        26        FUT 202507            0000000" + "01133+01700-01700-01700+01700+01190-01190+" + "10000+",
    ]
    p = parse_pa2(lines, "sample")
    (c,) = p.contracts
    assert (c.product, c.month, p.business_date) == ("26", 202507, date(2025, 6, 20))
    assert c.risk_array[:5] == (0.0, 0.0, -567.0, -567.0, 567.0)
    assert c.risk_array[9:] == (1133.0, -1700.0, -1700.0, 1700.0, 1700.0, -1190.0, 1190.0)
    assert c.delta == 1.0
    assert p.commodities["26"].products == ("26", "59")


@pytest.mark.parametrize(("record", "mutate", "message"), [
    ("81", lambda line: line[:80], "record '81' is truncated: 80 characters"),
    ("3 ", lambda line: "K " + line[2:], "unknown record type 'K'"),
    ("0 ", lambda line: line[:10] + "2024X626" + line[18:], "business date"),
    ("6 ", lambda line: line[:9] + "00A0000" + line[16:], "credit rate '00A0000' is not a 7-digit number"),
])
def test_malformed_pa2_names_the_line(record: str, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    lines = write_pa2(params()).splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith(record))
    lines[k] = mutate(lines[k])
    with pytest.raises(InputError, match=message) as err:
        parse_pa2(lines, "bad.pa2")
    assert err.value.row == k + 1 and err.value.source == "bad.pa2"


def test_a_field_of_the_wrong_width_is_caught_by_the_next_sign() -> None:
    """A risk array value written with six digits shifts the record: the sign column then holds
    a digit, and the error names the line and the scenario's columns."""
    lines = write_pa2(params()).splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("81"))
    lines[k] = lines[k][:54] + "0" + lines[k][54:]
    with pytest.raises(InputError, match=r"scenario 1 has sign '0'.*wrong width.*columns 55-60") as err:
        parse_pa2(lines, "bad.pa2")
    assert err.value.row == k + 1


def test_malformed_xml_names_the_line(tmp_path: Path) -> None:
    text = write_spn_xml(params()).splitlines()
    k = next(i for i, line in enumerate(text) if "<a>" in line)
    bad = text[:k] + [text[k].replace("<a>", "<a>x")] + text[k + 1:]
    (tmp_path / "bad.spn").write_text("\n".join(bad))
    with pytest.raises(InputError, match="not a number") as err:
        load_span_file(tmp_path / "bad.spn")
    assert err.value.row == k + 1
    (tmp_path / "cut.spn").write_text("\n".join(text[:40]))
    with pytest.raises(InputError, match="not well-formed") as err:
        load_span_file(tmp_path / "cut.spn")
    assert err.value.row is not None


def test_scanning_tier_record_is_noted_not_silently_used() -> None:
    lines = write_pa2(params()).splitlines()
    lines.insert(3, "S 21    1002012024092024090220241220241")
    p = parse_pa2(lines, "t")
    assert any("2 scanning tiers of 21 scanned as one tier" in n for n in p.notes)


def test_risk_array_decimal_locator_of_the_product() -> None:
    """A ``2`` record giving the futures slot decimal locator 2 makes ``01133`` read $11.33; an
    options slot of the same product code keeps its own locator."""
    lines = [
        "0 CME   20250620SE     202506201407U2YNCLR",
        "2 CBT 26    0USD$PN   26        FUT2+ 26        OOF0+ ",
        "81CBT26        26        FUT 202507            0000000" + "00000+00000+01133-01133-01133+01133+02266-02266-02266+",
        "82CBT26        26        FUT 202507            0000000" + "02266+03400-03400-03400+03400+02380-02380+" + "10000+",
    ]
    (c,) = parse_pa2(lines, "t").contracts
    assert c.risk_array[2] == pytest.approx(-11.33) and c.risk_array[12] == pytest.approx(34.0)


def test_writer_refuses_a_value_that_does_not_fit_its_field() -> None:
    """Risk arrays in cents (locator 2) leave 5 digits for at most $999.99: a $1,200 range does
    not fit and the writer names the field instead of shifting the record."""
    with pytest.raises(ValueError, match="scenario 11 1200.0 does not fit 9\\(5\\)"):
        write_pa2(params(), decimals=2)


def test_published_sample_records_of_the_other_types() -> None:
    """Sample records of a 2025 CBOT/NYMEX PA2 file as published with an open-source reader
    (types 3, C, 4, 5, 6, S): each parses to the fields the layout gives."""
    lines = [
        "0 CME   20250620SE     202506201407U2YNCLR",
        "3 06    1001202507202507022025082025080320250920250904202510202511  100010001100",
        "C 06    1001030000100011401A021502B031601A",
        "4 YM    10010120250600000010000000                            00001701001001001",
        "5 CME       06    07    14    31    3CC   71    76    7CC   AUW   BCF   ",
        "6 ALL00010980000NYMNNY-HH 0010000ANYMNNY-HP 0010000B" + " " * 36 + "01",
        "6 ALL00020980000NYMNNY-HH 0010000ANYMNNY-HP 0010000B" + " " * 36 + "04NYMNNY-NG          S00100000001",
        "S 07    20020120250720250702202508202812" + " " * 42 + "2",
    ]
    p = parse_pa2(lines, "sample")
    cc = p.commodities["06"]
    assert cc.intra_tiers[3] == Tier(4, 202510, 202511)
    assert cc.initial_ratio == {"member": 1.0, "hedger": 1.0, "speculator": 1.1}
    (butterfly,) = cc.intra_spreads  # legs 1-3: a 1:2:1 butterfly over tiers 14, 15, 16
    assert (butterfly.priority, butterfly.rate) == (1, 100.0)
    assert [(leg.key, leg.ratio, leg.side) for leg in butterfly.legs] == [("14", 1.0, "A"), ("15", 2.0, "B"),
                                                                         ("16", 1.0, "A")]
    assert p.commodities["YM"].spot_charges == (SpotCharge(202506, 1.0, 0.0),)
    (spread,) = p.inter_spreads  # the scanning-based (method 04) one is noted, not applied
    assert spread.rate == pytest.approx(0.98)
    assert [(leg.key, leg.ratio, leg.side) for leg in spread.legs] == [("NY-HH", 1.0, "A"), ("NY-HP", 1.0, "B")]
    assert any("method 04" in n for n in p.notes)
    assert any("tiered inter-commodity spreading of 07" in n for n in p.notes)
    assert any("weighted futures price risk method 2 of 07" in n for n in p.notes)
