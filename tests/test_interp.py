"""core/interp.py: head scores on hand-built maps, head ablation (forward, backward, KV cache), top-k."""

import numpy as np
import pytest

from core.config import ModelConfig, load_config
from core.interp import (ablated, antidiagonal_score, evaluate_ablation, head_means, head_scores,
                         induction_score, make_probes, mean_batches, pair_score, parse_heads,
                         prev_token_score, sink_score, topk_probs)
from core.model import Transformer
from core.sample import next_logits, stream_text
from core.tokenizer import CharTokenizer
from core.trainer import Trainer
from tests.gradcheck import rel_error


def one_hot_rows(T, cols, nh=2):
    """(nh, T, T) maps whose row i puts all its weight on key cols[i]."""
    att = np.zeros((nh, T, T))
    att[:, np.arange(T), cols] = 1.0
    return att


# -- score functions on hand-built maps

def test_antidiagonal_is_one_and_uniform_is_one_over_t():
    T = 7
    anti = one_hot_rows(T, T - 1 - np.arange(T))
    np.testing.assert_array_equal(antidiagonal_score(anti), [1.0, 1.0])
    uniform = np.full((3, 2, T, T), 1.0 / T)  # (B, nh, T, T), bidirectional
    s = antidiagonal_score(uniform)
    assert s.shape == (3, 2)
    np.testing.assert_allclose(s, 1.0 / T, rtol=1e-12)
    diagonal = one_hot_rows(T, np.arange(T))  # meets the anti-diagonal once (T odd)
    np.testing.assert_allclose(antidiagonal_score(diagonal), 1.0 / T)


def causal_uniform(T):
    att = np.tril(np.ones((T, T)))
    return att / att.sum(axis=1, keepdims=True)


def test_previous_token_pattern_scores_one_there_and_zero_on_induction():
    p, T = 5, 10
    prev = one_hot_rows(T, np.maximum(np.arange(T) - 1, 0))  # row 0 can only see itself
    np.testing.assert_array_equal(prev_token_score(prev), [1.0, 1.0])
    np.testing.assert_array_equal(induction_score(prev, p), [0.0, 0.0])


def test_induction_pattern_scores_one_there_and_about_zero_on_previous_token():
    p, T = 5, 10
    i = np.arange(T)
    ind = one_hot_rows(T, np.where(i >= p, i - p + 1, i))  # first copy: each token on itself
    np.testing.assert_array_equal(induction_score(ind, p), [1.0, 1.0])
    assert prev_token_score(ind).max() < 0.05
    with pytest.raises(ValueError, match="period"):
        induction_score(ind, T)


def test_pair_score_reads_the_listed_query_key_pairs():
    T = 9
    att = one_hot_rows(T, np.maximum(np.arange(T) - 3, 0))  # row i looks 3 back
    np.testing.assert_array_equal(pair_score(att, [4, 5, 8], [1, 2, 5]), [1.0, 1.0])
    np.testing.assert_allclose(pair_score(att, [4, 5, 8], [1, 2, 0]), [2 / 3, 2 / 3])


def test_sink_and_uniform_causal_values():
    T = 8
    sink = one_hot_rows(T, np.zeros(T, int))
    np.testing.assert_array_equal(sink_score(sink), [1.0, 1.0])
    uni = causal_uniform(T)[None]  # (1, T, T)
    expect = np.mean(1.0 / np.arange(2, T + 1))  # row i gives 1/(i+1) to key 0 and to key i-1
    np.testing.assert_allclose(sink_score(uni), [expect])
    np.testing.assert_allclose(prev_token_score(uni), [expect])
    np.testing.assert_allclose(induction_score(uni, 3), [np.mean(1.0 / np.arange(4, T + 1))])


# -- head_scores on real tasks, with attention made uniform by zero query/key weights

def small_cfg(task, **model):
    sets = [f"model.{k}={v}" for k, v in {"n_layer": 2, "n_head": 2, "n_embd": 16, **model}.items()]
    return load_config(task, None, sets + ["data.n_eval=4", "train.batch_size=4"])


def flatten_attention(m):
    """Zero q and k projections: every score is 0, so every attention row is uniform."""
    C = m.cfg.n_embd
    for i in range(m.cfg.n_layer):
        m.params[f"h.{i}.attn.c_attn.w"][:, :2 * C] = 0.0
        m.params[f"h.{i}.attn.c_attn.b"][:2 * C] = 0.0


