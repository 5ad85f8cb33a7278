"""Benchmarks that run the real stack: `python -m bench.export_bench` (`make bench`)."""
