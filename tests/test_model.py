import math

import numpy as np
import pytest

from core.config import ModelConfig
from core.model import Transformer, param_shapes
from tests.gradcheck import rel_error


def tiny(causal=True, tie=True, **kw):
    cfg = ModelConfig(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8, causal=causal,
                      tie_weights=tie, **kw)
    return Transformer(cfg, rng=np.random.default_rng(0), dtype=np.float64)


def bump_params(m, rng):
    # larger than GPT-2's init so every path carries gradient of meaningful size
    for name, p in m.params.items():
        p += rng.standard_normal(p.shape) * 0.3


@pytest.mark.parametrize("causal,tie,padded,pos,smear", [
    (c, t, p, "learned", False) for c in (True, False) for t in (True, False) for p in (False, True)
] + [(True, True, False, "rope", False), (False, False, True, "rope", False),
     (True, True, False, "learned", True), (True, False, True, "rope", True), (False, True, True, "learned", True)])
def test_model_backward_matches_finite_differences(causal, tie, padded, pos, smear):
    rng = np.random.default_rng(1)
    m = tiny(causal, tie, pos=pos, smear=smear)
    bump_params(m, rng)
    idx = rng.integers(0, 7, (2, 5))
    targets = rng.integers(0, 7, (2, 5))
    mask = None
    if padded:
        mask = np.ones((2, 5), bool)
        mask[1, 3:] = False
        targets[1, 3:] = -1
    m.forward(idx, targets, mask)
    grads = {k: v.copy() for k, v in m.backward().items()}
    eps = 1e-6
    num = np.zeros_like(m.flat)
    for i in range(m.flat.size):
        old = m.flat[i]
        m.flat[i] = old + eps
        lp = m.forward(idx, targets, mask)[1]
        m.flat[i] = old - eps
        lm = m.forward(idx, targets, mask)[1]
        m.flat[i] = old
        num[i] = (lp - lm) / (2 * eps)
    m.forward(idx, targets, mask)
    m.backward()
    assert rel_error(m.grad_flat, num) < 1e-6
    for name in grads:  # per-tensor check: no tensor hides behind a bigger one
        g_num = num[_slice(m, name)].reshape(grads[name].shape)
        if name == "wpe.w":
            g_num, g = g_num[:5], grads[name][:5]
        else:
            g = grads[name]
        assert np.abs(g).max() > 1e-6, name
        assert rel_error(g, g_num) < 1e-6, name


def _slice(m, name):
    off = 0
    for n, shape in m.shapes.items():
        size = int(np.prod(shape))
        if n == name:
            return slice(off, off + size)
        off += size


def test_params_are_views_of_one_flat_buffer_with_gpt2_names():
    m = tiny()
    assert set(m.params) == set(param_shapes(m.cfg))
    assert "h.1.attn.c_attn.w" in m.params and "lm_head.w" not in m.params
    m.flat[:] = 0
    assert all(np.all(p == 0) for p in m.params.values())
    assert np.shares_memory(m.grads["wte.w"], m.grad_flat)
    assert m.num_params() == sum(p.size for p in m.params.values())


def test_fresh_model_loss_is_about_ln_vocab():
    cfg = ModelConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    m = Transformer(cfg, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 50, (8, 16))
    _, loss = m.forward(idx, rng.integers(0, 50, (8, 16)))
    assert abs(loss - math.log(50)) < 0.1


def test_tiny_model_overfits_one_batch():
    from core.optim import AdamW
    cfg = ModelConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16)
    m = Transformer(cfg, rng=np.random.default_rng(0))
    opt = AdamW(m)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 10, (4, 8))
    tgt = rng.integers(0, 10, (4, 8))
    first = m.forward(idx, tgt)[1]
    for _ in range(300):
        m.forward(idx, tgt)
        m.backward()
        opt.step(1e-2)
    last = m.forward(idx, tgt)[1]
    assert first > 2.0 and last < 0.05


