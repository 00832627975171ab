"""TEMPORARY FALLBACK for core/interp.py (issue 11's `interp` helper owns the real module).

Only head_scores / make_probes and the four score functions, with the names and shapes of
/work/TIMELINE_SPEC.md, so core/timeline.py runs before core/interp.py is merged. core/timeline.py
imports core.interp first and uses this file only when that module does not exist.
"""

from dataclasses import dataclass, field

import numpy as np


def antidiagonal_score(att):
    """(..., nh, T, T) -> (..., nh): mean weight on the mirrored key (row i -> column T-1-i)."""
    T = att.shape[-1]
    i = np.arange(T)
    return att[..., i, T - 1 - i].mean(axis=-1)


def prev_token_score(att):
    """Mean weight on the previous token, over query rows 1..T-1."""
    i = np.arange(1, att.shape[-1])
    return att[..., i, i - 1].mean(axis=-1)


def induction_score(att, period):
    """Mean weight from each token of the second copy to the token after its first occurrence."""
    i = np.arange(period, att.shape[-1])
    return att[..., i, i - period + 1].mean(axis=-1)


def sink_score(att):
    """Mean weight on the first token, over query rows 1..T-1 (row 0 can only see itself)."""
    return att[..., 1:, 0].mean(axis=-1)


@dataclass
class Probes:
    kind: str  # "reversal" or "causal"
    batches: dict = field(default_factory=dict)  # name -> ids (B, T)
    period: int = 0  # length of the repeated half of the induction batch


def make_probes(task, rng_seed=0):
    """Fixed probe batches for a task; B*T stays under the model's workspace size (no buffer churn)."""
    rng = np.random.default_rng(rng_seed)
    V = task.tokenizer.vocab_size
    if not task.causal:
        L = task.seq_len
        return Probes("reversal", {"reversal": rng.integers(1, V, (max(1, 240 // L), L))})
    T = task.cfg.model.block_size
    half = max(2, min(T // 2, 24))
    seq = rng.integers(1, V, (4, half))
    text = task.val_ids
    n = min(T, 48, len(text) - 1)
    starts = np.linspace(0, len(text) - n - 1, 4).astype(int)
    windows = np.stack([text[s:s + n] for s in starts])
    return Probes("causal", {"induction": np.concatenate([seq, seq], axis=1), "text": windows}, half)


def _maps(model, ids):
    model.forward(ids)
    return model.attention_maps()  # (L, B, nh, T, T)


def head_scores(model, probes):
    """{score name: (n_layer, n_head) float32} on the fixed probe batches."""
    if probes.kind == "reversal":
        m = _maps(model, probes.batches["reversal"])
        return {"antidiagonal": antidiagonal_score(m).mean(axis=1).astype(np.float32)}
    ind = _maps(model, probes.batches["induction"])
    txt = _maps(model, probes.batches["text"])
    return {"prev_token": prev_token_score(txt).mean(axis=1).astype(np.float32),
            "induction": induction_score(ind, probes.period).mean(axis=1).astype(np.float32),
            "sink": sink_score(txt).mean(axis=1).astype(np.float32)}
