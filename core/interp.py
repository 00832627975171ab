"""Head-level interpretability: what each attention head does (scores on fixed probes), what the
task loses when heads are switched off (ablation), and the model's top-k next-character probabilities.

Plain numpy on a Transformer and a task object (core/tasks/*); shared by the dashboard and the CLI.
"""

import contextlib
from dataclasses import dataclass, field

import numpy as np

from core.model import _WS_MIN_ROWS

SCORE_KEYS = {"reversal": ("antidiagonal",), "causal": ("prev_token", "induction", "sink"),
              "dialogue": ("prev_token", "induction", "sink", "copy")}
COPY_PROBES = 4  # held-out recall answers in the dialogue task's copy probe


# -- score functions: att (..., nh, T, T), rows = queries; each returns (..., nh) in [0, 1]

def antidiagonal_score(att):
    """Mean weight from query i to key T-1-i (what reversal needs), over all query rows."""
    T = att.shape[-1]
    i = np.arange(T)
    return att[..., i, T - 1 - i].mean(axis=-1, dtype=np.float64)  # (..., nh)


def prev_token_score(att):
    """Mean weight from query i to key i-1, over the queries that have a previous token (i >= 1)."""
    T = att.shape[-1]
    i = np.arange(1, T)
    return att[..., i, i - 1].mean(axis=-1, dtype=np.float64)  # (..., nh)


def induction_score(att, period):
    """Olsson et al. (2022): on a sequence repeated with this period, the mean weight from each query
    of a later copy (i >= period) to the token after its earlier occurrence (key i - period + 1)."""
    T = att.shape[-1]
    if not 1 <= period < T:
        raise ValueError(f"induction_score: period {period} must be in [1, {T - 1}] for {T} positions")
    i = np.arange(period, T)
    return att[..., i, i - period + 1].mean(axis=-1, dtype=np.float64)  # (..., nh)


def pair_score(att, queries, keys):
    """Mean weight from query row queries[i] to key keys[i], over the pairs: (..., nh)."""
    return att[..., np.asarray(queries), np.asarray(keys)].mean(axis=-1, dtype=np.float64)


def sink_score(att):
    """Mean weight on the first token ("attention sink"), over the queries i >= 1 (query 0 of a
    causal map can only look at itself)."""
    return att[..., 1:, 0].mean(axis=-1, dtype=np.float64)  # (..., nh)


# -- probes

@dataclass
class Probes:
    """Fixed probe batches for one task. kind 'reversal': `reversal` (B, L) random letter sequences;
    kind 'causal': `induction` (B, 2*period) random characters repeated twice, `text` (B, T) held-out
    text windows. Each batch keeps B*T under the model's workspace threshold, so scoring never
    evicts the training step's buffers."""
    kind: str
    reversal: np.ndarray | None = None
    induction: np.ndarray | None = None
    period: int = 0
    text: np.ndarray | None = None
    copy: list = field(default_factory=list)  # [(ids (1, T), queries, keys)], dialogue only
    keys: tuple = field(default=())


