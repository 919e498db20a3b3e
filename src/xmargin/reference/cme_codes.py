"""CME product codes of our futures roots, as CME's SPAN files and FIXML reports name them."""

from __future__ import annotations

#: Product codes CME uses for our roots in SPAN files besides the Globex root itself: CBOT
#: clearing codes (17 Treasury bond, 21 10-year, 25 5-year, 26 2-year, 41 30-day Fed Funds,
#: UBE Ultra bond, TN Ultra 10-year, 3YR 3-year) and the ticker-style aliases.
PRODUCT_ALIASES: dict[str, tuple[str, ...]] = {
    "ZT": ("ZT", "26", "TU"), "Z3N": ("Z3N", "3YR", "Z3"), "ZF": ("ZF", "25", "FV"), "ZN": ("ZN", "21", "TY"),
    "TN": ("TN", "TN1"), "TWE": ("TWE",), "ZB": ("ZB", "17", "US"), "UB": ("UB", "UBE"),
    "SR3": ("SR3",), "SR1": ("SR1",), "ZQ": ("ZQ", "41", "FF"),
}
