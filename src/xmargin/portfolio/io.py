"""Portfolio files: one entry point, :func:`read_portfolio`, that picks the reader by suffix.

* ``.parquet``: :mod:`xmargin.portfolio.parquet` (needs pyarrow);
* anything else: CSV, or JSON for ``.json`` (:mod:`xmargin.portfolio.text`, which documents the
  columns and the JSON forms).

Every problem raises :class:`~xmargin.errors.InputError` naming the file, the row and the field.
Nothing is returned until the whole file is valid.  (The Parquet reader validates doubtful
files through the text reader, so the text reader sits below both and this module above.)
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from xmargin.errors import InputError
from xmargin.portfolio.book import Book
from xmargin.portfolio.parquet import read_parquet
from xmargin.portfolio.text import OPTIONAL, REQUIRED, read_portfolio_data, read_text_portfolio
from xmargin.reference.eligibility import EligibilityRules
from xmargin.reference.securities import SecuritiesMaster

__all__ = ["OPTIONAL", "REQUIRED", "read_portfolio", "read_portfolio_data"]


def read_portfolio(
    path: str | Path,
    *,
    as_of: date,
    master: SecuritiesMaster,
    eligibility: EligibilityRules,
) -> Book:
    """Read and validate a portfolio file (CSV, JSON or Parquet) into a :class:`Book`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("portfolio file not found", source=path)
    if path.suffix.lower() == ".parquet":
        return read_parquet(path, as_of=as_of, master=master, eligibility=eligibility)
    return read_text_portfolio(path, as_of=as_of, master=master, eligibility=eligibility)