def make_probes(task, rng_seed=0):
    """Probes for a task object: reversal gets random letter sequences (its first held-out ones, so the
    forward of an evaluation holds their maps), causal tasks an induction batch and
    held-out text windows; the dialogue task also held-out recall answers (the copy score)."""
    rng = np.random.default_rng(rng_seed)
    block = task.cfg.model.block_size
    if not task.causal:
        L = task.seq_len
        B = max(1, min(8, (_WS_MIN_ROWS - 1) // L - 1))  # 8 x L queries per head; a row to spare for the probe word
        held = getattr(task, "eval_x", None)
        if held is not None and len(held) >= B:  # the first held-out sequences: an evaluation computes them too
            ids = np.array(held[:B], dtype=np.int64)  # (B, L)
        else:
            ids = rng.integers(1, task.tokenizer.vocab_size, size=(B, L), dtype=np.int64)  # (B, L)
        return Probes("reversal", reversal=ids, keys=SCORE_KEYS["reversal"])
    copy = _copy_probes(task, block)
    return Probes("causal", **_induction_batch(task, rng, block), text=_text_windows(task, block), copy=copy,
                  keys=SCORE_KEYS["dialogue" if copy else "causal"])


def _copy_probes(task, block):
    """In-context copying on held-out dialogues: the prompt of a recall turn followed by its reference
    answer; queries are the positions that predict each character of the value's repeat, keys the
    same characters of its first mention (where a copy head looks). Empty without slot annotations."""
    from core.tasks.lm import build_prompt
    slots = getattr(task, "slots", None)
    if not slots:
        return []
    out = []
    for d in range(len(task.val_convs)):
        turns = task.val_convs[d]
        for s in slots[d].get("slots", [])[:1]:
            q, ref = turns[s["turn"]]
            text = build_prompt(turns[:s["turn"]], q, block, strict=False) + " " + ref
            low, v = text.lower(), s["value"].lower()
            first, second = low.find(v), low.rfind(v)
            if 0 < first < second and len(text) < min(block, _WS_MIN_ROWS):
                ids = task.tokenizer.encode(text, unknown="unk")[None, :]  # (1, T)
                j = np.arange(len(v))
                out.append((ids.astype(np.int64), second - 1 + j, first + j))
        if len(out) == COPY_PROBES:
            break
    return out


def _induction_batch(task, rng, block):
    """B sequences of `period` random characters (distinct within a copy when the vocabulary allows,
    so each token's earlier occurrence is unique), each repeated twice."""
    chars = task.tokenizer.chars
    pool = np.array([i + 1 for i, c in enumerate(chars) if c.isalnum()] or range(1, len(chars) + 1))
    period = max(2, min(block // 2, 32, len(pool)))
    B = max(1, min(4, (_WS_MIN_ROWS - 1) // (2 * period)))
    first = np.stack([rng.choice(pool, period, replace=len(pool) < period) for _ in range(B)])  # (B, p)
    return {"induction": np.concatenate([first, first], axis=1).astype(np.int64), "period": int(period)}  # (B, 2p)


def _text_windows(task, block):
    """Held-out text windows (the validation stream), evenly spread, B*T under the workspace threshold."""
    ids = task.val_ids
    T = min(block, len(ids), _WS_MIN_ROWS - 1)
    B = max(1, min(4, (_WS_MIN_ROWS - 1) // T))
    starts = np.linspace(0, len(ids) - T, B).astype(int)
    return np.stack([ids[s:s + T] for s in starts]).astype(np.int64)  # (B, T)


def head_scores(model, probes):
    """{score name: (n_layer, n_head) float32}, one small forward per probe batch (mean over the batch)."""
    def maps(ids):
        model.forward(ids)
        return model.attention_maps()  # (L, B, nh, T, T)
    if probes.kind == "reversal":
        return {"antidiagonal": antidiagonal_score(maps(probes.reversal)).mean(axis=1).astype(np.float32)}
    out = {"induction": induction_score(maps(probes.induction), probes.period).mean(axis=1).astype(np.float32)}
    att = maps(probes.text)
    out["prev_token"] = prev_token_score(att).mean(axis=1).astype(np.float32)
    out["sink"] = sink_score(att).mean(axis=1).astype(np.float32)
    if probes.copy:
        per = [pair_score(maps(ids), q, k)[:, 0] for ids, q, k in probes.copy]  # each (L, nh)
        out["copy"] = np.mean(per, axis=0).astype(np.float32)
    return {k: out[k] for k in SCORE_KEYS["causal"] + ("copy",) if k in out}


# -- ablation

def parse_heads(text, n_layer=None, n_head=None):
    """'0.1,1.3' -> [(0, 1), (1, 3)]; ValueError naming the bad item (and the valid range when the
    model's n_layer / n_head are given)."""
    heads = []
    for item in str(text).split(","):
        item = item.strip()
        parts = item.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{item or 'an empty item'!r} is not a head; write LAYER.HEAD pairs separated "
                             "by commas, e.g. 0.1,1.3 (layer 0 head 1, layer 1 head 3)")
        layer, head = int(parts[0]), int(parts[1])
        if (n_layer is not None and layer >= n_layer) or (n_head is not None and head >= n_head):
            raise ValueError(f"head {item} does not exist: {_has(n_layer, n_head)}")
        if (layer, head) not in heads:
            heads.append((layer, head))
    return heads


def _has(n_layer, n_head):
    """'this model has layers 0-3 and heads 0-7' (or 'layer 0', 'head 0')."""
    span = lambda n, what: f"{what} 0" if n == 1 else f"{what}s 0-{n - 1}"  # noqa: E731
    parts = [span(n, w) for n, w in ((n_layer, "layer"), (n_head, "head")) if n is not None]
    return "this model has " + " and ".join(parts)


def mean_batches(task, n_windows=8):
    """The data mean ablation averages over: reversal's held-out sequences, or up to n_windows
    full-window slices of a causal task's validation text."""
    if not task.causal:
        return [task.eval_x]
    ids = task.val_ids
    T = min(task.cfg.model.block_size, len(ids))
    starts = np.unique(np.linspace(0, len(ids) - T, n_windows).astype(int))
    return [np.stack([ids[s:s + T] for s in starts]).astype(np.int64)]  # [(B, T)]


def head_means(model, batches):
    """(n_layer, C): each head's output (its hs columns before c_proj) averaged over every position
    of every sequence in `batches`, with no head ablated."""
    saved = model.head_mask, model.head_fill
    model.head_mask = model.head_fill = None
    try:
        total, n = 0.0, 0
        for ids in batches:
            model.forward(ids)
            out = model.head_outputs()  # (L, B, T, C)
            total = total + out.sum(axis=(1, 2), dtype=np.float64)  # (L, C)
            n += out.shape[1] * out.shape[2]
    finally:
        model.head_mask, model.head_fill = saved
    return (total / max(n, 1)).astype(model.dtype)


@contextlib.contextmanager
def ablated(model, heads, mode="zero", data=None):
    """Within the block, the listed (layer, head)s are switched off: their output is zeroed
    ("zero"), or replaced by its mean over `data` ("mean"; a list of id batches, or a task object for
    its mean_batches). Restores the model's previous ablation on exit."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation mode {mode!r}: use 'zero' or 'mean'")
    if mode == "mean" and data is None:
        raise ValueError("mean ablation needs data= (id batches to average each head's output over, "
                         "or the task)")
    if mode == "mean" and hasattr(data, "causal"):
        data = mean_batches(data)
    cfg = model.cfg
    hs = cfg.n_embd // cfg.n_head
    mask = np.ones((cfg.n_layer, cfg.n_head)) if model.head_mask is None else model.head_mask.copy()
    fill = None
    if mode == "mean":
        means = head_means(model, data)  # (L, C)
        fill = np.zeros((cfg.n_layer, cfg.n_embd)) if model.head_fill is None else model.head_fill.copy()
    for layer, head in heads:
        if not (0 <= layer < cfg.n_layer and 0 <= head < cfg.n_head):
            raise ValueError(f"head {layer}.{head} does not exist: {_has(cfg.n_layer, cfg.n_head)}")
        mask[layer, head] = 0.0
        if fill is not None:
            cols = slice(head * hs, (head + 1) * hs)
            fill[layer, cols] = means[layer, cols]
    saved = model.head_mask, model.head_fill
    model.head_mask, model.head_fill = mask, fill
    try:
        yield model
    finally:
        model.head_mask, model.head_fill = saved


def evaluate_ablation(task, model, heads, mode="zero", full=False):
    """The task's own evaluate() with and without the heads: {"base", "ablated"} metrics, plus the
    heads, the mode and the task's metric name."""
    base = task.evaluate(model, np.random.default_rng(0), full=full)
    with ablated(model, heads, mode, task if mode == "mean" else None):
        abl = task.evaluate(model, np.random.default_rng(0), full=full)
    return {"base": base, "ablated": abl, "heads": [list(h) for h in heads], "mode": mode, "metric": task.metric}


# -- top-k next-character probabilities

def topk_probs(logits, k):
    """[(id, p)] of the k most likely next ids under the raw softmax (temperature 1) of logits (V,)."""
    z = np.asarray(logits, dtype=np.float64)  # (V,)
    p = np.exp(z - z.max())
    p /= p.sum()
    k = max(0, min(int(k), p.size))
    order = np.argsort(-p, kind="stable")[:k]
    return [(int(i), float(p[i])) for i in order]
