"""The transformer: GPT-2 style pre-LayerNorm blocks over one flat parameter buffer.

Parameters live in one dict of views into `flat` (names as in nanoGPT), gradients in views of
`grad_flat`, so the optimizer and clipping are a few vectorised calls. Forward keeps a cache;
backward walks it in reverse, one line per op. Causal (language model) or bidirectional (encoder).
Decoding one token at a time (KV cache) lives in core/decode.py.
"""

import threading

import numpy as np

from core import ops
from core.attention import (attention_backward, attention_forward, gate_heads, mask_bias, rope_tables, smear_backward,
                            smear_forward, smear_taps)
from core.decode import Decoding


def param_shapes(cfg):
    """Ordered {name: shape} for a ModelConfig."""
    V, T, C = cfg.vocab_size, cfg.block_size, cfg.n_embd
    shapes = {"wte.w": (V, C)}
    if cfg.pos == "learned":
        shapes["wpe.w"] = (T, C)  # with rope, positions enter attention as rotations instead
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes.update({
            p + "ln_1.w": (C,), p + "ln_1.b": (C,),
            p + "attn.c_attn.w": (C, 3 * C), p + "attn.c_attn.b": (3 * C,),
            p + "attn.c_proj.w": (C, C), p + "attn.c_proj.b": (C,),
            **({p + "attn.smear": (2, cfg.n_head)} if cfg.smear else {}),  # key taps: own, previous
            p + "ln_2.w": (C,), p + "ln_2.b": (C,),
            p + "mlp.c_fc.w": (C, 4 * C), p + "mlp.c_fc.b": (4 * C,),
            p + "mlp.c_proj.w": (4 * C, C), p + "mlp.c_proj.b": (C,),
        })
    shapes.update({"ln_f.w": (C,), "ln_f.b": (C,)})
    if not cfg.tie_weights:
        shapes["lm_head.w"] = (C, V)
    return shapes


