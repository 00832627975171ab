"""Inference on one more token: the KV cache, prompt prefill and batch-1 decoding.

Mixed into core.model.Transformer. decode_one is forward_step's math on vectors, on weights folded
once per cache (LayerNorm gains and biases into the next matrix, biases as a last matrix row that
meets a constant 1), because at batch 1 each numpy call costs more than its arithmetic.
"""

import math
import weakref

import numpy as np

from core import ops
from core.attention import attention_step, gate_heads, rope_forward, smear_columns, smear_step

_max, _min, _sum = np.maximum.reduce, np.minimum.reduce, np.add.reduce  # skip ndarray.max/sum's Python wrappers
_MIN_ROW_SUM = 1e-30  # attention rows whose exps sum to less are redone with the max shift


class KVCache(dict):
    """One sequence's cached keys and values ('kv', 'len'), with smeared keys each position's share in
    the next key ('prev'), its folded decoding weights ('fold') and the model's head_version they
    were made under ('heads')."""
    __slots__ = ("__weakref__",)


class Decoding:
    """new_kv_cache / forward_step / decode_one for a Transformer (which sets cfg, params, dtype, rope,
    _decode_pool, _pool_lock, head_version and head_gates())."""

    def _check_heads(self, kv):
        """A cache's keys, values and folded weights were made under one head ablation; after a change
        of head_mask / head_fill, an empty cache refolds and a filled one is refused."""
        if kv.get("heads") != self.head_version:
            if kv["len"]:
                raise ValueError("the head mask changed while this KV cache held positions; "
                                 "start a new cache (or reset its len to 0) to decode with the new mask")
            kv["fold"], kv["heads"] = None, self.head_version

    def new_kv_cache(self, batch=1):
        """Per-layer K and V buffers (B, nh, block_size, hs) for incremental decoding, len 0.

        A batch-1 cache takes over the buffers of one that no longer exists, if any: fresh
        multi-megabyte arrays cost a page fault per 4 KB on first use (a millisecond a generation).
        """
        cfg = self.cfg
        shape = (cfg.n_layer, 2, batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        kv = KVCache(len=0, fold=None, heads=self.head_version)

        def buffers():
            return {"kv": np.zeros(shape, self.dtype), "fold": None,
                    "prev": np.zeros((cfg.n_layer, batch, cfg.block_size, cfg.n_embd), self.dtype) if cfg.smear else None}
        with self._pool_lock:
            slot = next((s for s in self._decode_pool if s[0]() is None), None) if batch == 1 else None
            if slot is None and batch == 1 and len(self._decode_pool) < 4:
                slot = [None, buffers()]
                self._decode_pool.append(slot)
            if slot is not None:
                slot[0] = weakref.ref(kv)
        if slot is None:
            kv.update(kv=(own := buffers())["kv"], prev=own["prev"])
        else:
            kv.update(kv=slot[1]["kv"], prev=slot[1]["prev"])  # positions past len are never read: no zeroing
            kv["pool"] = slot[1]
        return kv

    def forward_step(self, idx, kv):
        """Causal logits (B, Tn, V) for new tokens idx (B, Tn) appended after kv['len'] cached ones."""
        cfg, P = self.cfg, self.params
        if not cfg.causal:
            raise ValueError("incremental decoding needs a causal model")
        B, Tn = idx.shape
        start = kv["len"]
        if start + Tn > cfg.block_size:
            raise ValueError(f"KV cache full: {start}+{Tn} positions exceed block_size={cfg.block_size}")
        self._check_heads(kv)
        if B == 1 and Tn == 1:
            return self.decode_one(int(idx[0, 0]), kv)[None, None, :]
        x = P["wte.w"][idx.reshape(-1)]  # (B*Tn, C), rows in (B, Tn) order
        rope = self.rope_at(start, start + Tn)
        if rope is None:
            x = (x.reshape(B, Tn, -1) + P["wpe.w"][start:start + Tn]).reshape(B * Tn, -1)
        gates = self.head_gates()  # None unless heads are ablated
        for i, (ln1w, ln1b, wqkv, bqkv, wo, bo, ln2w, ln2b, wfc, bfc, wp, bp) in enumerate(self._layer_params()):
            h, _ = ops.layernorm_forward(x, ln1w, ln1b)  # (B*Tn, C)
            qkv, _ = ops.linear_forward(h, wqkv, bqkv)  # (B*Tn, 3C)
            qkv = qkv.reshape(B, Tn, -1)  # (B, Tn, 3C)
            if cfg.smear:
                smear_step(qkv, kv["prev"][i], start, P[f"h.{i}.attn.smear"])  # keys mixed with the previous ones
            a, _ = attention_step(qkv, kv["kv"][i, 0], kv["kv"][i, 1], start, cfg.n_head, rope)
            if gates is not None:
                a = gate_heads(a, *gates[i])  # (B, Tn, C), heads ablated
            a, _ = ops.linear_forward(a.reshape(B * Tn, -1), wo, bo)  # (B*Tn, C)
            x += a
            h, _ = ops.layernorm_forward(x, ln2w, ln2b)
            h, _ = ops.linear_forward(h, wfc, bfc)  # (B*Tn, 4C)
            h, _ = ops.gelu_forward(h, grad=False)
            h, _ = ops.linear_forward(h, wp, bp)  # (B*Tn, C)
            x += h
        kv["len"] = start + Tn
        x, _ = ops.layernorm_forward(x, P["ln_f.w"], P["ln_f.b"])
        return (x @ self.head_weight()).reshape(B, Tn, -1)  # (B, Tn, V)

    def _folded(self, kv):
        """The cache's folded decoding weights, made on first use (into its pooled buffers if any)."""
        if kv.get("fold") is None:
            pool = kv.get("pool")
            kv["fold"] = self._decode_weights(None if pool is None else pool["fold"])
            if pool is not None:
                pool["fold"] = kv["fold"]
        return kv["fold"]

    def decode_one(self, tok, kv):
        """Logits (V,) for one more token of one sequence: forward_step's math on vectors, with the
        weights folded for decoding (see _decode_weights) so that a layer is ~26 numpy calls.

        Attention's softmax skips the shift by the row max (two calls a layer). If a score is so
        large that exp overflows (the logits come out non-finite), or a row's exps sum to so little
        that their precision suffers, the step is redone with the shift, rewriting the same keys
        and values.
        """
        pos = kv["len"]
        if pos >= self.cfg.block_size:
            raise ValueError(f"KV cache full: {pos}+1 positions exceed block_size={self.cfg.block_size}")
        if kv["heads"] != self.head_version:
            self._check_heads(kv)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            logits, row_sums = self._decode_step(tok, kv, pos, shift=False)
        if not (math.isfinite(_sum(logits)) and _min(row_sums, axis=None) > _MIN_ROW_SUM):
            logits, _ = self._decode_step(tok, kv, pos, shift=True)
        kv["len"] = pos + 1
        return logits

    def _decode_step(self, tok, kv, pos, shift):
        """decode_one's arithmetic for position `pos`: (logits (V,), attention row sums (L, nh, 1, 1)).
        `shift`: the softmax subtracts each row's max first."""
        cfg = self.cfg
        layers, head, (wte, wpe), (c_gelu, ones, r, sums), (h1, h, y, u1, u) = self._folded(kv)
        C, nh, n = cfg.n_embd, cfg.n_head, pos + 1
        hs = C // nh
        rope = self.rope_at(pos, n)  # (1, hs) tables, or None
        x = wte[tok] + wpe[pos] if rope is None else wte[tok].copy()  # (C + 1,): the residual, then its mean
        xc = x[:C]

        def normalise():  # h = LayerNorm(x) without its gain and bias (those live in the next matrix)
            # the matrices after a LayerNorm are centred (their columns sum to 0), so h need not be
            m = float(x[C])
            var = float(np.dot(xc, xc)) / C - m * m
            if var >= 16.0 * m * m:
                r[0] = 1.0 / math.sqrt(var + 1e-5)
                np.multiply(xc, r, out=h)
            else:  # a large common offset would cancel precision away: centre first, as in training
                np.subtract(xc, x[C:], out=h)
                r[0] = 1.0 / math.sqrt(float(np.dot(h, h)) / C + 1e-5)
                np.multiply(h, r, out=h)
        # Constants are arrays, not Python numbers: numpy takes ~3x longer to apply a scalar to a vector.
        kvs, prev = kv["kv"], kv["prev"]
        for i, (w_qkv, w_o, w_fc, w_p) in enumerate(layers):  # each (in + 1, out): the bias is the last row
            normalise()  # h1 = [h, 1]
            qkv = np.dot(h1, w_qkv)  # (3C,), q already scaled by 1/sqrt(hs); smeared: (4C,), see below
            cache = kvs[i, :, 0]  # (2, nh, Tmax, hs): K and V
            cache[:, :, pos] = qkv[C:3 * C].reshape(2, nh, hs)
            if prev is not None:  # smeared keys: the k columns hold a * k, extra columns b * k
                prev[i, 0, pos] = qkv[3 * C:]
                if pos:
                    cache[0, :, pos] += prev[i, 0, pos - 1].reshape(nh, hs)
            q = qkv[:C].reshape(nh, 1, hs)  # (nh, 1, hs)
            if rope is not None:
                cache[0, :, pos] = rope_forward(cache[0, :, pos], *rope)  # (nh, hs) keys, turned
                q = rope_forward(q, *rope)
            att = np.matmul(q, cache[0, :, :n].transpose(0, 2, 1))  # (nh, 1, n)
            if shift:
                att -= _max(att, axis=-1, keepdims=True)
            np.exp(att, out=att)
            att /= _sum(att, axis=-1, keepdims=True, out=sums[i])
            np.matmul(att, cache[1, :, :n], out=y)  # (nh, 1, hs), a view of h1's first C entries
            x += np.dot(h1, w_o)  # (C + 1,), the mean too
            normalise()
            g = np.dot(h1, w_fc)  # (4C,) = k * (fc pre-activation), k = sqrt(2/pi)
            np.multiply(g, g, out=u)  # tanh GELU: h*(1+tanh(k(h + a h^3)))/2 with g = k h; 1/(2k) is in w_p
            u *= c_gelu
            u += ones
            u *= g
            np.tanh(u, out=u)
            u += ones
            u *= g  # u1 = [u, 1]
            x += np.dot(u1, w_p)  # (C + 1,)
        normalise()
        return np.dot(h1, head), sums  # (V,), a fresh array

    def _decode_weights(self, into=None):
        """Decoding state for one cache: per layer (w_qkv, w_o, w_fc, w_p), each a matrix (in + 1, out)
        whose last row is the bias, and the head's; the embeddings; constant vectors (GELU's cubic
        coefficient, ones, a 1-element scratch, the attention row sums); and the vectors a layer
        fills, each with a constant 1 at the end to meet the bias row.

        LayerNorm gains and biases are folded into the matrix after them, the attention scale into
        the q columns, GELU's constants into c_fc and c_proj, head ablation (head_mask, head_fill)
        into c_proj's rows and bias. The residual stream carries its own mean as an extra last entry:
        the embeddings have it as a last column, and w_o and w_p an extra column that computes the
        mean of what they add. The matrices after a LayerNorm are
        centred (each column's mean over the inputs subtracted), so they ignore the input's mean.
        Weights must not change while one cache is in use (one generation). `into`, an earlier
        result for this model, is overwritten instead of allocating anew."""
        cfg, f, dt = self.cfg, self.dtype.type, self.dtype
        C, nh, hs = cfg.n_embd, cfg.n_head, cfg.n_embd // cfg.n_head
        k = np.sqrt(2.0 / np.pi)

        spare = iter([] if into is None else [m for layer in into[0] for m in layer] + [into[1], *into[2]])

        def buffer(shape):  # the next of `into`'s arrays, else a new one
            out = next(spare, None)
            return np.empty(shape, dt) if out is None else out

        def with_mean(w):  # (rows, C) -> (rows, C + 1), the last column each row's mean
            out = buffer((w.shape[0], C + 1))
            out[:, :C] = w
            np.mean(out[:, :C], axis=1, out=out[:, C])
            return out

        def fold(w, b, gain=None, shift=None, scale=1.0, bias_scale=1.0, centre=False, mean=False):
            """[gain * w; shift @ w + b] (in + 1, out), scaled; centred over the inputs; + a mean column."""
            out = buffer((w.shape[0] + 1, w.shape[1] + mean))  # (in + 1, out [+ 1])
            top = out[:-1, :w.shape[1]]
            np.multiply(w, (gain if gain is not None else f(1.0))[..., None] * f(scale), out=top)
            out[-1, :w.shape[1]] = b if shift is None else shift @ w + b
            out[-1, :w.shape[1]] *= f(bias_scale)
            if centre:
                top -= top.mean(axis=0)
            if mean:
                np.mean(out[:, :-1], axis=1, out=out[:, -1])
            return out
        layers = []
        gates = self.head_gates()  # None unless heads are ablated
        for i, (ln1w, ln1b, wqkv, bqkv, wo, bo, ln2w, ln2b, wfc, bfc, wp, bp) in enumerate(self._layer_params()):
            if gates is not None:  # c_proj(a * cols + fill) = a @ (cols * wo) + (fill @ wo + bo)
                cols, fill = gates[i]
                wo, bo = wo * cols[:, None], bo if fill is None else fill @ wo + bo
            if cfg.smear:  # [q, a k, v, b k]: the key's own share and its share in the next key
                a, b = smear_columns(self.params[f"h.{i}.attn.smear"], C)  # (C,) each
                wqkv = np.concatenate([wqkv[:, :C], wqkv[:, C:2 * C] * a, wqkv[:, 2 * C:], wqkv[:, C:2 * C] * b], 1)
                bqkv = np.concatenate([bqkv[:C], bqkv[C:2 * C] * a, bqkv[2 * C:], bqkv[C:2 * C] * b])
            w_qkv = fold(wqkv, bqkv, ln1w, ln1b, centre=True)  # (C + 1, 3C), smeared (C + 1, 4C)
            w_qkv[:, :C] *= f(1.0 / np.sqrt(hs))
            layers.append((w_qkv, fold(wo, bo, mean=True), fold(wfc, bfc, ln2w, ln2b, k, k, centre=True),
                           fold(wp, bp, scale=0.5 / k, mean=True)))
        head = fold(self.head_weight(), np.zeros(cfg.vocab_size, dt), self.params["ln_f.w"], self.params["ln_f.b"],
                    centre=True)
        P = self.params
        emb = (with_mean(P["wte.w"]),  # (V, C + 1)
               with_mean(P["wpe.w"]) if "wpe.w" in P else None)  # (T, C + 1)
        if into is not None:
            return layers, head, emb, into[3], into[4]
        consts = (np.full(4 * C, 0.044715 / k ** 2, dt), np.ones(4 * C, dt), np.ones(1, dt),
                  np.ones((cfg.n_layer, nh, 1, 1), dt))  # the last: each layer's attention row sums
        h1, u1 = np.ones(C + 1, dt), np.ones(4 * C + 1, dt)  # the last entries stay 1
        return layers, head, emb, consts, (h1, h1[:C], h1[:C].reshape(nh, 1, hs), u1, u1[:4 * C])
