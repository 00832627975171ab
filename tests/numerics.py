"""float32 error model for the tests that compare two float32 paths (e.g. KV-cache decoding against the
batch forward): each path is checked against a float64 twin of the same model, within a bound derived
from the magnitudes involved, so no tolerance depends on which BLAS kernel runs."""

import numpy as np

from core.model import Transformer

EPS32 = float(np.finfo(np.float32).eps)


def float64_twin(m):
    """The same model (same parameters, exactly widened) computing in float64."""
    return Transformer(m.cfg, params={k: v.astype(np.float64) for k, v in m.params.items()}, dtype=np.float64)


def logit_bound(m, ids):
    """(V,) rounding bound for float32 logits of the last position of ids.

    A float32 path rounds the residual stream x at every one of the L blocks' adds, with absolute error
    ~ eps * max|x| each; the final LayerNorm divides by the row's std (times rstd), so xhat carries
    ~ (L + 1) * eps * max|x| * rstd of error, which the head's dot product sums with weights
    |ln_f.w * W_j| over C channels. A large common offset in x (cancelled by LayerNorm's centring)
    enters through max|x|; the dot product's own rounding is the same order and folded in.
    """
    m64 = float64_twin(m)
    ids = np.asarray([ids])
    logits64, _ = m64.forward(ids)
    xhat, rstd = m64._cache[3][:2]  # the final LayerNorm's normalised rows and 1/std, (N, C) and (N, 1)
    xhat, rstd = xhat.reshape(-1, m.cfg.n_embd)[-1], float(np.ravel(rstd)[-1])
    x0 = m64.params["wte.w"][ids[0, -1]]  # the embedding carries the common offset, if any
    mag = (np.abs(x0).max() + np.abs(xhat).max() / rstd) * rstd  # max|x| / std of the row
    head = np.abs(m64.head_weight() * m64.params["ln_f.w"][:, None])  # (C, V) |g_c W_cj|
    depth = m.cfg.n_layer + 1
    return logits64[0, -1], 4 * EPS32 * depth * mag * head.sum(0)


def assert_float32_close(got, ref64, bound, what):
    """Every entry of a float32 path's result within its rounding bound of the float64 truth."""
    err = np.abs(np.asarray(got, np.float64) - ref64)
    worst = int(np.argmax(err / bound))
    assert np.all(err <= bound), (f"{what}: |error| {err[worst]:.3g} at {worst} exceeds the float32 bound "
                                  f"{bound[worst]:.3g} (logit {ref64[worst]:.4g})")
    return float((err / bound).max())
