"""Central finite differences in float64, shared by the backward-pass tests."""

import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """d f() / d x by central differences, perturbing x in place."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def rel_error(a, b):
    """Max relative error, with the scale of the gradient as the floor so tiny entries do not dominate."""
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-12)
    return float(np.abs(a - b).max() / scale)
