"""``promptlab bench``: a flow (or a raw model) under load on several backends.

The figures follow the definitions of vLLM's serving benchmark
(``benchmarks/benchmark_serving.py``) so that they compare with published ones:
see :mod:`promptlab.bench.metrics`.
"""
