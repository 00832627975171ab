import numpy as np
import pytest

from core.attention import (NEG, attention_backward, attention_forward, attention_step, mask_bias, rope_backward,
                            rope_forward, rope_tables)
from tests.gradcheck import numeric_grad, rel_error


def run(qkv, nh, bias, dout, rope=None):
    y, _ = attention_forward(qkv, nh, bias, rope=rope)
    return float((y * dout).sum())


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("rotary", [False, True])
def test_attention_backward_matches_finite_differences(causal, padded, rotary):
    rng = np.random.default_rng(3)
    B, T, nh, hs = 2, 5, 2, 4 if rotary else 3
    qkv = rng.standard_normal((B, T, 3 * nh * hs))
    key_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool) if padded else None
    bias = mask_bias(T, causal, key_mask, np.float64)
    rope = rope_tables(T, hs, np.float64, base=3.0) if rotary else None  # a small base: big angles
    dout = rng.standard_normal((B, T, nh * hs))
    _, cache = attention_forward(qkv, nh, bias, rope=rope)
    dqkv = attention_backward(dout.copy(), cache)
    num = numeric_grad(lambda: run(qkv, nh, bias, dout, rope), qkv)
    assert rel_error(dqkv, num) < 1e-6
    # q, k and v all receive gradient: attention is in the gradient path
    C = nh * hs
    for part in range(3):
        assert np.abs(dqkv[..., part * C:(part + 1) * C]).max() > 1e-3


def test_causal_weights_are_exactly_zero_above_diagonal_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((3, 7, 24)).astype(np.float32) * 4
    _, cache = attention_forward(qkv, 2, mask_bias(7, True))
    att = cache[3]
    assert att.dtype == np.float32
    upper = np.triu(np.ones((7, 7), bool), 1)
    assert np.all(att[..., upper] == 0.0)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-6)


def test_padded_keys_get_zero_weight():
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((1, 4, 12))
    mask = np.array([[True, True, False, False]])
    _, cache = attention_forward(qkv, 1, mask_bias(4, False, mask, np.float64))
    assert np.all(cache[3][..., 2:] == 0.0)
    np.testing.assert_allclose(cache[3].sum(-1), 1.0)


def test_bidirectional_attends_to_future():
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((1, 4, 12))
    _, cache = attention_forward(qkv, 1, None)
    assert np.all(cache[3][0, 0][np.triu_indices(4, 1)] > 0)


def test_step_matches_full_causal_attention():
    rng = np.random.default_rng(5)
    B, T, nh, hs = 1, 6, 2, 4
    qkv = rng.standard_normal((B, T, 3 * nh * hs))
    y_full, _ = attention_forward(qkv, nh, mask_bias(T, True, None, np.float64))
    kc = np.zeros((B, nh, 8, hs))
    vc = np.zeros((B, nh, 8, hs))
    y0, _ = attention_step(qkv[:, :3], kc, vc, 0, nh)  # prefill 3
    ys = [y0] + [attention_step(qkv[:, t:t + 1], kc, vc, t, nh)[0] for t in range(3, T)]
    np.testing.assert_allclose(np.concatenate(ys, axis=1), y_full, atol=1e-12)


def test_rope_is_a_rotation_and_its_backward_turns_back():
    rng = np.random.default_rng(0)
    cos, sin = rope_tables(6, 8, np.float64)
    x = rng.standard_normal((2, 3, 6, 8))
    y = rope_forward(x, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1))  # lengths kept
    np.testing.assert_allclose(y[..., 0, :], x[..., 0, :])  # position 0 does not turn
    np.testing.assert_allclose(rope_backward(y, cos, sin), x, atol=1e-12)  # the transpose inverts it
    # scores depend on the offset alone: q at position i against k at j equals q at i+1 against k at j+1
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    rq = rope_forward(np.tile(q, (6, 1)), cos, sin)
    rk = rope_forward(np.tile(k, (6, 1)), cos, sin)
    np.testing.assert_allclose(rq[4] @ rk[1], rq[5] @ rk[2])
    np.testing.assert_allclose(rq[3] @ rk[3], q @ k)


def test_step_with_rope_matches_full_causal_attention():
    rng = np.random.default_rng(6)
    B, T, nh, hs = 1, 6, 2, 4
    qkv = rng.standard_normal((B, T, 3 * nh * hs))
    cos, sin = rope_tables(8, hs, np.float64)
    y_full, _ = attention_forward(qkv, nh, mask_bias(T, True, None, np.float64), rope=(cos[:T], sin[:T]))
    kc, vc = np.zeros((B, nh, 8, hs)), np.zeros((B, nh, 8, hs))
    y0, _ = attention_step(qkv[:, :3], kc, vc, 0, nh, (cos[:3], sin[:3]))
    ys = [y0] + [attention_step(qkv[:, t:t + 1], kc, vc, t, nh, (cos[t:t + 1], sin[t:t + 1]))[0] for t in range(3, T)]
    np.testing.assert_allclose(np.concatenate(ys, axis=1), y_full, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_exact_on_huge_and_tiny_score_rows(dtype):
    from core.ops import softmax_rows

    def reference(a):
        a = a.astype(np.float64)
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    rng = np.random.default_rng(0)
    for scale, shift in [(1.0, 0.0), (30.0, 0.0), (1.0, 500.0), (1.0, -500.0), (1.0, -95.0)]:
        a = (rng.standard_normal((2, 3, 5, 7)) * scale + shift).astype(dtype)
        a[0, 0, 0, 3:] = NEG  # a masked tail
        if shift == 0.0 and scale == 1.0:
            a[1, 2, 4] -= 200.0  # one row far below the rest: the unshifted path must not take it
        want = reference(a)
        np.testing.assert_allclose(softmax_rows(a), want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)
        softmax_rows(a, out=a)
        np.testing.assert_allclose(a, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
    nan = np.full((1, 4), np.nan, dtype)
    softmax_rows(nan, out=nan)
    assert np.isnan(nan).all()  # a diverged score stays visible
