"""Multi-head self-attention on a fused QKV projection: forward/backward pair and a one-step KV path.

Heads are strided views of the (B, T, 3C) projection, never split copies; results are written
straight into (B, T, C) / (B, T, 3C) layouts through strided `out=` views. The cache keeps the
attention probabilities, which the UI draws. Masked weights are exactly zero.
"""

import functools

import numpy as np

from core.ops import mm, softmax_rows

NEG = -1e30  # additive mask: exp(NEG - max) underflows to exactly 0 in float32 and float64


@functools.lru_cache(maxsize=16)
def _causal_bias(T, dtype):
    """The causal (1, 1, T, T) bias, made once per (T, dtype) and shared read-only."""
    bias = np.zeros((1, 1, T, T), dtype=dtype)  # (1, 1, T, T)
    bias[0, 0][np.triu_indices(T, 1)] = NEG
    bias.flags.writeable = False
    return bias


@functools.lru_cache(maxsize=64)
def _step_bias(start, Tn, dtype):
    """(Tn, start + Tn) additive causal bias for new queries at positions start.., shared read-only."""
    end = start + Tn
    bias = np.where(np.arange(end)[None, :] > (start + np.arange(Tn))[:, None], NEG, 0.0).astype(dtype)
    bias.flags.writeable = False
    return bias


def mask_bias(T, causal, key_mask=None, dtype=np.float32):
    """Additive bias (B or 1, 1, T, T): 0 where a query may look, NEG where it may not.

    key_mask (B, T) is True for real tokens; padded keys are hidden from every query. The causal
    bias without padding is a shared read-only array.
    """
    if not causal and key_mask is None:
        return None
    bias = _causal_bias(T, np.dtype(dtype)) if causal else np.zeros((1, 1, T, T), dtype=dtype)
    if key_mask is not None:
        pad = np.where(key_mask, 0.0, NEG).astype(dtype)[:, None, None, :]  # (B, 1, 1, T)
        bias = np.minimum(bias, pad)  # (B, 1, T, T)
    return bias


