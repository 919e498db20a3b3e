"""xmargin: cross-margining risk engine for U.S. Treasuries (FICC) and CME interest-rate futures."""

__version__ = "0.1.0"
