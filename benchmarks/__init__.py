"""Benchmarks: each compares the node with a bare baseline measured in the same run (`python -m benchmarks.<name>`)."""
