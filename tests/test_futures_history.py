"""Futures price history: reading the real continuous series, and clean failures on bad files.

Real data: ``futures/ZN.csv`` etc.; expected prices are the spot values its SOURCE.md lists
(read by a person from the file, not produced by the loader).  Bad-input cases are small
synthetic files written here: the failures they provoke (unknown symbol, duplicate, gap,
off-tick) do not occur in the real files, which is why they are synthetic.
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import InputError
from xmargin.market.futures_history import (
    GapWarning,
    IgnoredFileWarning,
    OffTickWarning,
    contract_key,
    load_futures_history,
)
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.futures import TreasuryFuture
from xmargin.validation.actual_pnl import actual_realised


def d64(*days: str) -> np.ndarray:
    return np.array(days, dtype="datetime64[D]")


@pytest.fixture(scope="module")
def history(data_dir: Path):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_futures_history(data_dir / "futures")


def test_continuous_series_spot_values_and_contracts(history) -> None:  # type: ignore[no-untyped-def]
    zn, zb = history.get("ZN"), history.get("ZB")
    assert set(history.roots) == {"ZT", "ZF", "ZN", "ZB"}
    # SOURCE.md spot values: ZN 2008-12-30 127.296875 (the March 2009 contract after the
    # December roll), 2023-10-19 105.421875 (December 2023); ZB 2008-12-30 141.421875
    assert zn.price_on(np.array([200903, 202312]), d64("2008-12-30", "2023-10-19")).tolist() == [127.296875, 105.421875]
    assert zb.price_on(np.array([200903]), d64("2008-12-30"))[0] == 141.421875
    # the same day asked for another contract: no price (never a roll mixed in)
    assert np.isnan(zn.price_on(np.array([200906]), d64("2008-12-30"))[0])
    # 2020-03-09 lies in the March contract's delivery month: which contract Yahoo follows is
    # ambiguous there, so the row is not used and there is no front
    assert zn.front(d64("2020-03-09"))[0] == -1
    assert np.isnan(zn.price_on(np.array([202003]), d64("2020-03-09"))[0])
    assert zn.front(d64("2020-02-20", "2020-03-25")).tolist() == [202003, 202006]


def test_real_files_warn_about_gap_and_off_tick_closes(data_dir: Path) -> None:
    with warnings.catch_warnings(record=True):
        h = load_futures_history(data_dir / "futures")
    text = "\n".join(h.warnings)
    # SOURCE.md: ZN has no rows 2008-06-20 .. 2008-06-30; early ZT closes are off the grid
    assert "GapWarning" in text and "ZN.csv: no prices from 2008-06-20 to 2008-06-30" in text
    assert "OffTickWarning" in text and "ZT.csv" in text and "2000-08-31" in text


def test_actual_realised_uses_the_held_contract_only(history) -> None:  # type: ignore[no-untyped-def]
    """ZNZ23 from 2023-10-19 (105.421875, SOURCE.md) to 2023-10-24: the P&L per contract is the
    price change times $1,000 a point; a contract with no prices keeps the model figure."""
    znz23, znh24 = TreasuryFuture("ZN", 2023, 12), TreasuryFuture("ZN", 2024, 3)
    universe = InstrumentUniverse.of([znz23, znh24])
    later = history.get("ZN").price_on(np.array([202312]), d64("2023-10-24"))[0]
    out, used = actual_realised(universe, history, date(2023, 10, 19), date(2023, 10, 24), np.array([1.0, 2.0]))
    assert used.tolist() == [True, False]
    assert out[0] == pytest.approx((later - 105.421875) * 1000.0)
    assert out[1] == 2.0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "row", "field", "words"),
    [
        ("2024-06-03,ZNU24,110.5\n2024-06-03,XXU24,1.0\n", 3, "symbol", "unknown futures root"),
        ("2024-06-03,ZNU24,110.5\n2024-06-03,ZNU24,110.5\n", 3, "date", "duplicate settlement of ZNU24"),
        ("2024-06-03,ZNU24,-1\n", 2, "settle", "not a positive number"),
        ("2024-06-03,ZNU24,abc\n", 2, "settle", "not a number"),
        ("2024-13-03,ZNU24,110.5\n", 2, "date", "not a date"),
        ("2024-10-03,ZNU24,110.5\n", 2, "symbol", "expired"),
        ("2024-06-03,ZNQ24,110.5\n", 2, "symbol", "March, June, September, December"),
    ],
)
def test_bad_settlement_file_names_row_and_field(tmp_path: Path, body: str, row: int, field: str, words: str) -> None:
    path = _write(tmp_path / "settle.csv", "date,symbol,settle\n" + body)
    with pytest.raises(InputError) as err:
        load_futures_history(path)
    assert err.value.row == row and err.value.field == field
    assert str(path) in str(err.value) and words in str(err.value)


def test_settlement_file_reads_contracts_and_warns(tmp_path: Path) -> None:
    body = ("date,symbol,settle\n2024-06-03,ZNU24,110.5\n2024-06-03,ZNZ24,110.75\n"
            "2024-06-04,ZNU24,110.51\n2024-06-24,ZNU24,111.0\n2024-06-04,SR3Z24,95.1234\n")
    path = _write(tmp_path / "settle.csv", body)
    with pytest.warns(OffTickWarning) as record:
        h = load_futures_history(path)
    messages = [str(w.message) for w in record]
    assert any("ZNU24" in m and "110.51" in m for m in messages)  # 110.51 is off the 1/256 grid
    assert any("SR3Z24" in m for m in messages)  # 95.1234 is off the 0.0025 grid
    assert "GapWarning" in "\n".join(h.warnings)  # ZNU24: 2024-06-04 -> 2024-06-24
    zn = h.get("ZN")
    assert zn.price_on(np.array([contract_key(2024, 9), contract_key(2024, 12)]), d64("2024-06-03", "2024-06-03")).tolist() == [110.5, 110.75]
    assert zn.front(d64("2024-06-03"))[0] == 202409


def test_bad_continuous_files(tmp_path: Path) -> None:
    header = "date,open,high,low,close,volume\n"
    dup = _write(tmp_path / "ZN.csv", header + "2024-06-03,1,1,1,110.5,10\n2024-06-03,1,1,1,110.5,10\n")
    with pytest.raises(InputError) as err:
        load_futures_history(dup)
    assert err.value.row == 3 and err.value.field == "date"
    noclose = _write(tmp_path / "ZF.csv", "date,open,volume\n2024-06-03,1,10\n")
    with pytest.raises(InputError, match="'settle' or 'close'"):
        load_futures_history(noclose)
    folder = tmp_path / "dir"
    folder.mkdir()
    _write(folder / "ED1.csv", header + "2024-06-03,1,1,1,95.5,10\n")
    _write(folder / "ZB.csv", header + "2024-06-01,1,1,1,120.5,10\n2024-06-03,1,1,1,120.5,10\n")
    with pytest.warns((IgnoredFileWarning, GapWarning)):
        h = load_futures_history(folder)
    assert set(h.roots) == {"ZB"}
    assert any("ED1.csv" in w and "skipped" in w for w in h.warnings)
    assert any("weekend" in w for w in h.warnings)  # 2024-06-01 is a Saturday
    with pytest.raises(InputError, match="not found"):
        load_futures_history(tmp_path / "missing")
