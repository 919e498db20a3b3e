"""Benchmarks for xmargin.

Each ``bench_*.py`` runs alone (``python -m benchmarks.bench_batch``) and exposes ``run(...)``
returning its rows; ``python -m benchmarks`` (or ``xmargin bench``) runs them all side by side
and prints one table of ratios against each baseline (see ``benchmarks/__main__.py``).
"""