def _heads(x, n_head):
    """View (B, nh, T, hs) of a (B, T, C) array."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def split_heads(qkv, n_head):
    """Views q, k, v (B, nh, T, hs) of a fused (B, T, 3C) projection."""
    B, T, C3 = qkv.shape
    hs = C3 // (3 * n_head)
    h = qkv.reshape(B, T, 3, n_head, hs)  # (B, T, 3, nh, hs)
    return (h[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # 3 x (B, nh, T, hs)


def rope_tables(n, hs, dtype=np.float32, base=10000.0):
    """Rotary position tables cos, sin (n, hs) for positions 0..n-1.

    Channel j of a head turns with channel j + hs/2 by the angle pos * base^(-2j/hs); `sin` carries
    the sign of each half so that rope(x) = x * cos + swap_halves(x) * sin.
    """
    half = hs // 2
    ang = np.arange(n)[:, None] * base ** (-np.arange(half) / half)[None, :]  # (n, hs/2)
    cos, sin = np.cos(ang), np.sin(ang)
    return (np.concatenate([cos, cos], 1).astype(dtype),  # (n, hs)
            np.concatenate([-sin, sin], 1).astype(dtype))  # (n, hs)


def _halves(x, hs):
    """View of x (..., L) as (..., L // hs, 2, hs // 2): each head's two halves (never a copy, so
    writes through it land in x)."""
    v = x.view()
    v.shape = (*x.shape[:-1], x.shape[-1] // hs, 2, hs // 2)  # raises rather than copy
    return v


def rope_tiled(rope, n_head):
    """(cos, sin) tables (T, hs) repeated for n_head heads side by side: (T, C) each."""
    return tuple(np.tile(t, (1, n_head)) for t in rope)


def rope_forward(x, cos, sin, out=None, hs=None):
    """Rotate the channel pairs of x (..., T, L) by their position's angles: x*cos + swap(x)*sin.

    L is one head (hs = L, tables (T, hs)) or several side by side (hs given, tables tiled to (T, L)
    by rope_tiled): the (B, T, C) layout is rotated in one pass over whole rows, where per-head
    views would iterate over runs of hs/2 numbers.
    """
    hs = hs or x.shape[-1]
    out = np.multiply(x, cos, out=out)
    swapped = _halves(x, hs)[..., ::-1, :]  # each head's second half first
    _halves(out, hs)[...] += swapped * _halves(sin, hs)
    return out


def rope_backward(dy, cos, sin, out=None, hs=None, overwrite=False):
    """The transposed rotation (turn back): dy*cos + swap(dy*sin). overwrite: dy may be used as scratch."""
    hs = hs or dy.shape[-1]
    out = np.multiply(dy, cos, out=out)
    ds = np.multiply(dy, sin, out=dy if overwrite else None)
    _halves(out, hs)[...] += _halves(ds, hs)[..., ::-1, :]
    return out


def attention_forward(qkv, n_head, bias=None, dropout=0.0, rng=None, out=None, work=None, rope=None, scale=None):
    """softmax(scale q k^T + bias) v for each head; returns (y (B, T, C), cache).

    `scale` defaults to 1/sqrt(hs); a caller that folded it into q's projection passes 1.
    Optional buffers: out (B, T, C); work = (qs (B, T, C), att (B, nh, T, T)[, scratch of att's
    shape, free during the forward[, kt (B, nh, hs, T), free after it]]).
    rope = (cos, sin) tables (T, hs): q and k are rotated by position first (relative positions).
    """
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    q, k, v = split_heads(qkv, n_head)  # (B, nh, T, hs)
    scale = qkv.dtype.type(1.0 / np.sqrt(hs) if scale is None else scale)
    qs_buf, att_buf, scratch, kt_buf = (tuple(work or ()) + (None,) * 4)[:4]
    if rope is None:
        qs = q if scale == 1 else np.multiply(q, scale, out=None if qs_buf is None else _heads(qs_buf, n_head))  # (B, nh, T, hs), scaled
    else:  # rotated in the (B, T, C) layout (whole rows), then viewed as heads
        cos, sin = rope_tiled(rope, n_head)  # (T, C) each
        qs = _heads(rope_forward(qkv[:, :, :C], cos * scale, sin * scale, out=qs_buf, hs=hs), n_head)  # (B, nh, T, hs), rotated and scaled
        k = _heads(rope_forward(qkv[:, :, C:2 * C], cos, sin, hs=hs), n_head)  # (B, nh, T, hs), rotated keys
    # BLAS multiplies by a transposed (T, hs) slice far slower than by a row-major (hs, T) one
    kt = _transposed_copy(k, kt_buf)  # (B, nh, hs, T)
    att = mm(qs, kt, out=att_buf)  # (B, nh, T, T)
    if bias is not None:
        att += bias
    softmax_rows(att, out=att, scratch=scratch)  # probabilities, rows sum to 1
    keep = None
    used = att
    if dropout > 0.0 and rng is not None:
        keep = (rng.random(att.shape, dtype=np.float32) >= dropout).astype(att.dtype)
        keep *= att.dtype.type(1.0 / (1.0 - dropout))
        used = att * keep  # (B, nh, T, T)
    if out is None:
        out = np.empty((B, T, C), qkv.dtype)  # (B, T, C)
    mm(used, v, out=out.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3))  # written as (B, T, C)
    return out, (qs, k, v, att, used, keep, scale, n_head, rope, q, out)


def smear_taps(n_head, dtype=np.float32):
    """Initial key taps (2, nh): row 0 weighs a position's own key, row 1 the previous position's.

    Head h starts at a = min(1, floor(4h / nh) / 2) on its own key and 1 - a on the previous one: a
    quarter of the heads key on the previous character alone, a quarter on both, the rest (a = 1)
    start as plain attention. Training moves them.
    """
    a = np.minimum(1.0, np.floor(4 * np.arange(n_head) / n_head) / 2)  # (nh,)
    return np.stack([a, 1.0 - a]).astype(dtype)  # (2, nh)


def smear_columns(taps, C):
    """(a, b) per column (C,) each, from taps (2, nh): every head's pair repeated over its columns."""
    return np.repeat(taps, C // taps.shape[1], axis=1)  # (2, C)


def smear_forward(qkv, taps, n_head, raw=None):
    """Mix each key with the previous position's, in place: k'_t = a k_t + b k_(t-1) per head, with
    (a, b) = taps (2, nh) and k_(-1) = 0. Returns the cache: the raw keys (B, T, C), into `raw` if given.

    With smeared keys a head can match a query on two characters at once (the one before a key and
    the key's own), which a character-level induction head otherwise needs two layers to build.
    """
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    k = qkv[:, :, C:2 * C]  # (B, T, C) view
    if raw is None:
        raw = np.empty((B, T, C), qkv.dtype)
    np.copyto(raw, k)
    a, b = smear_columns(taps, C)  # (C,) each: a head's tap on each of its columns
    k *= a
    k[:, 1:] += raw[:, :-1] * b
    return raw, taps


def smear_backward(dqkv, cache, dtaps):
    """The keys' gradient turned back through the smear, in place in dqkv (B, T, 3C); the taps'
    gradient written into dtaps (2, nh)."""
    raw, taps = cache
    B, T, C3 = dqkv.shape
    C = C3 // 3
    nh = taps.shape[1]
    dk = dqkv[:, :, C:2 * C]  # (B, T, C) view: the smeared keys' gradient
    dtaps[0] = np.einsum("btc,btc->c", dk, raw).reshape(nh, -1).sum(1)  # (nh,)
    dtaps[1] = np.einsum("btc,btc->c", dk[:, 1:], raw[:, :-1]).reshape(nh, -1).sum(1)  # (nh,)
    a, b = smear_columns(taps, C)  # (C,) each
    nxt = dk[:, 1:] * b  # (B, T-1, C): k_t also feeds k'_(t+1)
    dk *= a
    dk[:, :-1] += nxt
    return dqkv


def smear_step(qkv_new, prev, start, taps):
    """smear_forward for new positions [start, start+Tn) of a decoded sequence, in place in qkv_new
    (B, Tn, 3C). prev (B, Tmax, C) keeps b * k_t, each position's share in the next key: the new
    positions' are written, position start-1's is read."""
    B, Tn, C3 = qkv_new.shape
    C = C3 // 3
    a, b = smear_columns(taps, C)  # (C,) each
    k = qkv_new[:, :, C:2 * C]  # (B, Tn, C) view
    np.multiply(k, b, out=prev[:, start:start + Tn])
    k *= a
    if start > 0:
        k += prev[:, start - 1:start + Tn - 1]
    else:
        k[:, 1:] += prev[:, :Tn - 1]
    return qkv_new


def gate_heads(a, cols, fill=None):
    """a * cols (+ fill): each head's columns of the attention output (..., C) scaled, a new array
    (head ablation; cols (C,) repeats each head's factor hs times, fill (C,) is a constant)."""
    g = a * cols  # (..., C)
    if fill is not None:
        g += fill
    return g


def _transposed_copy(x, out=None):
    """x (..., m, n) copied as a contiguous (..., n, m) array, into `out` if given."""
    if out is None:
        return np.ascontiguousarray(x.swapaxes(-1, -2))
    np.copyto(out, x.swapaxes(-1, -2))
    return out


def attention_backward(dy, cache, out=None, work=None, vt=None):
    """Gradient with respect to the fused projection, (B, T, 3C).

    Optional buffers: out (B, T, 3C); work (B, nh, T, T); vt (B, nh, hs, T). The cache's
    probabilities survive.
    Without rope, dy is consumed: it is scaled in place by the score scale (unless 1) once dv is known.
    """
    qs, k, v, att, used, keep, scale, n_head, rope, q, y = cache
    B, nh, T, hs = qs.shape
    dy4 = dy.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    y4 = y.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    if out is None:
        out = np.empty((B, T, 3 * nh * hs), dtype=dy.dtype)  # (B, T, 3C)
    dq, dk, dv = split_heads(out, nh)  # (B, nh, T, hs) views to write into
    mm(used.transpose(0, 1, 3, 2), dy4, out=dv)
    if rope is None and scale != 1:
        # the score scale moves onto dy (contiguous, cheap), so that dq and dk need no scaling
        np.multiply(dy, scale, out=dy)
    datt = mm(dy4, _transposed_copy(v, vt), out=work)  # (B, nh, T, T)
    if keep is not None:
        datt *= keep
    # softmax backward: ds = p * (dp - sum_j dp_j p_j), and sum_j dp_j p_j = dy . y per row (y = used v)
    rowdot = np.einsum("bhtd,bhtd->bht", dy4, y4)[..., None]  # (B, nh, T, 1)
    datt -= rowdot
    datt *= att
    if rope is None:
        mm(datt, k, out=dq)  # datt carries the scale
        mm(datt.transpose(0, 1, 3, 2), q, out=dk)
        return out
    cos, sin = rope_tiled(rope, nh)  # (T, C) each; k and qs are the rotated ones: turn their gradients back
    rows = np.empty((B, T, nh * hs), dy.dtype) if vt is None else vt.reshape(B, T, nh * hs)  # vt is free now
    C = nh * hs
    mm(datt, k, out=_heads(rows, nh))  # (B, nh, T, hs) written as (B, T, C)
    rope_backward(rows, cos * scale, sin * scale, out=out[:, :, :C], hs=hs, overwrite=True)
    mm(datt.transpose(0, 1, 3, 2), qs, out=_heads(rows, nh))
    rope_backward(rows, cos, sin, out=out[:, :, C:2 * C], hs=hs, overwrite=True)
    return out


def attention_step(qkv_new, k_cache, v_cache, start, n_head, rope=None):
    """Attention for new positions [start, start+Tn) against cached keys/values (causal).

    qkv_new (B, Tn, 3C); k_cache, v_cache (B, nh, Tmax, hs) are written in place (keys rotated when
    rope = (cos, sin) tables for positions [start, start+Tn) are given).
    Returns y (B, Tn, C) and the attention probabilities (B, nh, Tn, start+Tn).
    """
    B, Tn, C3 = qkv_new.shape
    C = C3 // 3
    hs = C // n_head
    h = qkv_new.reshape(B, Tn, 3, n_head, hs).transpose(2, 0, 3, 1, 4)  # (3, B, nh, Tn, hs)
    end = start + Tn
    scale = qkv_new.dtype.type(1.0 / np.sqrt(hs))
    if rope is None:
        k_cache[:, :, start:end] = h[1]
        q = h[0] * scale  # (B, nh, Tn, hs)
    else:
        cos, sin = rope
        rope_forward(h[1], cos, sin, out=k_cache[:, :, start:end])
        q = rope_forward(h[0], cos * scale, sin * scale)  # (B, nh, Tn, hs)
    v_cache[:, :, start:end] = h[2]
    att = np.matmul(q, k_cache[:, :, :end].transpose(0, 1, 3, 2))  # (B, nh, Tn, end)
    if Tn > 1:
        att += _step_bias(start, Tn, att.dtype)  # new query i sits at position start+i, sees keys up to it
    softmax_rows(att, out=att)
    y = np.matmul(att, v_cache[:, :, :end])  # (B, nh, Tn, hs)
    return y.transpose(0, 2, 1, 3).reshape(B, Tn, C), att