def init_params(cfg, rng, dtype=np.float32):
    """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith((".b",)):
            params[name] = np.zeros(shape, dtype)
        elif name.endswith(".attn.smear"):
            params[name] = smear_taps(cfg.n_head, dtype)
        elif ".ln_" in name or name.startswith("ln_"):
            params[name] = np.ones(shape, dtype)
        else:
            std = 0.02 / np.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.w") else 0.02
            params[name] = (rng.standard_normal(shape) * std).astype(dtype)
    return params


def flat_views(buffer, shapes):
    """Dict of reshaped views into a flat buffer, in `shapes` order."""
    out, off = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        out[name] = buffer[off:off + n].reshape(shape)
        off += n
    return out


_WS_MIN_ROWS = 256  # batches with fewer rows (B*T) allocate per call; bigger ones reuse buffers


def _buffers(ws):
    """Lookup W(name) / W(name, layer) into a workspace; None everywhere (allocate) without one."""
    if ws is None:
        return lambda name, i=None: None
    return lambda name, i=None: ws[name] if i is None else ws["layers"][i][name]


class Transformer(Decoding):
    """Token + position embeddings (learned, or rotary in attention), n_layer pre-LN blocks, final
    LN, (tied) output head."""

    def __init__(self, cfg, params=None, rng=None, dtype=np.float32):
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set from the tokenizer before building a model")
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        self.shapes = param_shapes(cfg)
        total = sum(int(np.prod(s)) for s in self.shapes.values())
        self.flat = np.zeros(total, self.dtype)  # (P,)
        self.grad_flat = np.zeros(total, self.dtype)  # (P,)
        self.params = flat_views(self.flat, self.shapes)
        self.grads = flat_views(self.grad_flat, self.shapes)
        if params is None:
            params = init_params(cfg, rng if rng is not None else np.random.default_rng(0), self.dtype)
        self.load_params(params)
        self._cache = None
        self._ws = {}  # (B, T) -> activation buffers, see _workspace
        hs = cfg.n_embd // cfg.n_head
        self.rope = rope_tables(cfg.block_size, hs, self.dtype) if cfg.pos == "rope" else None  # 2 x (T, hs)
        # attention's 1/sqrt(hs) rides in c_attn's folded weights, on the q columns
        self._qkv_scale = np.ones(3 * cfg.n_embd, self.dtype)  # (3C,)
        self._qkv_scale[:cfg.n_embd] = 1.0 / np.sqrt(hs)
        self._decode_pool = []  # [weakref to the KVCache using it, its buffers], see new_kv_cache
        self._pool_lock = threading.Lock()  # two threads never take the same buffers
        self._head_mask = None  # (n_layer, n_head) multiplier of each head's output, see head_mask
        self._head_fill = None  # (n_layer, C) added to the masked head outputs, see head_fill
        self.head_version = 0  # bumped on every head_mask / head_fill change (KV caches check it)

    def num_params(self):
        return int(self.flat.size)

    def load_params(self, params):
        """Copy values in; names and shapes must match this model's config exactly."""
        missing = sorted(set(self.shapes) - set(params))
        extra = sorted(set(params) - set(self.shapes))
        if missing or extra:
            raise ValueError(f"parameter names do not match the config: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, shape in self.shapes.items():
            if tuple(params[name].shape) != tuple(shape):
                raise ValueError(f"parameter {name} has shape {tuple(params[name].shape)}, the config needs {tuple(shape)}")
            self.params[name][...] = params[name]

    def snapshot(self):
        """An independent copy (own buffers, same head ablation), e.g. for sampling while training goes on."""
        copy = Transformer(self.cfg, params=self.params, dtype=self.dtype)
        copy.head_mask, copy.head_fill = self._head_mask, self._head_fill
        return copy

    @property
    def head_mask(self):
        """None (the plain forward), or (n_layer, n_head) factors multiplying each head's output
        before c_proj (0 switches a head off). Read-only once set: assign a new array to change it."""
        return self._head_mask

    @head_mask.setter
    def head_mask(self, mask):
        self._head_mask = self._head_array(mask, (self.cfg.n_layer, self.cfg.n_head), "head_mask")

    @property
    def head_fill(self):
        """None, or (n_layer, C) added to the attention output after head_mask, before c_proj: mean
        ablation puts a switched-off head's mean output in its hs columns."""
        return self._head_fill

    @head_fill.setter
    def head_fill(self, fill):
        self._head_fill = self._head_array(fill, (self.cfg.n_layer, self.cfg.n_embd), "head_fill")

    def _head_array(self, value, shape, what):
        self.head_version += 1
        if value is None:
            return None
        arr = np.array(value, dtype=self.dtype)  # an own copy
        if arr.shape != shape or not np.isfinite(arr).all():
            raise ValueError(f"{what} must be None or a finite array of shape {shape}, got shape {arr.shape}")
        arr.flags.writeable = False
        return arr

    def head_gates(self):
        """Per layer (column factors (C,), fill (C,) or None) from head_mask/head_fill, or None when
        neither is set (the plain forward)."""
        if self._head_mask is None and self._head_fill is None:
            return None
        hs = self.cfg.n_embd // self.cfg.n_head
        ones = np.ones(self.cfg.n_embd, self.dtype)
        return [(ones if self._head_mask is None else np.repeat(self._head_mask[i], hs),  # (C,)
                 None if self._head_fill is None else self._head_fill[i])  # (C,)
                for i in range(self.cfg.n_layer)]

    def rope_at(self, start, stop):
        """The rotary (cos, sin) tables (stop - start, hs) for positions [start, stop), or None."""
        return None if self.rope is None else (self.rope[0][start:stop], self.rope[1][start:stop])

    def head_weight(self):
        return self.params["wte.w"].T if self.cfg.tie_weights else self.params["lm_head.w"]  # (C, V)

    def _workspace(self, B, T):
        """Activation buffers for a (B, T) batch, reused from step to step.

        Fresh multi-megabyte arrays cost page faults on every step (about a third of a step on
        this machine); small batches just allocate. Up to two batch shapes are kept (train, eval).
        """
        if B * T < _WS_MIN_ROWS:
            return None
        ws = self._ws.pop((B, T), None)
        if ws is None:
            cfg, dt = self.cfg, self.dtype
            C, nh, L = cfg.n_embd, cfg.n_head, cfg.n_layer
            N, hs = B * T, C // nh
            e = lambda *shape: np.empty(shape, dt)  # noqa: E731
            ws = {
                "x": e(N, C),  # residual stream, updated in place
                "layers": [{
                    "ln1_xhat": e(N, C), "qkv": e(N, 3 * C), "qkv_fold": e(C, 3 * C),
                    **({"qs": e(B, T, C)} if cfg.pos == "rope" else {}),  # rotated, scaled queries
                    **({"raw_k": e(B, T, C)} if cfg.smear else {}),  # the keys before smearing
                    "att": e(B, nh, T, T), "y": e(B, T, C),
                    "ln2_xhat": e(N, C), "fc": e(N, 4 * C), "fc_fold": e(C, 4 * C), "gelu": e(N, 4 * C),
                } for _ in range(L)],
                "lnf_xhat": e(N, C), "head_fold": e(C, cfg.vocab_size), "probs": e(N, cfg.vocab_size),
                # forward scratch, shared by all layers: GELU's s, each branch's output before it joins x
                "s": e(N, 4 * C), "branch": e(N, C),
                # backward scratch, shared by all layers
                "dx": e(N, C), "dh": e(N, C), "dln": e(N, C), "tmp": e(N, C), "d4": e(N, 4 * C),
                "dqkv": e(B, T, 3 * C), "datt": e(B, nh, T, T), "kt": e(B, nh, hs, T), "dwte": e(cfg.vocab_size, C), "onehot": e(cfg.vocab_size, N),
            }
            while len(self._ws) >= 2:
                self._ws.pop(next(iter(self._ws)))
        self._ws[(B, T)] = ws  # most recently used last
        return ws

    def forward(self, idx, targets=None, pad_mask=None, train=False, rng=None, soft=None, soft_weight=1.0):
        """Logits (B, T, V) and the mean cross-entropy over targets != -1 (None without targets); soft
        (B, T, V) and soft_weight: the targets as teachers' probabilities (ops.cross_entropy_forward)."""
        cfg, P = self.cfg, self.params
        B, T = idx.shape
        if T > cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds the context window block_size={cfg.block_size}")
        drop = cfg.dropout if (train and rng is not None) else 0.0
        ws = self._workspace(B, T)
        W = _buffers(ws)
        bias = mask_bias(T, cfg.causal, pad_mask, self.dtype)  # (B|1, 1, T, T) or None
        rope = self.rope_at(0, T)
        gates = self.head_gates()  # None unless heads are ablated
        xbuf = None if ws is None else ws["x"].reshape(B, T, -1)
        x = np.take(P["wte.w"], idx, axis=0, out=xbuf)  # (B, T, C), no temporary copy
        if rope is None:
            x += P["wpe.w"][:T]
        x, c_drop0 = ops.dropout_forward(x, drop, rng)
        blocks = []
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            qkv, c_qkv = ops.layernorm_linear_forward(x, P[p + "ln_1.w"], P[p + "ln_1.b"], P[p + "attn.c_attn.w"], P[p + "attn.c_attn.b"],
                                                      out=W("qkv", i), xhat=W("ln1_xhat", i), fold=W("qkv_fold", i),
                                                      col_scale=self._qkv_scale)  # (B, T, 3C), q already scaled
            c_sm = smear_forward(qkv, P[p + "attn.smear"], cfg.n_head, raw=W("raw_k", i)) if cfg.smear else None  # keys smeared in place
            work = None if ws is None else (ws["layers"][i].get("qs"), W("att", i), W("datt"), W("kt"))  # datt, kt: shared
            a, c_att = attention_forward(qkv, cfg.n_head, bias, drop, rng, out=W("y", i), work=work, rope=rope, scale=1.0)  # (B, T, C)
            if gates is not None:
                a = gate_heads(a, *gates[i])  # (B, T, C), a new array: the cache's y stays the heads' own output
            a, c_proj = ops.linear_forward(a, P[p + "attn.c_proj.w"], P[p + "attn.c_proj.b"], out=W("branch"))  # (B, T, C)
            a, c_d1 = ops.dropout_forward(a, drop, rng)
            x += a  # (B, T, C), x is always this forward's own array
            h, c_fc = ops.layernorm_linear_forward(x, P[p + "ln_2.w"], P[p + "ln_2.b"], P[p + "mlp.c_fc.w"], P[p + "mlp.c_fc.b"],
                                                   out=W("fc", i), xhat=W("ln2_xhat", i), fold=W("fc_fold", i))  # (B, T, 4C)
            h, c_gelu = ops.gelu_forward(h, out=W("gelu", i), scratch=W("s"), grad=targets is not None, overwrite=True)  # (B, T, 4C); c_fc's buffer now holds GELU's derivative
            h, c_mp = ops.linear_forward(h, P[p + "mlp.c_proj.w"], P[p + "mlp.c_proj.b"], out=W("branch"))  # (B, T, C)
            h, c_d2 = ops.dropout_forward(h, drop, rng)
            x += h  # (B, T, C)
            blocks.append((c_qkv, c_att, c_proj, c_d1, c_fc, c_gelu, c_mp, c_d2, c_sm))
        logits, c_head = ops.layernorm_linear_forward(x, P["ln_f.w"], P["ln_f.b"], self.head_weight(),
                                                      xhat=W("lnf_xhat"), fold=W("head_fold"))  # (B, T, V), fresh: callers may keep it
        loss, c_ce = None, None
        if targets is not None:
            loss, c_ce = ops.cross_entropy_forward(logits, targets, out=W("probs"), soft=soft, soft_weight=soft_weight)
        self._cache = ((idx, P["wte.w"].shape), c_drop0, blocks, c_head, c_ce, T, ws, gates)
        return logits, loss

    def backward(self):
        """Gradients of the last forward's loss, written into self.grads (same keys as params)."""
        if self._cache is None or self._cache[4] is None:
            raise RuntimeError("backward() needs a forward() with targets first")
        c_tok, c_drop0, blocks, c_head, c_ce, T, ws, gates = self._cache
        self._cache = None  # the caches are consumed in place
        cfg, G = self.cfg, self.grads
        W = _buffers(ws)
        dlogits = ops.cross_entropy_backward(c_ce)  # (B, T, V)
        head_grad = dict(dw_t=G["wte.w"]) if cfg.tie_weights else dict(dw=G["lm_head.w"])  # tied: (V, C), the embedding adds to it below
        dx, G["ln_f.w"][...], G["ln_f.b"][...], _, _ = ops.layernorm_linear_backward(
            dlogits, c_head, dx=W("dx"), tmp=W("tmp"), **head_grad)  # (B, T, C), the residual gradient, accumulated in place
        for i in reversed(range(cfg.n_layer)):
            p = f"h.{i}."
            c_qkv, c_att, c_proj, c_d1, c_fc, c_gelu, c_mp, c_d2, c_sm = blocks[i]
            dh = ops.dropout_backward(dx, c_d2)  # (B, T, C)
            dh, _, _ = ops.linear_backward(dh, c_mp, G[p + "mlp.c_proj.w"], G[p + "mlp.c_proj.b"], dx=W("d4"))  # (B, T, 4C)
            dh = ops.gelu_backward(dh, c_gelu, out=dh)  # (B, T, 4C)
            dh, G[p + "ln_2.w"][...], G[p + "ln_2.b"][...], _, _ = ops.layernorm_linear_backward(
                dh, c_fc, G[p + "mlp.c_fc.w"], G[p + "mlp.c_fc.b"], dx=W("dln"), tmp=W("tmp"))  # (B, T, C)
            dx += dh  # residual
            da = ops.dropout_backward(dx, c_d1)  # (B, T, C)
            da, _, _ = ops.linear_backward(da, c_proj, G[p + "attn.c_proj.w"], G[p + "attn.c_proj.b"], dx=W("dh"))  # (B, T, C)
            if gates is not None:
                da *= gates[i][0]  # (B, T, C), the fill is a constant
            da = attention_backward(da, c_att, out=W("dqkv"), work=W("datt"), vt=W("kt"))  # (B, T, 3C)
            if c_sm is not None:
                da = smear_backward(da, c_sm, G[p + "attn.smear"])  # (B, T, 3C), raw keys' gradient
            da, G[p + "ln_1.w"][...], G[p + "ln_1.b"][...], _, _ = ops.layernorm_linear_backward(
                da, c_qkv, G[p + "attn.c_attn.w"], G[p + "attn.c_attn.b"], dx=W("dln"), tmp=W("tmp"))  # (B, T, C)
            dx += da  # residual
        dx = ops.dropout_backward(dx, c_drop0)  # (B, T, C)
        if "wpe.w" in G:
            G["wpe.w"][T:] = 0.0
            np.sum(dx, axis=0, out=G["wpe.w"][:T])  # (T, C)
        dwte = ops.embedding_backward(dx, c_tok, dw=W("dwte"), onehot=W("onehot"))  # (V, C)
        if cfg.tie_weights:
            G["wte.w"] += dwte  # used twice: the gradients accumulate
        else:
            G["wte.w"][...] = dwte
        return G

    def attention_maps(self):
        """(n_layer, B, nh, T, T) copy of the last forward's attention probabilities."""
        if self._cache is None:
            raise RuntimeError("attention_maps() needs a forward() first")
        return np.stack([blk[1][3] for blk in self._cache[2]]).copy()

    def head_outputs(self):
        """(n_layer, B, T, C) copy of the last forward's attention outputs before head_mask and c_proj;
        head h is columns h*hs:(h+1)*hs."""
        if self._cache is None:
            raise RuntimeError("head_outputs() needs a forward() first")
        return np.stack([blk[1][-1] for blk in self._cache[2]]).copy()

    def _layer_params(self):
        """Per layer, its twelve parameter views in block order (views stay valid as weights change)."""
        if getattr(self, "_layers", None) is None:
            names = ("ln_1.w", "ln_1.b", "attn.c_attn.w", "attn.c_attn.b", "attn.c_proj.w", "attn.c_proj.b",
                     "ln_2.w", "ln_2.b", "mlp.c_fc.w", "mlp.c_fc.b", "mlp.c_proj.w", "mlp.c_proj.b")
            self._layers = [tuple(self.params[f"h.{i}.{n}"] for n in names) for i in range(self.cfg.n_layer)]
        return self._layers
