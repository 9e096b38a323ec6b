"""Benchmarks, run by hand (not in CI); they print their figures."""
