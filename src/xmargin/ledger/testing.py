"""Helpers for testing against a real PostgreSQL server (used by the test suite and CI).

``XMARGIN_TEST_POSTGRES_URL`` names a server and a database the tests may connect to with
the right to ``CREATE DATABASE`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``);
each test gets a fresh database of its own, dropped afterwards.  Without it the PostgreSQL
variants skip, unless ``XMARGIN_REQUIRE_POSTGRES=1``, which makes them fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from xmargin.ledger.store import normalize_url

URL_ENV = "XMARGIN_TEST_POSTGRES_URL"
REQUIRE_ENV = "XMARGIN_REQUIRE_POSTGRES"


def postgres_url() -> tuple[str | None, str]:
    """``(url, why not)``: the server URL, or None and the reason the tests cannot use one."""
    url = os.environ.get(URL_ENV, "").strip()
    if url:
        return url, ""
    return None, (f"PostgreSQL variant not run: set {URL_ENV}=postgresql://USER@HOST:PORT/DB "
                  f"(a server where USER may CREATE DATABASE); {REQUIRE_ENV}=1 makes this a failure")


def postgres_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0", "false", "no")


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the server; yields its URL, drops it afterwards."""
    base = make_url(normalize_url(server_url))
    name = f"xmargin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
