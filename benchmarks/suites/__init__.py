"""Benchmark suites of ``python -m benchmarks.run``: ``cpu`` (2-core practical) and ``gpu`` (Qwen2-0.5B/BERT-base)."""
