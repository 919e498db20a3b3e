"""Benchmarks for xmargin (run as modules, e.g. ``python -m benchmarks.bench_pricing``)."""
