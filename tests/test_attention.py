import numpy as np
import pytest

from core.attention import attention_backward, attention_forward, attention_step, mask_bias
from tests.gradcheck import numeric_grad, rel_error


def run(qkv, nh, bias, dout):
    y, _ = attention_forward(qkv, nh, bias)
    return float((y * dout).sum())


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_backward_matches_finite_differences(causal, padded):
    rng = np.random.default_rng(3)
    B, T, nh, hs = 2, 5, 2, 3
    qkv = rng.standard_normal((B, T, 3 * nh * hs))
    key_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool) if padded else None
    bias = mask_bias(T, causal, key_mask, np.float64)
    dout = rng.standard_normal((B, T, nh * hs))
    _, cache = attention_forward(qkv, nh, bias)
    dqkv = attention_backward(dout.copy(), cache)
    num = numeric_grad(lambda: run(qkv, nh, bias, dout), qkv)
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
