"""Table 3: training memory and time per method, measured the paper's way (Appendix C).

- :mod:`.measure`: one measurement in one fresh process (``python -m finetune.profiling.measure``).
- :mod:`.runner`: runs measurements one at a time, and the CUDA memory-cap search per method.
- :mod:`.memory_search`: the paper's binary search over a "fits under this cap" oracle, pure.
"""
