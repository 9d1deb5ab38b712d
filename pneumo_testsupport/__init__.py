"""Helpers shared by the tests (tests/) and the benchmarks (bench/), so that neither imports the other.

On the path of both: pytest's ``pythonpath`` (pyproject.toml) for ``python -m pytest tests``; for a bench script the
checkout root (``python -m bench.x``), or the one line a script run as ``python bench/x.py`` inserts. Not part of
the ``pneumo`` package: the wheel does not ship it.
"""
