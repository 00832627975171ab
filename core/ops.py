"""Pure forward/backward pairs for the transformer's building blocks.

Each `*_forward` returns `(out, cache)`; each `*_backward(dout, cache)` returns input and parameter
gradients. No state, no autograd graph; the model chains these by hand. Optional `out`-style buffers
let the model reuse memory between steps; row sums go through BLAS (matrix-vector products), and
scalars stay in the arrays' dtype so float32 arrays never fall into float64 loops.
"""

import numpy as np

# tanh-approximation GELU written with one tanh and the sigmoid identity 0.5 * (1 + tanh(u)) == sigmoid(2u)
_GELU_A = 0.044715
_GELU_K = np.sqrt(2.0 / np.pi)

_trace = None  # a list while a benchmark records this process's matmuls, else None


def set_matmul_trace(trace):
    """Record every matmul made through `mm` into `trace` (a list), or stop recording (None)."""
    global _trace
    _trace = trace


def mm(a, b, out=None):
    """np.matmul, with an optional record of the operands for the benchmark's matmul-only replay."""
    if _trace is not None:
        _trace.append((a, b, out))
    return np.matmul(a, b, out=out)


def _rowdot_einsum(a, b):
    """(N,) dot products of the rows of a and b, both (N, C)."""
    return np.einsum("ij,ij->i", a, b)


_rowdot = getattr(np, "vecdot", _rowdot_einsum)  # numpy >= 2.0 has vecdot (faster); 1.26 has not


def _ones(n, dtype):
    return np.ones(n, dtype)  # (n,)


def embedding_forward(w, idx):
    """Look up rows of `w` (V, C) for integer ids `idx` (B, T)."""
    out = w[idx]  # (B, T, C)
    return out, (idx, w.shape)


def embedding_backward(dout, cache, dw=None, onehot=None):
    """Scatter-add `dout` (B, T, C) back into a (V, C) gradient; repeated ids accumulate.

    A one-hot (V, N) matrix product: one BLAS call instead of np.add.at's slow scatter. `dw` (V, C)
    and `onehot` (V, N, dout's dtype) may be buffers.
    """
    idx, shape = cache
    V, C = shape
    flat = idx.reshape(-1)  # (N,)
    if onehot is None:
        onehot = np.empty((V, flat.size), dout.dtype)
    np.equal(flat[None, :], np.arange(V)[:, None], out=onehot, casting="unsafe")  # (V, N) of 0 and 1
    return mm(onehot, dout.reshape(-1, C), out=dw)  # (V, C)


def linear_forward(x, w, b, out=None):
    """y = x @ w + b for x (..., Cin), w (Cin, Cout), b (Cout,); `out` (N, Cout) may be a buffer."""
    x2 = x.reshape(-1, x.shape[-1])  # (N, Cin)
    out = mm(x2, w, out=out)  # (N, Cout)
    out += b
    return out.reshape(*x.shape[:-1], w.shape[1]), (x2, w)


def linear_backward(dout, cache, dw=None, db=None, dx=None):
    """Return (dx, dw, db); `dw`/`db`/`dx` (N, Cin) may be preallocated buffers to write into."""
    x2, w = cache
    d2 = dout.reshape(-1, w.shape[1])  # (N, Cout)
    dx = mm(d2, w.T, out=dx).reshape(*dout.shape[:-1], w.shape[0])  # (..., Cin)
    dw = mm(x2.T, d2, out=dw)  # (Cin, Cout)
    db = np.matmul(_ones(d2.shape[0], d2.dtype), d2, out=db)  # (Cout,) column sums as a BLAS gemv
    return dx, dw, db


