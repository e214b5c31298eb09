"""Generated demo datasets, one module per task: deterministic from a seed, offline and redistributable.

They feed the README's first command (``tailor demo-data``), the examples and the tests; the real data pipeline in
``tailorlm.data`` never imports them.
"""
