"""CUSIP check digits, on every real CUSIP in the data.

Independent references:

* the CUSIPs published by U.S. Treasury in the auction results and in FedInvest's price file
  (``securities/SOURCE.md``: "All 453 CUSIP check digits valid"); every one carries a check
  digit computed by CUSIP Global Services;
* the "Modulus 10 Double Add Double" rule of the CUSIP standard (ANSI X9.6), re-implemented
  below in its textbook form (letters to 10..35, ``*``/``@``/``#`` to 36..38, double every
  second character, add the *digits* of the results, check digit ``(10 - sum mod 10) mod 10``),
  and the widely cited example 037833100 (Apple Inc. common stock, check digit 0).
"""

from __future__ import annotations

import csv
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmargin.reference.cusip import cusip_check_digit, is_valid_cusip, looks_like_cusip

ALPHABET = string.digits + string.ascii_uppercase + "*@#"


def _reference_check_digit(base8: str) -> int:
    """ANSI X9.6 modulus 10 double-add-double, written from the standard's description."""
    digits_sum = 0
    for position, ch in enumerate(base8, start=1):
        value = ALPHABET.index(ch)
        if position % 2 == 0:
            value *= 2
        digits_sum += sum(int(c) for c in str(value))
    return (10 - digits_sum % 10) % 10


def _real_cusips(data_dir: Path) -> set[str]:
    out: set[str] = set()
    for name in ("auctions.csv", "fedinvest_prices_2024-06-26.csv"):
        with (data_dir / "securities" / name).open(newline="") as fh:
            out.update(row["cusip"].strip() for row in csv.DictReader(fh))
    return out


def test_every_real_cusip_validates(data_dir: Path) -> None:
    cusips = _real_cusips(data_dir)
    assert len(cusips) > 3000  # 3,212 auctioned CUSIPs + 10 FedInvest-only old bonds
    bad = sorted(c for c in cusips if not is_valid_cusip(c))
    assert bad == []
    assert all(cusip_check_digit(c[:8]) == _reference_check_digit(c[:8]) for c in cusips)


def test_changed_check_digit_fails_for_every_real_cusip(data_dir: Path) -> None:
    """Any other last digit is rejected (the check digit is unique)."""
    for cusip in _real_cusips(data_dir):
        for digit in "0123456789":
            if digit != cusip[8]:
                assert not is_valid_cusip(cusip[:8] + digit), cusip[:8] + digit


def test_published_examples() -> None:
    assert is_valid_cusip("037833100")  # Apple Inc.
    assert is_valid_cusip("91282CKQ3")  # 4.375% note 2034-05-15 (FedInvest spot check)
    assert is_valid_cusip("912810UA4")  # 4.625% bond 2054-05-15
    assert is_valid_cusip("91282ckq3")  # case-insensitive
    assert not is_valid_cusip("91282CKQ4")


@pytest.mark.parametrize("text", ["", "91282CKQ", "91282CKQ3X", "91282CKQ-", "91282CKQA", "9128 2CKQ3"])
def test_malformed_strings_are_not_cusips(text: str) -> None:
    assert not is_valid_cusip(text)


def test_looks_like_cusip_does_not_check_the_digit() -> None:
    assert looks_like_cusip("91282CKQ4")
    assert not is_valid_cusip("91282CKQ4")


@given(st.text(alphabet=ALPHABET, min_size=8, max_size=8))
def test_check_digit_matches_reference_on_any_base(base8: str) -> None:
    assert cusip_check_digit(base8) == _reference_check_digit(base8)
    assert is_valid_cusip(base8 + str(_reference_check_digit(base8)))


@given(st.text(alphabet=ALPHABET, min_size=8, max_size=8), st.integers(0, 7), st.sampled_from(ALPHABET))
def test_single_character_substitution_agrees_with_reference(base8: str, pos: int, ch: str) -> None:
    """A changed character is rejected exactly when the reference rule's check digit changes.

    (Double-add-double is not a perfect code: in the alphabet of 39 characters some
    substitutions keep the digit sum mod 10; the reference rule decides which.)
    """
    changed = base8[:pos] + ch + base8[pos + 1 :]
    check = str(_reference_check_digit(base8))
    assert is_valid_cusip(changed + check) == (_reference_check_digit(changed) == int(check))
