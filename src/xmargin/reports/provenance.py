"""Provenance block for every report, statement and JSON document.

What a reader needs to reproduce a number: the as-of date and how it was chosen, every data
file read (path, last date it covers, size, SHA-256), the model parameters' hash (SHA-256 of
their canonical JSON: sorted keys, no spaces), the eligibility lists' and members file's
hashes, the xmargin version and the generation time (UTC, ISO 8601).
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from xmargin.config import (
    AUCTIONS_FILE,
    FEDFUNDS_FILE,
    FEDINVEST_GLOB,
    PAR_YIELDS_FILE,
    SOFR_FILE,
    file_stamp,
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _last_date(path: Path) -> str | None:
    """The latest ISO date in the first column whose name contains ``date`` (CSV files)."""
    if path.suffix.lower() != ".csv":
        return None
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        col = next((k for k, h in enumerate(header) if "date" in h.lower()), None)
        if col is None:
            return None
        best = ""
        for row in reader:
            if len(row) > col and row[col] > best:
                best = row[col]
    return best or None


@lru_cache(maxsize=64)
def _file_record(path: Path, stamp: int) -> dict[str, Any]:
    return {"path": str(path), "last_date": _last_date(path), "bytes": path.stat().st_size,
            "sha256": sha256_file(path)}


def file_record(path: str | Path, role: str) -> dict[str, Any]:
    """``{role, path, last_date, bytes, sha256}`` of one file (cached by modification time)."""
    p = Path(path).resolve()
    return {"role": role, **_file_record(p, file_stamp(p))}


def data_files(data_dir: Path) -> list[dict[str, Any]]:
    """Records of the market and reference data files the engine reads from ``data_dir``."""
    out = []
    for role, rel in (("par yield curves", PAR_YIELDS_FILE), ("SOFR fixings", SOFR_FILE),
                      ("effective fed funds", FEDFUNDS_FILE), ("Treasury auction results", AUCTIONS_FILE)):
        if (data_dir / rel).is_file():
            out.append(file_record(data_dir / rel, role))
    fedinvest = sorted(data_dir.glob(FEDINVEST_GLOB))
    if fedinvest:
        out.append(file_record(fedinvest[-1], "FedInvest prices (coupons)"))
    return out


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def provenance(
    *,
    as_of: date,
    data_dir: Path,
    params: dict[str, Any],
    eligibility: Any = None,
    members: Any = None,
    inputs: dict[str, str | Path] | None = None,
    as_of_rule: str = "",
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """The provenance block (see the module docstring)."""
    from xmargin import __version__

    files = data_files(Path(data_dir))
    for role, path in (inputs or {}).items():
        if path and Path(path).is_file():
            files.append(file_record(path, role))
    out: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "as_of_rule": as_of_rule or "given on the command line",
        "data_files": files,
        "params_sha256": params_hash(params),
        "xmargin_version": __version__,
        "generated_at": (generated_at or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    if eligibility is not None:
        out["eligibility"] = {"source": eligibility.source, "sha256": eligibility.sha256}
    from xmargin.portfolio.members import ASSUMED

    out["registrations"] = members.to_dict() if members is not None else ASSUMED
    return out


def params_table(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A nested parameter dict as ``(dotted name, value)`` rows, for readable reports."""
    rows: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += params_table(value, f"{name}.")
        elif isinstance(value, list | tuple) and value and all(isinstance(v, list | tuple) for v in value):
            rows.append((name, "; ".join(", ".join("open" if x is None else f"{x:g}" if isinstance(x, float) else str(x)
                                                   for x in v) for v in value)))
        else:
            rows.append((name, "-" if value is None or value == [] or value == () else str(value)))
    return rows
