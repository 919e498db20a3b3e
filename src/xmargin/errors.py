"""Exceptions raised by xmargin.

Every error a user can cause names what to fix: the file, the row (1-based, the header is
row 1) and the field where the problem sits, and what was expected.  Code catches the
base class :class:`XMarginError`; the CLI prints its message and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class XMarginError(Exception):
    """Base class of every error xmargin raises on purpose."""


class InputError(XMarginError, ValueError):
    """Bad input data: a file, a row or a field that cannot be used.

    ``source`` is the file (or a label such as ``"command line"``), ``row`` the 1-based line
    number in that file (the header is row 1), ``field`` the column or argument name.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.source is not None:
            where.append(self.source)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownInstrumentError(InputError):
    """An instrument identifier that is neither a known CUSIP, a ``UST:`` form nor a symbol."""


class NotSupportedError(InputError):
    """A real instrument the engine cannot price yet (TIPS, FRNs, ...)."""


class MissingMarketDataError(XMarginError, LookupError):
    """No market data for the requested date or series."""


class ExpiredContractError(InputError):
    """A futures contract that has expired at the as-of date."""


class CalculationError(XMarginError, RuntimeError):
    """A calculation that could not complete (e.g. a curve that failed to bootstrap)."""