def test_attention_maps_shape_and_causality():
    m = tiny()
    m.forward(np.zeros((3, 6), np.int64))
    maps = m.attention_maps()
    assert maps.shape == (2, 3, 2, 6, 6)
    assert np.all(maps[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0)


def test_dropout_only_in_training_and_reproducible():
    m = tiny(dropout=0.5)
    idx = np.arange(6)[None] % 7
    a = m.forward(idx)[0]
    b = m.forward(idx)[0]
    np.testing.assert_array_equal(a, b)
    c = m.forward(idx, train=True, rng=np.random.default_rng(4))[0]
    d = m.forward(idx, train=True, rng=np.random.default_rng(4))[0]
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(a, c)


def test_dropout_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    m = tiny(dropout=0.3)
    bump_params(m, rng)
    idx = rng.integers(0, 7, (2, 5))
    tgt = rng.integers(0, 7, (2, 5))
    f = lambda: m.forward(idx, tgt, train=True, rng=np.random.default_rng(9))[1]
    f()
    m.backward()
    g = m.grad_flat.copy()
    num = np.zeros_like(g)
    for i in range(0, m.flat.size, 7):  # a strided subset keeps this fast
        old = m.flat[i]
        m.flat[i] = old + 1e-6
        lp = f()
        m.flat[i] = old - 1e-6
        lm = f()
        m.flat[i] = old
        num[i] = (lp - lm) / 2e-6
    sel = slice(0, None, 7)
    assert rel_error(g[sel], num[sel]) < 1e-6


@pytest.mark.parametrize("pos,smear", [("learned", False), ("rope", False), ("learned", True), ("rope", True)])
def test_forward_step_matches_full_forward(pos, smear):
    m = tiny(pos=pos, smear=smear)
    bump_params(m, np.random.default_rng(3))
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 7, (1, 6))
    full = m.forward(idx)[0]
    kv = m.new_kv_cache()
    first = m.forward_step(idx[:, :2], kv)
    rest = [m.forward_step(idx[:, t:t + 1], kv) for t in range(2, 6)]
    np.testing.assert_allclose(np.concatenate([first] + rest, axis=1), full, atol=1e-10)
    with pytest.raises(ValueError, match="KV cache full"):
        m.forward_step(idx[:, :1], kv)


def test_too_long_input_is_a_clear_error():
    m = tiny()
    with pytest.raises(ValueError, match="block_size=6"):
        m.forward(np.zeros((1, 7), np.int64))


def test_rope_model_has_no_position_table():
    learned, rope = tiny(), tiny(pos="rope")
    assert "wpe.w" not in rope.params and "wpe.w" in learned.params
    assert learned.num_params() - rope.num_params() == 6 * 8  # block_size x n_embd


def test_smeared_keys_mix_in_the_previous_key_with_learned_taps_and_no_weight_decay():
    from core.attention import smear_forward
    from core.optim import AdamW
    m = tiny(smear=True)
    assert m.params["h.0.attn.smear"].shape == (2, 2)
    np.testing.assert_array_equal(m.params["h.1.attn.smear"], [[0.0, 1.0], [1.0, 0.0]])  # previous key only; plain
    qkv = np.random.default_rng(0).standard_normal((1, 3, 24))
    raw = qkv[:, :, 8:16].copy()
    smear_forward(qkv, np.array([[0.5, 1.0], [0.25, 0.0]]), 2)
    np.testing.assert_allclose(qkv[0, 0, 8:12], 0.5 * raw[0, 0, :4])  # nothing before the first position
    np.testing.assert_allclose(qkv[0, 2, 8:12], 0.5 * raw[0, 2, :4] + 0.25 * raw[0, 1, :4])
    np.testing.assert_allclose(qkv[0, 2, 12:16], raw[0, 2, 4:])  # head 1: a plain key
    opt = AdamW(m, weight_decay=0.5)
    m.grad_flat[:] = 0
    before = m.params["h.0.attn.smear"].copy()
    opt.step(0.1)
    np.testing.assert_array_equal(m.params["h.0.attn.smear"], before)  # decay would have shrunk them
    assert not np.array_equal(m.params["h.0.attn.c_attn.w"], tiny(smear=True).params["h.0.attn.c_attn.w"])


def test_a_plain_model_has_no_smear_taps():
    assert not any("smear" in name for name in tiny().params)
