"""Benchmarks: each a module runnable as `.venv/bin/python -m benchmarks.<name>`."""