def test_head_scores_reversal_uniform_attention_scores_one_over_t():
    tr = Trainer(small_cfg("reversal"))
    probes = make_probes(tr.task)
    flatten_attention(tr.model)
    s = head_scores(tr.model, probes)
    assert set(s) == {"antidiagonal"} and s["antidiagonal"].shape == (2, 2) and s["antidiagonal"].dtype == np.float32
    np.testing.assert_allclose(s["antidiagonal"], 1.0 / tr.task.seq_len, rtol=1e-5)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_head_scores_causal_uniform_attention(pos):
    tr = Trainer(small_cfg("qa", pos=pos, block_size=32))
    probes = make_probes(tr.task, rng_seed=3)
    assert probes.period == 16 and probes.induction.shape[1] == 32
    np.testing.assert_array_equal(probes.induction[:, :16], probes.induction[:, 16:])  # repeated twice
    assert all(len(set(row[:16])) == 16 for row in probes.induction)  # distinct within a copy
    assert probes.text.size < 256  # never the workspace path: the training buffers stay put
    flatten_attention(tr.model)
    s = head_scores(tr.model, probes)
    assert list(s) == ["prev_token", "induction", "sink"]
    T = probes.text.shape[1]
    np.testing.assert_allclose(s["prev_token"], np.mean(1.0 / np.arange(2, T + 1)), rtol=1e-5)
    np.testing.assert_allclose(s["sink"], np.mean(1.0 / np.arange(2, T + 1)), rtol=1e-5)
    np.testing.assert_allclose(s["induction"], np.mean(1.0 / np.arange(17, 33)), rtol=1e-5)


def test_dialogue_copy_probe_points_at_the_remembered_word():
    tr = Trainer(small_cfg("dialogue", block_size=128))
    probes = make_probes(tr.task)
    assert 1 <= len(probes.copy) <= 4 and probes.keys == ("prev_token", "induction", "sink", "copy")
    for ids, q, k in probes.copy:
        text = tr.task.tokenizer.decode(ids[0]).lower()
        assert ids.shape[1] <= 128 and (q > k).all()
        assert [text[i + 1] for i in q] == [text[i] for i in k]  # what each query predicts is its key's character
    flatten_attention(tr.model)
    s = head_scores(tr.model, probes)
    assert list(s) == ["prev_token", "induction", "sink", "copy"]
    expect = np.mean([np.mean(1.0 / (q + 1)) for _, q, _ in probes.copy])  # uniform rows: 1/(i+1) each
    np.testing.assert_allclose(s["copy"], expect, rtol=1e-5)
    qa = Trainer(small_cfg("qa", block_size=32))
    assert "copy" not in head_scores(qa.model, make_probes(qa.task))


def test_make_probes_is_deterministic():
    task = Trainer(small_cfg("qa", block_size=32)).task
    a, b, c = make_probes(task, 0), make_probes(task, 0), make_probes(task, 1)
    np.testing.assert_array_equal(a.induction, b.induction)
    assert not np.array_equal(a.induction, c.induction)


# -- ablation

def tiny(causal=True, pos="learned", dtype=np.float64, **kw):
    cfg = ModelConfig(vocab_size=9, block_size=12, n_layer=2, n_head=3, n_embd=12, causal=causal, pos=pos, **kw)
    m = Transformer(cfg, rng=np.random.default_rng(0), dtype=dtype)
    rng = np.random.default_rng(5)
    for p in m.params.values():  # larger than the init so every head matters
        p += (rng.standard_normal(p.shape) * 0.3).astype(dtype)
    return m


@pytest.mark.parametrize("B,T", [(2, 5), (32, 12)])  # the small path and the workspace path
def test_ablating_no_head_is_bitwise_the_plain_forward_and_backward(B, T):
    m = tiny(dtype=np.float32)
    rng = np.random.default_rng(2)
    idx, tgt = rng.integers(0, 9, (B, T)), rng.integers(0, 9, (B, T))
    logits, loss = m.forward(idx, tgt)
    logits = logits.copy()
    grads = m.backward()
    grads = {k: v.copy() for k, v in grads.items()}
    with ablated(m, []):
        assert m.head_mask is not None and (m.head_mask == 1).all()
        l2, loss2 = m.forward(idx, tgt)
        g2 = m.backward()
        np.testing.assert_array_equal(l2, logits)
        assert loss2 == loss
        for k in grads:
            np.testing.assert_array_equal(g2[k], grads[k])
    assert m.head_mask is None and m.head_fill is None


