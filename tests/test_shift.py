"""Proxy A-distance (adapt/shift.py): near 0 for one distribution split in two, near 2 for separable domains."""

from __future__ import annotations

import numpy as np

from tailorlm.adapt.shift import proxy_a_distance


def test_proxy_a_distance_tells_same_from_separable() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 8))
    assert abs(proxy_a_distance(same[:200], same[200:])["proxy_a_distance"]) < 0.3
    far = proxy_a_distance(rng.normal(size=(200, 8)), rng.normal(loc=3.0, size=(200, 8)))
    assert far["domain_accuracy"] > 0.97 and far["proxy_a_distance"] > 1.9
