"""The clearinghouses' own file formats: CME SPAN risk parameter files (PA2 positional and
SPAN XML), FIXML position and margin requirement reports, a plain FICC position export, and
the reconciliation of our requirements against the margin actually called."""
