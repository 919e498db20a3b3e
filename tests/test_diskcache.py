"""The on-disk context cache (:mod:`xmargin.diskcache`): entries load what was built, arrays come
back memory-mapped and read-only, and a damaged, stale or foreign entry is rebuilt, never used.

The reference for every "same result" check is the object built without the cache in the same
test (``XMARGIN_CACHE_DIR=off``), compared element by element.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin import diskcache
from xmargin.diskcache import cached, entry_path, master_files_key


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("XMARGIN_CACHE_DIR", str(root))
    return root


def _counter() -> tuple[list[int], object]:
    calls: list[int] = []

    def build() -> dict[str, object]:
        calls.append(1)
        return {"matrix": np.arange(20_000, dtype=np.float64).reshape(100, 200), "name": "x", "n": len(calls)}

    return calls, build


def test_round_trip_is_memory_mapped_and_read_only(cache: Path) -> None:
    calls, build = _counter()
    first = cached("t", {"k": 1}, build)
    second = cached("t", {"k": 1}, build)
    assert calls == [1]  # built once, then read
    np.testing.assert_array_equal(second["matrix"], first["matrix"])
    assert second["n"] == 1
    m = second["matrix"]
    assert not m.flags.writeable  # a view into the mapping: shared, not copied
    base = m
    while getattr(base, "base", None) is not None and not isinstance(base, memoryview):
        base = base.base
    assert isinstance(base, memoryview)
    assert m.ctypes.data % 64 == 0  # buffers aligned


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_damaged_entries_are_rebuilt(cache: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    calls, build = _counter()
    cached("t", {"k": 2}, build)
    path = entry_path("t", {"k": 2}, cache)
    assert path is not None and path.is_file()
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-100] ^= 0x01  # one bit of the matrix
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = bytearray(b"not a cache entry at all" * 10)
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="xmargin.cache"):
        again = cached("t", {"k": 2}, build)
    assert calls == [1, 1]  # rebuilt, the damaged entry was not used
    assert again["n"] == 2
    np.testing.assert_array_equal(again["matrix"], np.arange(20_000, dtype=np.float64).reshape(100, 200))
    assert "rebuilt" in caplog.text
    assert cached("t", {"k": 2}, build)["n"] == 2 and calls == [1, 1]  # rewritten whole


def test_an_entry_renamed_to_another_key_is_not_trusted(cache: Path) -> None:
    calls, build = _counter()
    cached("t", {"k": 3}, build)
    a, b = entry_path("t", {"k": 3}, cache), entry_path("t", {"k": 4}, cache)
    assert a is not None and b is not None
    os.replace(a, b)
    cached("t", {"k": 4}, build)
    assert calls == [1, 1]


def test_changed_data_file_changes_the_key(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "securities").mkdir(parents=True)
    (root / "yields").mkdir()
    auctions = root / "securities" / "auctions.csv"
    auctions.write_text("cusip\n912828A00\n")
    (root / "yields" / "par_yield_curve.csv").write_text("date\n")
    before = master_files_key(root)
    auctions.write_text("cusip\n912828A01\n")  # same size, other content
    after = master_files_key(root)
    assert before != after
    (root / "securities" / "fedinvest_prices_2024-06-26.csv").write_text("x\n")  # a new price file
    assert master_files_key(root) != after


def test_cache_off_and_unsafe_directories_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, build = _counter()
    monkeypatch.setenv("XMARGIN_CACHE_DIR", "off")
    cached("t", {"k": 5}, build)
    cached("t", {"k": 5}, build)
    assert calls == [1, 1]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # others may write here: they could plant a pickle
    monkeypatch.setenv("XMARGIN_CACHE_DIR", str(shared))
    cached("t", {"k": 5}, build)
    assert list(shared.iterdir()) == []


def test_default_location_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMARGIN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert diskcache.cache_dir() == tmp_path / "xdg" / "xmargin" / "context"


def test_context_from_cache_equals_context_built(cache: Path, data_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached context (rows of >= 64 instruments) is the context built without any cache, in
    a fresh process each (no in-process memo can hide a difference)."""
    script = (
        "import sys, numpy as np\n"
        "from datetime import date\n"
        "from xmargin.market.snapshot import load_snapshot\n"
        "from xmargin.masterdata import load_master\n"
        "from xmargin.margin.context import build_context\n"
        "from xmargin.pricing.revalue import InstrumentUniverse\n"
        "snap = load_snapshot(date(2024, 6, 26), data_dir=sys.argv[1])\n"
        "master = load_master(snap.data_dir)\n"
        "recs = master.notes_and_bonds(outstanding_on=snap.as_of)[:80]\n"
        "u = InstrumentUniverse.of([master.definition(r.cusip) for r in recs])\n"
        "ctx = build_context(snap, master, u)\n"
        "np.savez(sys.argv[2], f=ctx.ficc_pnl.pnl, c=ctx.cme_pnl.pnl, dv01=ctx.attributes.dv01,\n"
        "         fw=ctx.attributes.floor_weight, scen=ctx.ficc_scenarios.par_yields, span=ctx.span.scan_range,\n"
        "         filled=ctx.ficc_pnl.filled)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = {}
    for run, where in (("off", "off"), ("cold", str(cache)), ("warm", str(cache))):
        target = cache.parent / f"{run}.npz"
        subprocess.run([sys.executable, "-c", script, str(data_dir), str(target)], check=True,
                       env={**env, "XMARGIN_CACHE_DIR": where}, timeout=600)
        out[run] = np.load(target)
    names = {p.name.split("-")[0] for p in cache.iterdir()}
    assert {"scenarios", "span", "snapshot", "securities"} <= names  # context rows: only without residual factors
    for run in ("cold", "warm"):
        for k in out["off"].files:
            np.testing.assert_array_equal(out[run][k], out["off"][k], err_msg=f"{run}: {k}")


def test_second_price_command_reads_the_cache(cache: Path, data_dir: Path) -> None:
    env = {**os.environ, "XMARGIN_CACHE_DIR": str(cache), "XMARGIN_DATA": str(data_dir),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-c", "from xmargin.cli.main import main; main()", "price", "ZNU24", "--as-of", date(2024, 6, 26).isoformat(),
           "--format", "json"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert any(n.startswith("securities-master") for n in stamps)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True)
    assert second.stdout == first.stdout
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps  # read, nothing rewritten


def _residual_context(data_dir: Path, futures: Path):
    """A context of 70 rows (cached on disk: >= 64) over notes, bonds, Treasury futures and
    SOFR futures, residual factors on, the futures basis read from ``futures``."""
    import dataclasses

    from xmargin.margin.context import build_context
    from xmargin.margin.params import MarginParams
    from xmargin.market.snapshot import load_snapshot
    from xmargin.masterdata import load_master
    from xmargin.pricing.revalue import InstrumentUniverse
    from xmargin.reference.lookup import parse_instrument

    snap = load_snapshot(date(2024, 6, 26), data_dir=data_dir)
    master = load_master(snap.data_dir)
    futs = [parse_instrument(s, as_of=snap.as_of, master=master)
            for s in ("ZTU24", "ZFU24", "ZNU24", "TNU24", "ZBU24", "UBU24", "ZNZ24", "SR3U24", "ZQQ24")]
    cash = [master.definition(r.cusip) for r in master.notes_and_bonds(outstanding_on=snap.as_of)[:61]]
    params = MarginParams()
    params = dataclasses.replace(params, residual=dataclasses.replace(params.residual, futures_history=str(futures)))
    return build_context(snap, master, InstrumentUniverse.of([*futs, *cash]), params)


def _margins(ctx) -> dict[str, np.ndarray]:
    import dataclasses

    import scipy.sparse as sp

    from xmargin.margin.calculator import margins_for_positions

    rng = np.random.default_rng(14)
    q = rng.integers(-50, 51, size=(12, len(ctx.universe))).astype(float)
    q[rng.random(q.shape) < 0.8] = 0.0  # sparse books mixing futures and cash
    q[:, :9] = rng.integers(-200, 201, size=(12, 9))  # every account holds futures: the basis matters
    out = margins_for_positions(ctx, sp.csr_matrix(q), np.arange(12) % 3 != 0)
    return {f.name: np.asarray(getattr(out, f.name)) for f in dataclasses.fields(out)}


def test_residual_rows_come_from_the_cache_and_follow_the_futures_files(
        cache: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The residual-factor rows ride in the cached context rows: a warm context (its residual
    loadings and P&L read-only views of the entry) gives margins identical to a context built
    with the cache off; changing one futures price file changes the key (a new entry, new
    basis changes) and the margins are again those of a fresh build on the changed file."""
    import shutil

    futures = tmp_path / "futures"
    futures.mkdir()
    for f in (data_dir / "futures").glob("*.csv"):  # a scratch copy the test may change (temporary)
        shutil.copy(f, futures / f.name)
    cold = _residual_context(data_dir, futures)
    assert cold.residual is not None and any(f.startswith("basis:") for f in cold.residual.factors)
    rows_entries = sorted(p.name for p in cache.glob("context-rows-*.xmc"))
    assert len(rows_entries) == 1
    warm = _residual_context(data_dir, futures)
    assert warm.residual is not None
    assert not warm.residual.loadings.flags.writeable and not warm.ficc_pnl.pnl.flags.writeable  # from the entry
    monkeypatch.setenv("XMARGIN_CACHE_DIR", "off")
    fresh = _residual_context(data_dir, futures)
    assert fresh.residual is not None and fresh.residual.loadings.flags.writeable
    assert warm.residual.factors == fresh.residual.factors
    for name in ("loadings", "ficc_changes", "cme_changes"):
        np.testing.assert_array_equal(getattr(warm.residual, name), getattr(fresh.residual, name), err_msg=name)
    np.testing.assert_array_equal(warm.ficc_pnl.pnl, fresh.ficc_pnl.pnl)
    np.testing.assert_array_equal(warm.cme_pnl.pnl, fresh.cme_pnl.pnl)
    want = _margins(fresh)
    for k, v in _margins(warm).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)

    # one futures file changes (every other ZN close a quarter point higher): a new key
    zn = futures / "ZN.csv"
    lines = zn.read_text().splitlines()
    for i in range(1, len(lines), 2):
        cols = lines[i].split(",")
        cols[4] = repr(float(cols[4]) + 0.25)
        lines[i] = ",".join(cols)
    zn.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("XMARGIN_CACHE_DIR", str(cache))
    changed = _residual_context(data_dir, futures)
    assert len(list(cache.glob("context-rows-*.xmc"))) == 2  # not the old entry: a new one
    assert changed.residual is not None
    k = changed.residual.factors.index("basis:ZN")
    assert not np.array_equal(changed.residual.ficc_changes[k], warm.residual.ficc_changes[k])
    monkeypatch.setenv("XMARGIN_CACHE_DIR", "off")
    fresh_changed = _residual_context(data_dir, futures)
    np.testing.assert_array_equal(changed.ficc_pnl.pnl, fresh_changed.ficc_pnl.pnl)
    want = _margins(fresh_changed)
    got = _margins(changed)
    for key, v in got.items():
        np.testing.assert_array_equal(v, want[key], err_msg=key)
    assert not np.array_equal(got["cme_standalone"], _margins(warm)["cme_standalone"])  # reaches the margins
