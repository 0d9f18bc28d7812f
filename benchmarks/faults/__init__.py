"""Fault-injection sections of ``benchmarks/bench_faults.py`` and the case lists its tests share."""
