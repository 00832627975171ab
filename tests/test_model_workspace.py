"""The reused-buffer (workspace) path of Transformer gives the same results as the allocating path."""

import numpy as np
import pytest

import core.model as model_mod
from core.config import ModelConfig
from core.model import Transformer


def _run(min_rows, cfg, idx, tgt, mask, train, repeats=2):
    old = model_mod._WS_MIN_ROWS
    model_mod._WS_MIN_ROWS = min_rows
    try:
        m = Transformer(cfg, rng=np.random.default_rng(0), dtype=np.float64)
        for name, p in m.params.items():  # larger than the init so every path carries gradient
            p += np.random.default_rng(len(name)).standard_normal(p.shape) * 0.3
        out = []
        for _ in range(repeats):  # the second pass runs on reused buffers
            logits, loss = m.forward(idx, tgt, mask, train=train, rng=np.random.default_rng(3))
            maps = m.attention_maps()
            grads = m.backward()
            out.append((logits.copy(), loss, maps, m.grad_flat.copy()))
        # an eval forward of the same shape in between must not corrupt a kept logits array
        kept = m.forward(idx)[0]
        kept_copy = kept.copy()
        m.forward(idx[::-1].copy())
        np.testing.assert_array_equal(kept, kept_copy)
        assert set(grads) == set(m.params)
        return out
    finally:
        model_mod._WS_MIN_ROWS = old


@pytest.mark.parametrize("causal,tie,padded,dropout,smear", [
    (True, True, False, 0.0, False), (False, False, True, 0.0, False), (True, True, True, 0.2, False),
    (True, True, False, 0.0, True), (False, True, True, 0.2, True)])
def test_workspace_path_matches_allocating_path(causal, tie, padded, dropout, smear):
    cfg = ModelConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, causal=causal,
                      tie_weights=tie, dropout=dropout, smear=smear)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 11, (3, 7))
    tgt = rng.integers(0, 11, (3, 7))
    mask = None
    if padded:
        mask = np.ones((3, 7), bool)
        mask[1, 4:] = False
        tgt[1, 4:] = -1
    ref = _run(10**9, cfg, idx, tgt, mask, dropout > 0)
    ws = _run(0, cfg, idx, tgt, mask, dropout > 0)
    for (l0, s0, a0, g0), (l1, s1, a1, g1) in zip(ref, ws):
        np.testing.assert_allclose(l1, l0, rtol=1e-12, atol=1e-12)
        assert s1 == pytest.approx(s0, rel=1e-12)
        np.testing.assert_allclose(a1, a0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ws[1][3], ws[0][3], rtol=1e-12, atol=1e-14)