def _normalize(x2, eps, xhat=None):
    """Rows of x2 (N, C) shifted to zero mean and scaled to unit variance: (xhat (N, C), rstd (N,)).

    `xhat` receives the result. x2 itself is not kept.
    """
    C = x2.shape[-1]
    t = x2.dtype.type
    mean = x2 @ np.full(C, 1.0 / C, x2.dtype)  # (N,) a BLAS matrix-vector product
    xhat = np.subtract(x2, mean[:, None], out=xhat)  # (N, C)
    var = _rowdot(xhat, xhat)  # (N,) without an (N, C) array of squares
    var *= t(1.0 / C)
    var += t(eps)
    rstd = np.sqrt(var, out=var)
    np.reciprocal(rstd, out=rstd)  # (N,)
    xhat *= rstd[:, None]
    return xhat, rstd


def _normalize_backward(dxhat, xhat, rstd, a, e, tmp=None):
    """dx = rstd (dxhat + a + xhat e), written into dxhat (N, C), where a = -mean(dxhat) and
    e = -mean(dxhat xhat) per row (N,) come from the caller, which has them cheaply."""
    dxhat += a[:, None]
    dxhat += np.multiply(xhat, e[:, None], out=tmp)
    dxhat *= rstd[:, None]
    return dxhat


def layernorm_forward(x, w, b, eps=1e-5, out=None, xhat=None):
    """Normalise the last axis of x (..., C) to zero mean and unit variance, then scale and shift.

    `out` and `xhat` (N, C) may be buffers; x itself is not kept, so the caller may overwrite it.
    """
    C = x.shape[-1]
    xhat, rstd = _normalize(x.reshape(-1, C), eps, xhat=xhat)  # (N, C), (N,)
    out = np.multiply(xhat, w, out=out)  # (N, C)
    out += b
    return out.reshape(x.shape), (xhat, rstd, w, x.shape)


def layernorm_backward(dout, cache, dx=None, tmp=None):
    """Return (dx, dw, db) for layernorm_forward; `dx`, `tmp` (N, C) may be buffers."""
    xhat, rstd, w, shape = cache
    C = xhat.shape[-1]
    neg_inv_c = xhat.dtype.type(-1.0 / C)
    d2 = dout.reshape(-1, C)  # (N, C)
    ones = _ones(d2.shape[0], d2.dtype)  # (N,)
    prod = np.multiply(d2, xhat, out=tmp)  # (N, C) dout * xhat
    dw = ones @ prod  # (C,)
    db = ones @ d2  # (C,)
    a = (d2 @ w) * neg_inv_c  # (N,) -mean(dout w)
    e = (prod @ w) * neg_inv_c  # (N,) -mean(dout w xhat)
    dx = _normalize_backward(np.multiply(d2, w, out=dx), xhat, rstd, a, e, tmp=prod)  # (N, C)
    return dx.reshape(shape), dw, db


def layernorm_linear_forward(x, ln_w, ln_b, w, b=None, eps=1e-5, out=None, xhat=None, col_scale=None, fold=None):
    """linear(layernorm(x)) with the LayerNorm's gain g and shift beta folded into the weights:
    (xhat g + beta) @ w + b == xhat @ (g[:, None] w) + (beta @ w + b).

    The fold spares two passes over (N, Cin) forward and one backward; only small (Cin, Cout)
    products are added. x (..., Cin), w (Cin, Cout), b (Cout,) or None. `col_scale` (Cout,), if
    given, multiplies the output's columns the same way, for free (attention's 1/sqrt(hs) on q).
    Buffers: `out` (N, Cout), `xhat` (N, Cin), `fold` (Cin, Cout) for the folded weights, which
    the backward consumes. Returns (y (..., Cout), cache).
    """
    Cin, Cout = w.shape
    xhat, rstd = _normalize(x.reshape(-1, Cin), eps, xhat=xhat)  # (N, Cin), (N,)
    w_fold = np.multiply(w, ln_w[:, None], out=fold)  # (Cin, Cout)
    b_fold = ln_b @ w  # (Cout,)
    if b is not None:
        b_fold += b
    if col_scale is not None:
        w_fold *= col_scale
        b_fold *= col_scale
    y = mm(xhat, w_fold, out=out)  # (N, Cout)
    y += b_fold
    return y.reshape(*x.shape[:-1], Cout), (xhat, rstd, ln_w, ln_b, w, w_fold, b is not None, col_scale, x.shape)


