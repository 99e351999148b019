"""Int8 test rows that stress a softmax kernel: shared by the tests, benchmarks and notebook."""
from __future__ import annotations

import numpy as np


def hard_rows(n: int, count: int, seed: int) -> np.ndarray:
    """Random rows mixed with the hard cases, about 1/7 each: uniform; close to the max (distances
    below any clip); all equal; only -128/127 (d = 255 must wrap right in uint8); a single 127
    among -128s; half the row tied at 127."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 7, size=count)
    x = rng.integers(-128, 128, size=(count, n), dtype=np.int8)

    def rows(k):
        return np.flatnonzero(kind == k)

    r = rows(1)
    x[r] = rng.integers(90, 128, size=(r.size, n), dtype=np.int8)
    r = rows(2)
    x[r] = rng.integers(-128, 128, size=(r.size, 1), dtype=np.int8)
    r = rows(3)
    x[r] = np.where(rng.random((r.size, n)) < 0.5, np.int8(-128), np.int8(127))
    r = rows(4)
    x[r] = -128
    x[r, rng.integers(0, n, r.size)] = 127
    r = rows(5)
    t = rng.integers(90, 128, size=(r.size, n), dtype=np.int8)
    t[np.argsort(rng.random((r.size, n)), axis=1) < n // 2] = 127  # a random half of each row at the max
    x[r] = t
    return x
