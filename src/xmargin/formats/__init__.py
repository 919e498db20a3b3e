"""The clearinghouses' own file formats: CME SPAN risk parameter files (PA2 positional and
SPAN XML) and SPAN on them, and the reconciliation of our requirements against the margin
actually called.  FIXML positions and the FICC export are portfolio readers
(:mod:`xmargin.portfolio.fixml`, :mod:`xmargin.portfolio.ficc_export`); FIXML margin reports
are a report (:mod:`xmargin.reports.fixml`)."""