def layernorm_linear_backward(dout, cache, dw=None, db=None, dx=None, tmp=None, dw_t=None):
    """Return (dx, d ln_w, d ln_b, dw, db) for layernorm_linear_forward (db is None without a bias).

    Buffers: `dw` (Cin, Cout), `db` (Cout,), `dx` and `tmp` (N, Cin). `dw_t` (Cout, Cin), given
    instead of `dw`, receives the weight gradient transposed (a tied head's (V, C) embedding
    gradient); the returned dw is then its transposed view.
    """
    xhat, rstd, ln_w, ln_b, w, w_fold, has_bias, col_scale, shape = cache
    Cin, Cout = w.shape
    d2 = dout.reshape(-1, Cout)  # (N, Cout)
    dxhat = mm(d2, w_fold.T, out=dx)  # (N, Cin)
    m = mm(xhat.T, d2, out=dw) if dw_t is None else mm(d2.T, xhat, out=dw_t).T  # (Cin, Cout) xhat^T dout
    col = np.matmul(_ones(d2.shape[0], d2.dtype), d2, out=db if has_bias else None)  # (Cout,) column sums
    if col_scale is not None:  # the scaled columns' gradients, as if dout had been scaled
        m *= col_scale
        col *= col_scale
    d_ln_w = _rowdot(m, w)  # (Cin,)
    d_ln_b = w @ col  # (Cin,)
    m *= ln_w[:, None]  # the weight saw xhat g + beta: dw = g (xhat^T dout) + beta (x) col
    m += np.multiply(ln_b[:, None], col[None, :], out=w_fold)  # w_fold, used above, is scratch now
    neg_inv_c = xhat.dtype.type(-1.0 / Cin)
    a = dxhat @ np.full(Cin, neg_inv_c, xhat.dtype)  # (N,) -mean(dxhat)
    e = _rowdot(dxhat, xhat)  # (N,)
    e *= neg_inv_c  # -mean(dxhat xhat)
    dx = _normalize_backward(dxhat, xhat, rstd, a, e, tmp=tmp)  # (N, Cin)
    return dx.reshape(shape), d_ln_w, d_ln_b, m, (col if has_bias else None)


def gelu_forward(x, out=None, scratch=None, grad=True, overwrite=False):
    """GELU, tanh approximation: y = x s with s = 0.5 (1 + tanh(k (x + a x^3))).

    With `grad`, the derivative dy/dx = s + y z' (1 - s), z' = 2k (1 + 3a x^2), is the cache. It
    is made here, while x, s and y are fresh in cache, mostly by in-place passes, as
    1 - (1 - s)(1 - y z'); with `overwrite` it is written over x, which the caller then gives up.
    `out` (for y) and `scratch` (for s) may be buffers of x's shape.
    """
    t = x.dtype.type
    s = np.multiply(x, x, out=None if scratch is None else scratch.reshape(x.shape))  # (..., C)
    s *= t(_GELU_K * _GELU_A)
    s += t(_GELU_K)
    s *= x  # k (x + a x^3)
    np.tanh(s, out=s)
    s *= t(0.5)
    s += t(0.5)
    y = np.multiply(x, s, out=None if out is None else out.reshape(x.shape))  # (..., C)
    if not grad:
        return y, None
    d = np.multiply(x, x, out=x if overwrite else None)  # (..., C) x^2
    d *= t(-6.0 * _GELU_A * _GELU_K)
    d -= t(2.0 * _GELU_K)  # -z'
    d *= y
    d += t(1.0)  # 1 - y z'
    np.subtract(t(1.0), s, out=s)  # 1 - s
    d *= s
    np.subtract(t(1.0), d, out=d)  # s + y z' (1 - s)
    return y, d


