"""The benchmark\x27s harness (experiments/benchmark.py): families, sides, turns, report."""
