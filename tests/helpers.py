"""Shared test helpers (not fixtures)."""

import numpy as np


def random_masks(spec, density=0.3, seed=0):
    from archsearch.archs import get_family

    rng = np.random.default_rng(seed)
    return [rng.random(s) < density for s in get_family(spec.family).conv_shapes(spec)]
