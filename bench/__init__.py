"""Benchmarks, run by hand (``python -m bench``), never as timed assertions in the test suite."""