def gelu_backward(dout, cache, out=None):
    """dx = dout * gelu'(x), with the derivative gelu_forward left in the cache; the result goes
    into `out` (may be dout itself), else over the cache."""
    return np.multiply(dout, cache, out=cache if out is None else out)


_EXP_SAFE = 60.0  # exp(60) ~ 1e26: even 10^5 such terms sum far below float32's largest number
_MIN_ROW_SUM = 1e-20  # a row summing to more keeps its largest terms well inside normal numbers


def softmax_rows(x, out=None, scratch=None):
    """Softmax over the last axis of x (..., n), into `out` (may be x itself); returns it.

    Softmax does not change when a row is shifted. The usual shift by the row's max guards exp
    against overflow and a row against underflowing to all zeros, but a max along a short last axis
    is numpy's slowest reduction (a third of attention's softmax). So when the largest value
    anywhere is small, exp runs unshifted and is kept if every row's sum is comfortably normal;
    otherwise the row-max path runs on the untouched input. `scratch` (x's shape) may be a buffer.
    """
    ones = _ones(x.shape[-1], x.dtype)  # (n,)
    if np.maximum.reduce(x, axis=None) < x.dtype.type(_EXP_SAFE):  # False for NaN: the usual path
        e = np.exp(x, out=out if out is not None and out is not x else scratch)
        s = e @ ones  # (...,) row sums as BLAS matrix-vector products
        if np.minimum.reduce(s, axis=None) > _MIN_ROW_SUM:
            np.reciprocal(s, out=s)
            return np.multiply(e, s[..., None], out=e if out is None else out)
    out = np.subtract(x, np.maximum.reduce(x, axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    s = out @ ones  # (...,)
    np.reciprocal(s, out=s)
    out *= s[..., None]
    return out


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


def cross_entropy_forward(logits, targets, ignore_index=-1, out=None, soft=None, soft_weight=1.0):
    """Mean softmax cross-entropy over positions whose target != ignore_index.

    logits (B, T, V), targets (B, T). Returns (loss, cache); a batch with no valid target has loss 0.
    `out` (N, V) may be a buffer for the probabilities, which the cache keeps.
    soft (B, T, V) probabilities (distillation): each valid position's target distribution is then
    soft_weight * soft + (1 - soft_weight) * one-hot(target), and the loss its cross-entropy.
    """
    V = logits.shape[-1]
    l2 = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,)
    n = int(valid.sum())
    probs = softmax_rows(l2, out=out)  # (N, V)
    tv = np.where(valid, t, 0)  # (N,)
    tiny = np.finfo(logits.dtype).tiny
    nll = -np.log(np.maximum(probs[np.arange(t.size), tv], tiny))  # (N,)
    q = None
    if soft is not None:
        q = soft.reshape(-1, V)  # (N, V)
        soft_nll = -(q * np.log(np.maximum(probs, tiny))).sum(-1)  # (N,)
        nll = soft_weight * soft_nll + (1.0 - soft_weight) * nll
    loss = float((nll * valid).sum() / max(n, 1))
    return loss, (probs, tv, valid, n, logits.shape, q, soft_weight)


def cross_entropy_backward(cache, dloss=1.0):
    """Gradient of the mean cross-entropy with respect to the logits, (B, T, V)."""
    probs, tv, valid, n, shape, q, w = cache
    d = probs  # (N, V), the cache is consumed
    if q is None:
        d[np.arange(tv.size), tv] -= 1.0
    else:  # softmax minus the target distribution
        d -= (w * q).astype(d.dtype, copy=False)
        d[np.arange(tv.size), tv] -= d.dtype.type(1.0 - w)
    d *= (valid * (dloss / max(n, 1))).astype(d.dtype)[:, None]
    return d.reshape(shape)
