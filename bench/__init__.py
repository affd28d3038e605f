"""Benchmarks for Earshot; see bench/README.md."""
