"""Canonical JSON and the hash chain.

Every ledger entry is one canonical JSON document, its **payload**::

    {"data": {...}, "kind": "trade", "ref": "T-1", "seq": 17, "source": "FICC",
     "time": "2025-10-31T14:30:00.000000Z", "timestamp": "2025-10-31T14:30:00.120113Z"}

* ``seq``: 1, 2, 3, ... without gaps; ``timestamp``: when the ledger recorded it (UTC);
  ``time``: the event's own business time (trades, cancels, collateral; ``null`` for the
  engine's events); ``source``: ``FICC``, ``CME`` or ``engine``; ``ref``: the trade,
  cancel or movement id (``null`` otherwise).
* Encoding: keys sorted, no whitespace (``separators=(",", ":")``), UTF-8 (non-ASCII kept),
  integers as JSON integers, booleans and ``null`` as such, and **every float as a JSON
  string holding its shortest round-trip decimal** (Python ``repr``: ``0.1`` -> ``"0.1"``,
  ``1e6`` -> ``"1000000.0"``), so ``float(text)`` gives back the exact double and no JSON
  library can reformat a number.  NaN and infinities are refused (results write ``null``).

``hash = SHA-256(previous hash + payload)`` (hex of the UTF-8 bytes of the concatenated
text); the first entry's previous hash is 64 zeros (:data:`GENESIS`).  Since ``seq``,
``timestamp``, ``kind`` and ``source`` are inside the payload, any change to an entry, a
missing entry or two swapped entries break the chain at that point.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64


def normalize(value: Any) -> Any:
    """The JSON-ready form of ``value`` under the rules above."""
    t = type(value)  # the exact built-in types first (most of every payload), same results as below
    if t is str or t is bool or t is int or value is None:
        return value
    if t is float:
        if value - value != 0.0:  # NaN or an infinity
            raise ValueError(f"{value} cannot be written to the ledger (use null)")
        return repr(value)
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"ledger keys must be strings, got {k!r}")
            out[k] = normalize(v)
        return out
    if t is list or t is tuple:
        return [normalize(v) for v in value]
    return _normalize_other(value)


def _normalize_other(value: Any) -> Any:
    """:func:`normalize` of subclasses, other mappings and NumPy scalars."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written to the ledger (use null)")
        return repr(float(value))
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"ledger keys must be strings, got {k!r}")
            out[k] = normalize(v)
        return out
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    # numpy scalars and the like
    if hasattr(value, "item"):
        return normalize(value.item())
    raise TypeError(f"cannot write {type(value).__name__} to the ledger")


def canonical_json(value: Any) -> str:
    return json.dumps(normalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(previous: str, payload: str) -> str:
    return hashlib.sha256((previous + payload).encode("utf-8")).hexdigest()
