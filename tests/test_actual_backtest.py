"""Backtests on actual futures prices: ``pnl_source`` and the realised futures P&L.

The CME stand-alone model (SPAN, one-day horizon) keeps these runs short.  Expected realised
P&L is computed here from the price file's own closes (hand arithmetic: price change times
$1,000 a point times the quantity); the futures price file is the shared Yahoo ZN series.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.validation.backtest import backtest
from xmargin.workflow import Environment

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

BOOK = """account,member,account_type,instrument,quantity,cross_margin
BASIS,M1,house,91282CKQ3,10000000,true
BASIS,M1,house,ZNU24,-129,true
CASH,M1,house,91282CKQ3,10000000,true
"""


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("abt") / "book.csv"
    path.write_text(BOOK)
    env = Environment.load(date(2024, 7, 1), data_dir=data_dir)
    kw = {"data_dir": env.snapshot.data_dir, "params": env.params, "eligibility": env.eligibility, "model": "cme"}
    return env.read_book(path), kw


def _closes(data_dir: Path) -> dict[str, float]:
    with (data_dir / "futures" / "ZN.csv").open(newline="") as fh:
        return {r["date"]: float(r["close"]) for r in csv.DictReader(fh)}


def test_actual_prices_where_the_history_has_the_contract(setup, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    book, kw = setup
    actual = backtest(book, date(2024, 7, 1), date(2024, 7, 3), pnl="actual", **kw)
    model = backtest(book, date(2024, 7, 1), date(2024, 7, 3), pnl="model", **kw)
    closes = _closes(data_dir)
    days = [str(d) for d in actual.dates]
    nxt = {"2024-07-01": "2024-07-02", "2024-07-02": "2024-07-03", "2024-07-03": "2024-07-05"}
    expected = [-129 * 1000.0 * (closes[nxt[d]] - closes[d]) for d in days]
    np.testing.assert_allclose(actual.pnl[0], expected, rtol=1e-12)
    assert actual.summary(0)["pnl_source"] == "actual"
    assert actual.futures_days[0] == (len(days), len(days))
    assert model.summary(0)["pnl_source"] == "model" and model.futures_days[0][1] == 0
    assert not np.allclose(model.pnl[0], actual.pnl[0])  # the curve misses the basis
    assert actual.summary(1)["pnl_source"] == "model"  # no futures: nothing from actual prices
    assert any("actual prices" in n for n in actual.notes)


def test_roll_gap_of_a_continuous_series_falls_back_to_the_model(setup) -> None:  # type: ignore[no-untyped-def]
    """From 2024-08-28 the position has rolled to ZNZ24 while the front series still follows
    ZNU24 (until its last trading day, 2024-09-19): those days take the model's P&L."""
    book, kw = setup
    r = backtest(book, date(2024, 8, 22), date(2024, 8, 30), **kw)
    total, used = r.futures_days[0]
    assert 0 < used < total
    assert r.summary(0)["pnl_source"] == "model"
