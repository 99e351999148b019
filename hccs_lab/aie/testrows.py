"""Int8 test rows that stress a softmax kernel: shared by the tests, benchmarks and notebook."""
from __future__ import annotations

import numpy as np


def hard_rows(n: int, count: int, seed: int) -> np.ndarray:
    """Random rows mixed with the hard cases: ties at the max, one max, all equal, -128/127 extremes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(count, n)).astype(np.int8)
    kind = rng.integers(0, 7, size=count)
    narrow = rng.integers(90, 128, size=(count, n)).astype(np.int8)  # close to the max: unclipped d
    x[kind == 1] = narrow[kind == 1]
    x[kind == 2] = rng.integers(-128, 128, size=(int((kind == 2).sum()), 1)).astype(np.int8)  # all equal
    ext = rng.choice(np.array([-128, 127], dtype=np.int8), size=(count, n))
    x[kind == 3] = ext[kind == 3]  # only the two extremes: d = 255 wraps correctly in uint8
    single = np.full((count, n), -128, np.int8)
    single[np.arange(count), rng.integers(0, n, count)] = 127  # a single max, everything else far
    x[kind == 4] = single[kind == 4]
    ties = narrow.copy()
    ties[:, : n // 2] = 127  # half the row tied at the max
    x[kind == 5] = rng.permuted(ties[kind == 5], axis=1)
    return x
