"""Benchmarks of pyflowops (pytest-benchmark), the report script and the correlation demo."""
