"""Bias audits of classifiers: metrics by group, counterfactual term swaps, and reweighing as mitigation.

- ``audit.py``: fairlearn ``MetricFrame`` by group (accuracy, macro-F1, per-label selection rate and recall, n),
  gaps between groups with bootstrap intervals, demographic-parity and equalized-odds differences, and whether
  tuning widened or narrowed the gaps against the best baseline;
- ``counterfactual.py``: swap term pairs (he/she, ...) in the test texts, predict again, count label flips;
- ``reweigh.py``: Kamiran & Calders (2012) weights that make group and label independent in training;
- ``summary.py``: the findings in plain language; ``pipeline.py``: the hooks in ``tailor run`` and ``tailor audit``.

The recipe's ``fairness`` section drives it; nothing here is imported (nor fairlearn) unless an audit is asked for.
"""
