"""Shared fixtures: the real market data and a reproducible hypothesis profile.

The real data lives outside the repository, in ``../shared/data`` relative to the repository
root (see each ``SOURCE.md`` there).  It is never copied into the repository.  When it is
missing the tests fail loudly instead of skipping: a green run always means the checks ran
against the real files.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from xmargin.ledger.testing import postgres_required, postgres_url, temporary_database

# Reproducible property tests: same examples on every run and in CI, no wall-clock deadline
# (QuantLib calls and the first numpy call in a worker can be slow on a loaded machine).
settings.register_profile(
    "xmargin",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("xmargin")

# The on-disk context cache (xmargin.diskcache): one private, temporary directory per test run
# (servers started by the tests inherit it), never the user's cache; removed at exit.
_CACHE = tempfile.mkdtemp(prefix="xmargin-test-cache-")
os.environ["XMARGIN_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``<repo>/../shared/data``; fails (never skips) when the real data is not there."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (path / "yields" / "par_yield_curve.csv").is_file():
        pytest.fail(
            f"real market data not found at {path} (expected yields/par_yield_curve.csv there); "
            "the test suite needs the shared data directory beside the repository",
            pytrace=False,
        )
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger database: an SQLite file, then a new database on the PostgreSQL server of
    ``XMARGIN_TEST_POSTGRES_URL`` (skipped without it, failed with ``XMARGIN_REQUIRE_POSTGRES``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url, why = postgres_url()
    if url is None:
        if postgres_required():
            pytest.fail(f"XMARGIN_REQUIRE_POSTGRES is set: {why}", pytrace=False)
        pytest.skip(why)
    with temporary_database(url) as db:
        yield db


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[Any]:
    """An HTTP client on the module's ``server`` fixture (a real ``xmargin serve`` process)."""
    import httpx

    with httpx.Client(base_url=server.api, timeout=30) as c:
        yield c
