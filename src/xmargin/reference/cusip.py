"""CUSIP identifiers: the 9-character codes Treasury securities trade under."""

from __future__ import annotations

import re

_CUSIP_RE = re.compile(r"^[0-9A-Z*@#]{8}[0-9]$")


def _char_value(ch: str) -> int:
    if ch.isdigit():
        return int(ch)
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    return {"*": 36, "@": 37, "#": 38}[ch]


def cusip_check_digit(base8: str) -> int:
    """Check digit of the first eight characters (the "modulus 10 double add double" rule)."""
    total = 0
    for i, ch in enumerate(base8.upper()):
        v = _char_value(ch)
        if i % 2 == 1:
            v *= 2
        total += v // 10 + v % 10
    return (10 - total % 10) % 10


def looks_like_cusip(text: str) -> bool:
    """Nine characters of the CUSIP alphabet ending in a digit (check digit not verified)."""
    return bool(_CUSIP_RE.match(text.upper()))


def is_valid_cusip(text: str) -> bool:
    """True when ``text`` is a well-formed CUSIP whose check digit matches."""
    text = text.upper()
    return looks_like_cusip(text) and cusip_check_digit(text[:8]) == int(text[8])
