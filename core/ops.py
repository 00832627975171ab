"""Pure forward/backward pairs for the transformer's building blocks.

Each `*_forward` returns `(out, cache)`; each `*_backward(dout, cache)` returns input and parameter
gradients. No state, no autograd graph; the model chains these by hand. Scalars stay in the arrays'
dtype so float32 arrays never fall into float64 loops.
"""

import numpy as np

# tanh-approximation GELU written with one exp: 0.5 * (1 + tanh(u)) == sigmoid(2u)
_GELU_A = 0.044715
_GELU_K = 2.0 * np.sqrt(2.0 / np.pi)  # the 2 of sigmoid(2u) folded in


def embedding_forward(w, idx):
    """Look up rows of `w` (V, C) for integer ids `idx` (B, T)."""
    out = w[idx]  # (B, T, C)
    return out, (idx, w.shape)


def embedding_backward(dout, cache):
    """Scatter-add `dout` (B, T, C) back into a (V, C) gradient; repeated ids accumulate."""
    idx, shape = cache
    dw = np.zeros(shape, dtype=dout.dtype)  # (V, C)
    np.add.at(dw, idx.reshape(-1), dout.reshape(-1, shape[1]))
    return dw


def linear_forward(x, w, b):
    """y = x @ w + b for x (..., Cin), w (Cin, Cout), b (Cout,)."""
    x2 = x.reshape(-1, x.shape[-1])  # (N, Cin)
    out = x2 @ w  # (N, Cout)
    out += b
    return out.reshape(*x.shape[:-1], w.shape[1]), (x2, w)


def linear_backward(dout, cache, dw=None, db=None):
    """Return (dx, dw, db); `dw`/`db` may be preallocated buffers to write into."""
    x2, w = cache
    d2 = dout.reshape(-1, w.shape[1])  # (N, Cout)
    dx = (d2 @ w.T).reshape(*dout.shape[:-1], w.shape[0])  # (..., Cin)
    if dw is None:
        dw = x2.T @ d2  # (Cin, Cout)
    else:
        np.matmul(x2.T, d2, out=dw)
    if db is None:
        db = d2.sum(axis=0)  # (Cout,)
    else:
        np.sum(d2, axis=0, out=db)
    return dx, dw, db


def layernorm_forward(x, w, b, eps=1e-5):
    """Normalise the last axis of x (..., C) to zero mean and unit variance, then scale and shift."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., C)
    var = np.mean(xc * xc, axis=-1, keepdims=True)  # (..., 1)
    rstd = 1.0 / np.sqrt(var + x.dtype.type(eps))  # (..., 1)
    xhat = xc
    xhat *= rstd  # (..., C), reuses xc's buffer
    out = xhat * w  # (..., C)
    out += b
    return out, (xhat, rstd, w)


def layernorm_backward(dout, cache):
    """Return (dx, dw, db) for layernorm_forward."""
    xhat, rstd, w = cache
    C = xhat.shape[-1]
    d2 = dout.reshape(-1, C)  # (N, C)
    x2 = xhat.reshape(-1, C)  # (N, C)
    dw = np.einsum("nc,nc->c", d2, x2)  # (C,)
    db = d2.sum(axis=0)  # (C,)
    dxhat = dout * w  # (..., C)
    m1 = dxhat.mean(axis=-1, keepdims=True)  # (..., 1)
    m2 = np.einsum("...c,...c->...", dxhat, xhat)[..., None] / xhat.dtype.type(C)  # (..., 1)
    dxhat -= m1
    dxhat -= xhat * m2
    dxhat *= rstd
    return dxhat, dw, db


def gelu_forward(x):
    """GELU, tanh approximation: x * sigmoid(K * (x + a x^3))."""
    t = np.float32 if x.dtype == np.float32 else x.dtype.type
    x2 = x * x  # (..., C)
    u = x2 * t(_GELU_A)
    u += t(1.0)
    u *= x  # x + a x^3
    u *= t(-_GELU_K)
    np.exp(u, out=u)
    u += t(1.0)
    s = np.reciprocal(u, out=u)  # sigmoid(K (x + a x^3))
    out = x * s
    return out, (x, x2, s)


def gelu_backward(dout, cache):
    """d/dx [x s(z)] = s + x s (1 - s) z', with z' = K (1 + 3 a x^2)."""
    x, x2, s = cache
    t = x.dtype.type
    # g = x * z' = K x (1 + 3a x^2), built in x2's buffer (no longer needed after this)
    g = x2
    g *= t(3.0 * _GELU_A * _GELU_K)
    g += t(_GELU_K)
    g *= x
    one_minus = t(1.0) - s  # (..., C)
    g *= one_minus
    g += t(1.0)
    g *= s  # s (1 + x z' (1 - s))
    g *= dout
    return g


def dropout_forward(x, p, rng):
    """Inverted dropout: zero with probability p, scale survivors by 1/(1-p)."""
    if p <= 0.0:
        return x, None
    keep = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype)  # (..., C)
    keep *= x.dtype.type(1.0 / (1.0 - p))
    return x * keep, keep


def dropout_backward(dout, keep):
    """Gradient through the mask used in the forward pass."""
    return dout if keep is None else dout * keep


def cross_entropy_forward(logits, targets, ignore_index=-1):
    """Mean softmax cross-entropy over positions whose target != ignore_index.

    logits (B, T, V), targets (B, T). Returns (loss, cache); a batch with no valid target has loss 0.
    """
    V = logits.shape[-1]
    l2 = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,)
    n = int(valid.sum())
    probs = l2 - l2.max(axis=1, keepdims=True)  # (N, V)
    np.exp(probs, out=probs)
    sums = probs.sum(axis=1, keepdims=True)  # (N, 1)
    probs /= sums
    tv = np.where(valid, t, 0)  # (N,)
    p_t = probs[np.arange(t.size), tv]  # (N,)
    logp = np.log(np.maximum(p_t, np.finfo(logits.dtype).tiny))  # (N,)
    loss = float(-(logp * valid).sum() / max(n, 1))
    return loss, (probs, tv, valid, n, logits.shape)


def cross_entropy_backward(cache, dloss=1.0):
    """Gradient of the mean cross-entropy with respect to the logits, (B, T, V)."""
    probs, tv, valid, n, shape = cache
    d = probs  # (N, V), the cache is consumed
    d[np.arange(tv.size), tv] -= 1.0
    d *= (valid * (dloss / max(n, 1))).astype(d.dtype)[:, None]
    return d.reshape(shape)
