"""Regression tests for the nine attacks of issue 15 that main did not hold, each as described.

API attacks run against a real ``xmargin serve`` process (the demo book on the demo's date);
file attacks run the readers and the CLI.  Numbered as in the issue.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from xmargin.cli.main import app
from xmargin.engine.trades import CLOCK_TOLERANCE, check_time, parse_row, parse_time, session_open
from xmargin.errors import InputError
from xmargin.masterdata import load_master
from xmargin.portfolio.fields import MAX_QUANTITY
from xmargin.portfolio.io import read_portfolio
from xmargin.reference.eligibility import load_eligibility
from xmargin.reference.lookup import parse_instrument
from xmargin.reports.csv_safe import SafeDictWriter, SafeWriter, safe_cell
from xmargin.service.testing import ServerProcess

AS_OF = date(2024, 6, 26)
HEADER = "account,member,account_type,instrument,quantity,cross_margin\n"
BOOK = HEADER + "BASIS,M1,house,91282CKQ3,10000000,true\nBASIS,M1,house,ZNU24,-129,true\n"


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("serve-attacks"), data_dir=data_dir, members=2, customers=10)
    with srv:
        yield srv


@pytest.fixture(scope="module")
def master(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_master(data_dir)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, text


def _one_line_error(code: int, text: str, *needles: str) -> None:
    assert code == 2, text
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("recorded market snapshot")]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for n in needles:
        assert n in lines[0], lines[0]


def _read(path: Path, master) -> object:  # type: ignore[no-untyped-def]
    return read_portfolio(path, as_of=AS_OF, master=master, eligibility=load_eligibility())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- 1. one member blocks every member


def test_1_far_future_time_is_refused_and_blocks_nobody(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.api, timeout=60) as c:
        r = c.post("/trades", json={"trade_id": "atk1-far", "account": "CM01-HOUSE", "instrument": "ZNU24",
                                    "quantity": 1, "time": "9999-12-31T23:59:59Z"}, headers=server.headers("CM01"))
        assert r.status_code == 422, r.text
        assert "future" in r.text
        # a time at the edge of the clock tolerance is accepted ...
        edge = (datetime.now(UTC) + CLOCK_TOLERANCE - timedelta(seconds=20)).isoformat()
        r = c.post("/trades", json={"trade_id": "atk1-edge", "account": "CM01-HOUSE", "instrument": "ZNU24",
                                    "quantity": 1, "time": edge}, headers=server.headers("CM01"))
        assert r.status_code == 201, r.text
        # ... and another member's trade at the real time, same clearinghouse, is not blocked by it
        for member, account in (("CM02", "CM02-HOUSE"), ("CM01", "CM01-C0001")):
            r = c.post("/trades", json={"trade_id": f"atk1-{account}", "account": account, "instrument": "ZNU24",
                                        "quantity": 1}, headers=server.headers(member))
            assert r.status_code == 201, r.text
        # same account, earlier time: still out of order (ordering is per account)
        r = c.post("/trades", json={"trade_id": "atk1-back", "account": "CM01-HOUSE", "instrument": "ZNU24",
                                    "quantity": 1, "time": _now()}, headers=server.headers("CM01"))
        assert r.status_code == 422 and "out of order" in r.text, r.text
        # before the as-of date's session (the FICC side too)
        r = c.post("/trades", json={"trade_id": "atk1-old", "account": "CM01-HOUSE", "instrument": "91282CKQ3",
                                    "quantity": 1_000_000, "time": "2001-01-01T00:00:00Z"},
                   headers=server.headers("CM01"))
        assert r.status_code == 422 and "session" in r.text, r.text


def test_1_time_bounds_at_the_edges(master) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2025, 11, 3, 15, 0, tzinfo=UTC)
    opens = session_open(date(2025, 11, 3))
    assert opens == datetime(2025, 11, 2, 23, 0, tzinfo=UTC)  # 17:00 CST (UTC-6) on Sunday 2 November
    assert session_open(date(2025, 7, 1)) == datetime(2025, 6, 30, 22, 0, tzinfo=UTC)  # 17:00 CDT (UTC-5)
    assert check_time(opens, as_of=date(2025, 11, 3), now=now) == opens
    with pytest.raises(InputError, match="before the 2025-11-03 session"):
        check_time(opens - timedelta(microseconds=1), as_of=date(2025, 11, 3), now=now)
    assert check_time(now + CLOCK_TOLERANCE, as_of=date(2025, 11, 3), now=now)
    with pytest.raises(InputError, match="in the future"):
        check_time(now + CLOCK_TOLERANCE + timedelta(seconds=1), as_of=date(2025, 11, 3), now=now)
    row = {"trade_id": "x", "account": "A", "member": "M", "account_type": "house", "instrument": "ZNU24",
           "quantity": "1", "time": "2099-01-01T00:00:00Z"}
    with pytest.raises(InputError) as exc:
        parse_row(row, as_of=AS_OF, master=master, src="t.csv", n=2)
    assert (exc.value.source, exc.value.row, exc.value.field) == ("t.csv", 2, "time")


# ---------------------------------------------------------------- 2. explicit instruments that stall pricing


@pytest.mark.parametrize(("code", "why"), [
    ("UST:5:9999-12-31", "more than 31 years"),
    ("UST:5:2055-06-27", "more than 31 years"),  # 31 years and a day after the as-of date
    ("UST:20.5:2030-01-01", "outside [0, 20]%"),
    ("UST:0:9999-12-31", "more than 31 years"),
])
def test_2_explicit_instrument_bounds(code: str, why: str, master) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_instrument(code, as_of=AS_OF, master=master)


def test_2_bounds_are_inclusive(master) -> None:  # type: ignore[no-untyped-def]
    assert parse_instrument("UST:20:2055-06-26", as_of=AS_OF, master=master).maturity == date(2055, 6, 26)
    assert parse_instrument("UST:0:2024-06-27", as_of=AS_OF, master=master).maturity == date(2024, 6, 27)


def test_2_what_if_with_sixty_far_instruments_is_refused(server: ServerProcess) -> None:
    book = [{"account": "CM01-HOUSE", "member": "CM01", "account_type": "house",
             "instrument": f"UST:{i / 10:g}:9999-12-31", "quantity": 1_000_000} for i in range(60)]
    with httpx.Client(base_url=server.api, timeout=60) as c:
        r = c.post("/what-if/portfolio", json=book, headers=server.headers("CM01"))
    assert r.status_code == 422, r.text
    assert "31 years" in r.text


# ---------------------------------------------------------------- 3. OverflowError in parse_time


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_3_times_out_of_range_are_input_errors(text: str) -> None:
    with pytest.raises(InputError, match="out of range"):
        parse_time(text, source="t.csv", row=2)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_3_api_answers_422_not_500(server: ServerProcess, text: str) -> None:
    with httpx.Client(base_url=server.api, timeout=60) as c:
        for tid in ("atk3-new", "atk1-CM01-C0001"):  # a new trade, and the replay check of a known id
            r = c.post("/trades", json={"trade_id": tid, "account": "CM01-C0001", "instrument": "ZNU24",
                                        "quantity": 1, "time": text}, headers=server.headers("CM01"))
            assert r.status_code in (409, 422), r.text


def test_3_ingest_is_a_one_line_error(tmp_path: Path, data_dir: Path) -> None:
    f = tmp_path / "trades.csv"
    f.write_text("trade_id,account,member,account_type,instrument,quantity,time\n"
                 "T1,A1,M1,house,ZNU24,1,9999-12-31T23:59:59-14:00\n")
    code, text = _cli("ingest", str(f), "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--as-of", "2024-06-26",
                      "--data-dir", str(data_dir))
    _one_line_error(code, text, "row 2", "out of range")


# ---------------------------------------------------------------- 4. duplicate headers


@pytest.mark.parametrize("header", ["quantity", " quantity"])
def test_4_duplicate_header_is_an_error(tmp_path: Path, master, data_dir: Path, header: str) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "dup.csv"
    f.write_text(HEADER.rstrip("\n") + f",{header}\n" + "BASIS,M1,house,91282CKQ3,10000000,true,1\n")
    with pytest.raises(InputError, match="duplicate column") as exc:
        _read(f, master)
    assert (exc.value.row, exc.value.field) == (1, "quantity")
    code, text = _cli("margin", str(f), "--as-of", "2024-06-26", "--data-dir", str(data_dir))
    _one_line_error(code, text, "duplicate column")


def test_4_duplicate_header_in_a_trades_file(tmp_path: Path, master) -> None:  # type: ignore[no-untyped-def]
    from xmargin.engine.trades import read_events

    f = tmp_path / "t.csv"
    f.write_text("trade_id,account,member,account_type,instrument,quantity,time,time\nT1,A,M,house,ZNU24,1,x,y\n")
    with pytest.raises(InputError, match="duplicate column"):
        read_events(f, as_of=AS_OF, master=master)


# ---------------------------------------------------------------- 5. one quantity bound


@pytest.mark.parametrize(("instrument", "qty"), [("ZNU24", "1e308"), ("91282CKQ3", "1e308"),
                                                  ("ZNU24", "-1e14"), ("91282CKQ3", "10000000000001")])
def test_5_quantities_beyond_the_bound_are_refused_in_files(tmp_path: Path, master, instrument: str,  # type: ignore[no-untyped-def]
                                                            qty: str) -> None:
    f = tmp_path / "big.csv"
    f.write_text(HEADER + f"A,M1,house,{instrument},{qty},true\n")
    with pytest.raises(InputError, match="largest quantity") as exc:
        _read(f, master)
    assert (exc.value.row, exc.value.field) == (2, "quantity")


def test_5_the_bound_itself_is_accepted(tmp_path: Path, master) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "max.csv"
    f.write_text(HEADER + f"A,M1,house,ZNU24,{MAX_QUANTITY:.0f},true\n")
    book = _read(f, master)
    assert book.positions_of(0) == [("ZNU24", MAX_QUANTITY)]  # type: ignore[attr-defined]


def test_5_futures_1e308_via_the_cli_is_a_one_line_error(tmp_path: Path, data_dir: Path) -> None:
    f = tmp_path / "big.csv"
    f.write_text(HEADER + "A,M1,house,ZNU24,1e308,true\n")
    code, text = _cli("margin", str(f), "--as-of", "2024-06-26", "--data-dir", str(data_dir))
    _one_line_error(code, text, "row 2", "quantity")


def test_5_parquet_trades_and_api_share_the_bound(tmp_path: Path, master, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from xmargin.engine.trades import read_events

    table = pa.table({"account": ["A"], "member": ["M1"], "account_type": ["house"], "instrument": ["91282CKQ3"],
                      "quantity": [1e308]})
    pq.write_table(table, tmp_path / "big.parquet")
    with pytest.raises(InputError, match="largest quantity"):
        _read(tmp_path / "big.parquet", master)
    t = tmp_path / "t.csv"
    t.write_text(f"trade_id,account,member,account_type,instrument,quantity,time\nT1,A,M,house,ZNU24,1e308,{_now()}\n")
    with pytest.raises(InputError, match="largest quantity"):
        read_events(t, as_of=AS_OF, master=master)
    with httpx.Client(base_url=server.api, timeout=60) as c:
        r = c.post("/what-if/trade", json={"account": "CM01-HOUSE", "instrument": "91282CKQ3", "quantity": 1e308},
                   headers=server.headers("CM01"))
    assert r.status_code == 422, r.text


# ---------------------------------------------------------------- 6. matured securities


def test_6_matured_security_is_refused_everywhere(tmp_path: Path, master, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="has matured"):
        parse_instrument("UST:4:0001-01-01", as_of=AS_OF, master=master)
    with pytest.raises(InputError, match="has matured"):  # maturing on the as-of date is matured too
        parse_instrument("UST:4:2024-06-26", as_of=AS_OF, master=master)
    old = next(r.cusip for r in master.records.values() if r.definition is not None and r.maturity < AS_OF)
    with pytest.raises(InputError, match="has matured"):
        parse_instrument(old, as_of=AS_OF, master=master)
    f = tmp_path / "old.csv"
    f.write_text(HEADER + f"A,M1,house,{old},1000000,true\n")
    with pytest.raises(InputError, match="has matured") as exc:
        _read(f, master)
    assert (exc.value.row, exc.value.field) == (2, "instrument")
    with httpx.Client(base_url=server.api, timeout=60) as c:
        h = server.ledger_head()
        r = c.post("/trades", json={"trade_id": "atk6", "account": "CM01-HOUSE", "instrument": "UST:4:0001-01-01",
                                    "quantity": 1_000_000}, headers=server.headers("CM01"))
        assert r.status_code == 422 and "matured" in r.text, r.text
        assert server.ledger_head() == h


# ---------------------------------------------------------------- 7. Latin-1, binary, not a database


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_7_latin1_and_binary_files_are_one_line_errors(tmp_path: Path, master, data_dir: Path,  # type: ignore[no-untyped-def]
                                                       suffix: str) -> None:
    latin = tmp_path / f"latin{suffix}"
    body = BOOK.replace("BASIS", "BASÉ") if suffix == ".csv" else json.dumps(
        [{"account": "BASÉ", "member": "M1", "account_type": "house", "instrument": "ZNU24", "quantity": 1}],
        ensure_ascii=False)
    latin.write_bytes(body.encode("latin-1"))
    binary = tmp_path / f"binary{suffix}"
    binary.write_bytes(bytes(range(256)) * 8)
    for f in (latin, binary):
        with pytest.raises(InputError):
            _read(f, master)
        code, text = _cli("margin", str(f), "--as-of", "2024-06-26", "--data-dir", str(data_dir))
        _one_line_error(code, text, str(f.name))


def test_7_latin1_trades_file_is_a_one_line_error(tmp_path: Path, data_dir: Path) -> None:
    f = tmp_path / "trades.csv"
    f.write_bytes(("trade_id,account,member,account_type,instrument,quantity,time\n"
                   f"T1,BASÉ,M1,house,ZNU24,1,{_now()}\n").encode("latin-1"))
    code, text = _cli("ingest", str(f), "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--as-of", "2024-06-26",
                      "--data-dir", str(data_dir))
    _one_line_error(code, text, "UTF-8")
    assert not (tmp_path / "l.db").exists() or "0 entries" not in text


@pytest.mark.parametrize("content", [b"this is not a database\n" * 10, bytes(range(256)) * 64])
def test_7_ledger_verify_on_a_non_database(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "not.db"
    f.write_bytes(content)
    code, text = _cli("ledger", "verify", "--ledger", f"sqlite:///{f}")
    _one_line_error(code, text, "not.db")


# ---------------------------------------------------------------- 8. strict API models


@pytest.mark.parametrize("body", [
    {"quantity": True}, {"quantity": "5"}, {"quantity": 5, "cross_margin": 1}, {"quantity": 5, "cross_margin": "yes"},
])
def test_8_lax_coercion_is_refused(server: ServerProcess, body: dict) -> None:
    base = {"trade_id": "atk8", "account": "CM01-C0002", "instrument": "ZNU24"}
    with httpx.Client(base_url=server.api, timeout=60) as c:
        h = server.ledger_head()
        r = c.post("/trades", json={**base, **body}, headers=server.headers("CM01"))
        assert r.status_code == 422, r.text
        assert server.ledger_head() == h
        r = c.post("/what-if/trade", json={k: v for k, v in {**base, **body}.items() if k != "trade_id"},
                   headers=server.headers("CM01"))
        assert r.status_code == 422, r.text


def test_8_an_integer_quantity_is_still_a_number(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.api, timeout=60) as c:
        r = c.post("/what-if/trade", json={"account": "CM01-C0002", "instrument": "ZNU24", "quantity": 5},
                   headers=server.headers("CM01"))
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- 9. CSV injection


FORMULA = "=cmd|' /C calc'!A0"


@pytest.mark.parametrize(("cell", "written"), [
    (FORMULA, "'" + FORMULA), ("+1+cmd", "'+1+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("-450", "-450"), ("-1.5e6", "-1.5e6"), ("A=B", "A=B"), (-3.0, -3.0), ("", ""),
])
def test_9_formula_prefixes_are_neutralised(cell: object, written: object) -> None:
    assert safe_cell(cell) == written


def test_9_formula_account_name_in_csv_outputs(tmp_path: Path) -> None:
    out = tmp_path / "accounts.csv"
    with out.open("w", newline="") as fh:
        SafeWriter(fh).writerows([["account", "total"], [FORMULA, "-12.50"]])
    with (tmp_path / "portfolio.csv").open("w", newline="") as fh:
        dw = SafeDictWriter(fh, fieldnames=["account", "quantity"])
        dw.writeheader()
        dw.writerow({"account": FORMULA, "quantity": "-129"})
    for f in (out, tmp_path / "portfolio.csv"):
        rows = list(csv.reader(f.open(newline="")))
        assert rows[1][0] == "'" + FORMULA and rows[1][1].startswith("-1")
        assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)


def test_7_ledger_verify_on_a_binary_export(tmp_path: Path) -> None:
    f = tmp_path / "export.jsonl"
    f.write_bytes(b"\xff\xfe\x00" + bytes(range(256)))
    code, text = _cli("ledger", "verify", "--file", str(f))
    _one_line_error(code, text, "not a ledger export")


# ---------------------------------------------------------------- signed checkpoints over HTTP (same server)


def test_member_fetches_a_proof_of_its_own_entries_only(server: ServerProcess, tmp_path: Path) -> None:
    from xmargin.ledger.replica import check_member_proof
    from xmargin.ledger.signing import generate_keys, load_public_keys

    generate_keys(tmp_path / "keys", ["FICC"])
    with httpx.Client(base_url=server.api, timeout=60) as c:
        r = c.get("/accounts/CM01-HOUSE/proof", headers=server.headers("CM01"))
        assert r.status_code == 404 and "no signed checkpoint" in r.text, r.text
        code, text = _cli("ledger", "checkpoint", "--ledger", server.ledger, "--key", str(tmp_path / "keys" / "FICC.key"),
                          "--signer", "FICC")
        assert code == 0, text
        cps = c.get("/ledger/checkpoints", headers=server.headers("CM02")).json()["checkpoints"]
        assert len(cps) == 1 and 0 < cps[0]["seq"] <= server.ledger_head()[0] and cps[0]["signer"] == "FICC"
        r = c.get("/accounts/CM01-HOUSE/proof", headers=server.headers("CM01"))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["entries"] and "CM02" not in json.dumps(doc)
        assert len(check_member_proof(doc, load_public_keys(tmp_path / "keys"))) == len(doc["entries"])
        assert c.get("/accounts/CM01-HOUSE/proof", headers=server.headers("CM02")).status_code == 404