def test_ablating_every_head_equals_zeroed_c_proj_weights():
    # head_mask scales the heads' outputs before c_proj: all zero leaves c_proj(0) = its bias, which
    # is exactly what a model whose c_proj weights are zero (bias kept) adds to the residual stream
    m = tiny(dtype=np.float32)
    ref = Transformer(m.cfg, params=m.params, dtype=np.float32)
    for i in range(m.cfg.n_layer):
        ref.params[f"h.{i}.attn.c_proj.w"][...] = 0.0
    idx = np.random.default_rng(3).integers(0, 9, (3, 8))
    every = [(layer, h) for layer in range(2) for h in range(3)]
    with ablated(m, every):
        np.testing.assert_array_equal(m.forward(idx)[0], ref.forward(idx)[0])
    assert not np.allclose(m.forward(idx)[0], ref.forward(idx)[0])  # and restored afterwards


def test_mean_ablation_replaces_the_head_by_its_mean_output():
    # c_proj(a with head h's columns set to mean_h) = a @ W (rows of h zeroed) + (b + mean_h @ W[h rows])
    m = tiny()
    data = [np.random.default_rng(4).integers(0, 9, (4, 10))]
    means = head_means(m, data)  # (L, C)
    m.forward(data[0])
    np.testing.assert_allclose(means, m.head_outputs().mean(axis=(1, 2)), rtol=1e-12, atol=1e-15)
    ref = Transformer(m.cfg, params=m.params, dtype=np.float64)
    rows = slice(4, 8)  # head 1 of 3, hs 4
    W = ref.params["h.1.attn.c_proj.w"]
    ref.params["h.1.attn.c_proj.b"] += means[1, rows] @ W[rows]
    W[rows] = 0.0
    idx = np.random.default_rng(5).integers(0, 9, (2, 9))
    with ablated(m, [(1, 1)], mode="mean", data=data):
        np.testing.assert_allclose(m.forward(idx)[0], ref.forward(idx)[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="data="):
        with ablated(m, [(1, 1)], mode="mean"):
            pass
    with pytest.raises(ValueError, match="zero"):
        with ablated(m, [(1, 1)], mode="half"):
            pass
    with pytest.raises(ValueError, match="does not exist"):
        with ablated(m, [(2, 0)]):
            pass
    assert m.head_mask is None


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_masked_backward_matches_finite_differences(pos):
    m = tiny(pos=pos)
    rng = np.random.default_rng(6)
    m.head_mask = [[0.0, 0.7, 1.0], [1.3, 0.0, 0.4]]
    m.head_fill = rng.standard_normal((2, 12)) * 0.5
    idx, tgt = rng.integers(0, 9, (2, 6)), rng.integers(0, 9, (2, 6))
    m.forward(idx, tgt)
    m.backward()
    ana = m.grad_flat.copy()
    num = np.zeros_like(m.flat)
    eps = 1e-6
    for i in range(m.flat.size):
        old = m.flat[i]
        m.flat[i] = old + eps
        lp = m.forward(idx, tgt)[1]
        m.flat[i] = old - eps
        lm = m.forward(idx, tgt)[1]
        m.flat[i] = old
        num[i] = (lp - lm) / (2 * eps)
    assert rel_error(ana, num) < 1e-6
    # a switched-off head's q/k/v weights get no gradient at all
    hs, C = 4, 12
    w = m.grads["h.0.attn.c_attn.w"]
    assert np.abs(w[:, [c for part in range(3) for c in range(part * C, part * C + hs)]]).max() == 0.0


def test_head_mask_is_validated_and_read_only():
    m = tiny()
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        m.head_mask = np.ones((3, 2))
    with pytest.raises(ValueError, match="finite"):
        m.head_mask = np.full((2, 3), np.nan)
    m.head_mask = np.ones((2, 3))
    with pytest.raises(ValueError):
        m.head_mask[0, 0] = 0.0  # in-place edits would bypass the KV caches' check
    snap = m.snapshot()
    np.testing.assert_array_equal(snap.head_mask, m.head_mask)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_decode_path_with_a_mask_equals_the_uncached_forward_with_it(pos):
    m = tiny(pos=pos)  # float64: the two paths' rounding differences are far below the tolerance
    data = [np.random.default_rng(7).integers(0, 9, (3, 12))]
    ids = list(np.random.default_rng(8).integers(0, 9, 4))
    for mode in ("zero", "mean"):
        with ablated(m, [(0, 2), (1, 0)], mode=mode, data=data):
            cached, full = {"start": 0, "kv": None}, {"start": 0, "kv": None}
            seq = list(ids)
            for _ in range(20):  # past block_size: the window hops, the cache is refilled
                a = next_logits(m, seq, cached, use_cache=True)
                b = next_logits(m, seq, full, use_cache=False)
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
                seq.append(int(np.argmax(a)))
            kv = m.new_kv_cache(batch=2)  # forward_step's batched path
            two = np.asarray([seq[:6], seq[1:7]])
            np.testing.assert_allclose(m.forward_step(two, kv), m.forward(two)[0], rtol=1e-9, atol=1e-9)


def test_a_mask_change_is_honoured_by_the_kv_cache():
    m = tiny()
    ids = [1, 2, 3, 4, 5]
    plain = m.forward(np.asarray([ids]))[0][0, -1]
    state = {"start": 0, "kv": None}
    for n in range(2, len(ids)):
        next_logits(m, ids[:n], state)  # the cache holds positions, folded without a mask
    kv = state["kv"]
    assert kv["len"] > 0
    m.head_mask = [[1, 0, 1], [0, 1, 1]]
    masked = m.forward(np.asarray([ids]))[0][0, -1]
    assert not np.allclose(masked, plain)
    with pytest.raises(ValueError, match="head mask changed"):
        m.decode_one(ids[-1], kv)  # stale keys and values are refused, never used
    np.testing.assert_allclose(next_logits(m, ids, state), masked, rtol=1e-9, atol=1e-9)  # next_logits re-encodes
    m.head_mask = None
    fresh = m.new_kv_cache()  # takes over the pooled fold buffers: they must be refolded
    del state, kv
    m.forward_step(np.asarray([ids[:-1]]), fresh)
    np.testing.assert_allclose(m.decode_one(ids[-1], fresh), plain, rtol=1e-9, atol=1e-9)


def test_parse_heads():
    assert parse_heads("0.1,1.3") == [(0, 1), (1, 3)]
    assert parse_heads(" 2.0 , 2.0,0.0") == [(2, 0), (0, 0)]
    for bad in ("", "1", "1.x", "1.2.3", "-1.0", "1,2", "0.1,"):
        with pytest.raises(ValueError, match="LAYER.HEAD"):
            parse_heads(bad)
    with pytest.raises(ValueError, match="has layers 0-1 and heads 0-3"):
        parse_heads("2.0", n_layer=2, n_head=4)


def test_evaluate_ablation_reversal_drops_without_attention():
    tr = Trainer(load_config("reversal"))
    tr.run(lambda ev: None, until=lambda ev: ev["accuracy"] >= 0.99)
    every = [(0, h) for h in range(tr.cfg.model.n_head)]
    for mode in ("zero", "mean"):
        r = evaluate_ablation(tr.task, tr.model, every, mode=mode)
        assert r["metric"] == "accuracy" and r["mode"] == mode and r["heads"] == [list(h) for h in every]
        assert r["base"]["accuracy"] >= 0.99
        assert r["ablated"]["accuracy"] < 0.1  # no attention: position i cannot fetch T-1-i
    assert tr.model.head_mask is None and tr.model.head_fill is None
    assert len(mean_batches(tr.task)[0]) == len(tr.task.eval_x)
    with ablated(tr.model, [(0, 0)], "mean", tr.task):  # a task stands for its mean_batches
        np.testing.assert_allclose(tr.model.head_fill[0, :16], head_means(tr.model, mean_batches(tr.task))[0, :16])


# -- top-k next characters

def test_topk_probs_match_softmax():
    logits = np.array([0.5, 2.0, -1.0, 2.0, 0.0])
    top = topk_probs(logits, 3)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert [i for i, _ in top] == [1, 3, 0]  # ties keep id order
    np.testing.assert_allclose([q for _, q in top], p[[1, 3, 0]])
    assert len(topk_probs(logits, 99)) == 5 and topk_probs(logits, 0) == []


def test_stream_text_topk_yields_the_raw_softmax_of_each_step():
    tok = CharTokenizer.from_text("ab\ncd ")
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8)
    m = Transformer(cfg, rng=np.random.default_rng(1), dtype=np.float64)  # cached vs uncached: same to 1e-9
    for p in m.params.values():
        p += np.random.default_rng(2).standard_normal(p.shape) * 0.5
    kw = dict(stop=("cd",), max_new_tokens=30, temperature=0.7, top_k=3, seed=4)
    plain = "".join(stream_text(m, tok, "ab", **kw))
    items = list(stream_text(m, tok, "ab", topk=5, **kw))
    assert "".join(ch for ch, _ in items) == plain  # the same text: top-k only adds information
    text, ref = "ab", {"start": 0, "kv": None}  # one state: its window hops as generation's did
    for ch, cands in items:
        assert len(cands) == 5 and all(isinstance(c, str) and len(c) == 1 for c, _ in cands)
        probs = [q for _, q in cands]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
        z = next_logits(m, list(tok.encode(text, unknown="unk")), ref, use_cache=False).astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        np.testing.assert_allclose(probs, np.sort(p)[::-1][:5], rtol=1e-9)
        assert [c for c, _ in cands][0] == tok.decode([int(np.argmax(p))])
        text += ch
