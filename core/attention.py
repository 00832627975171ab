"""Multi-head self-attention on a fused QKV projection: forward/backward pair and a one-step KV path.

Heads are strided views of the (B, T, 3C) projection, never split copies. The cache keeps the
attention probabilities, which the UI draws. Masked weights are exactly zero.
"""

import numpy as np

NEG = -1e30  # additive mask: exp(NEG - max) underflows to exactly 0 in float32 and float64


def mask_bias(T, causal, key_mask=None, dtype=np.float32):
    """Additive bias (B or 1, 1, T, T): 0 where a query may look, NEG where it may not.

    key_mask (B, T) is True for real tokens; padded keys are hidden from every query.
    """
    if not causal and key_mask is None:
        return None
    bias = np.zeros((1, 1, T, T), dtype=dtype)  # (1, 1, T, T)
    if causal:
        bias[0, 0][np.triu_indices(T, 1)] = NEG
    if key_mask is not None:
        pad = np.where(key_mask, 0.0, NEG).astype(dtype)[:, None, None, :]  # (B, 1, 1, T)
        bias = np.minimum(bias, pad)  # (B, 1, T, T)
    return bias


def split_heads(qkv, n_head):
    """Views q, k, v (B, nh, T, hs) of a fused (B, T, 3C) projection."""
    B, T, C3 = qkv.shape
    hs = C3 // (3 * n_head)
    h = qkv.reshape(B, T, 3, n_head, hs)  # (B, T, 3, nh, hs)
    return (h[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # 3 x (B, nh, T, hs)


def attention_forward(qkv, n_head, bias=None, dropout=0.0, rng=None):
    """softmax(q k^T / sqrt(hs) + bias) v for each head; returns (y (B, T, C), cache)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = split_heads(qkv, n_head)  # (B, nh, T, hs)
    scale = qkv.dtype.type(1.0 / np.sqrt(C // n_head))
    att = np.matmul(q, k.transpose(0, 1, 3, 2))  # (B, nh, T, T)
    att *= scale
    if bias is not None:
        att += bias
    att -= att.max(axis=-1, keepdims=True)
    np.exp(att, out=att)
    att /= att.sum(axis=-1, keepdims=True)  # probabilities, rows sum to 1
    keep = None
    used = att
    if dropout > 0.0 and rng is not None:
        keep = (rng.random(att.shape, dtype=np.float32) >= dropout).astype(att.dtype)
        keep *= att.dtype.type(1.0 / (1.0 - dropout))
        used = att * keep  # (B, nh, T, T)
    y = np.matmul(used, v)  # (B, nh, T, hs)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    return y, (q, k, v, att, used, keep, scale, n_head)


def attention_backward(dy, cache):
    """Gradient with respect to the fused projection, (B, T, 3C)."""
    q, k, v, att, used, keep, scale, n_head = cache
    B, nh, T, hs = q.shape
    dy4 = dy.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    dqkv = np.empty((B, T, 3, nh, hs), dtype=dy.dtype)  # (B, T, 3, nh, hs)
    dqkv[:, :, 2] = np.matmul(used.transpose(0, 1, 3, 2), dy4).transpose(0, 2, 1, 3)  # dv
    datt = np.matmul(dy4, v.transpose(0, 1, 3, 2))  # (B, nh, T, T)
    if keep is not None:
        datt *= keep
    # softmax backward: ds = p * (dp - sum(dp * p))
    rowdot = np.einsum("bhij,bhij->bhi", datt, att)[..., None]  # (B, nh, T, 1)
    datt -= rowdot
    datt *= att
    datt *= scale
    dqkv[:, :, 0] = np.matmul(datt, k).transpose(0, 2, 1, 3)  # dq
    dqkv[:, :, 1] = np.matmul(datt.transpose(0, 1, 3, 2), q).transpose(0, 2, 1, 3)  # dk
    return dqkv.reshape(B, T, 3 * nh * hs)


def attention_step(qkv_new, k_cache, v_cache, start, n_head):
    """Attention for new positions [start, start+Tn) against cached keys/values (causal).

    qkv_new (B, Tn, 3C); k_cache, v_cache (B, nh, Tmax, hs) are written in place.
    Returns y (B, Tn, C) and the attention probabilities (B, nh, Tn, start+Tn).
    """
    B, Tn, C3 = qkv_new.shape
    C = C3 // 3
    q, k, v = split_heads(qkv_new, n_head)  # (B, nh, Tn, hs)
    end = start + Tn
    k_cache[:, :, start:end] = k
    v_cache[:, :, start:end] = v
    scale = qkv_new.dtype.type(1.0 / np.sqrt(C // n_head))
    att = np.matmul(q, k_cache[:, :, :end].transpose(0, 1, 3, 2))  # (B, nh, Tn, end)
    att *= scale
    if Tn > 1:
        # new query i sits at absolute position start+i and may see keys up to it
        hide = np.arange(end)[None, :] > (start + np.arange(Tn))[:, None]  # (Tn, end)
        att[:, :, hide] = NEG
    att -= att.max(axis=-1, keepdims=True)
    np.exp(att, out=att)
    att /= att.sum(axis=-1, keepdims=True)
    y = np.matmul(att, v_cache[:, :, :end])  # (B, nh, Tn, hs)
    return y.transpose(0, 2, 1, 3).reshape(B, Tn, C), att
