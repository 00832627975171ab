"""A PyTorch twin of core.model.Transformer, for speed and gradient comparisons only.

Same architecture (pre-LN GPT, fused c_attn, tanh-GELU, tied head; learned or rotary positions, smeared
keys) with our weights copied in.
PyTorch is never a dependency: importing this module raises ImportError when torch is absent.
"""

import numpy as np
import torch
import torch.nn.functional as F

from core.optim import decayed


def _dtype(np_dtype):
    return torch.float64 if np.dtype(np_dtype) == np.float64 else torch.float32


def _is_weight(name, value):
    """A block's (in, out) weight, which torch stores transposed (the key taps are not one)."""
    return value.ndim == 2 and name.startswith("h.") and not name.endswith(".attn.smear")


def _rotary(T, hs, dtype, base=10000.0):
    """GPT-NeoX rotary tables (T, hs): channel j pairs with j + hs/2, angle pos * base^(-2j/hs)."""
    inv = base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)  # (T, hs/2)
    ang = torch.cat([ang, ang], dim=1)  # (T, hs)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def _rotate_half(t):
    """(-second half, first half) of the last axis."""
    a, b = t.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class TorchTwin:
    """Parameters as torch tensors under our names; weights stored as torch.nn.Linear does (out, in)."""

    def __init__(self, model, threads=1, weight_decay=0.1, betas=(0.9, 0.99)):
        if model.cfg.pos not in ("learned", "rope"):
            raise ValueError(f"the PyTorch twin knows learned and rotary positions, not {model.cfg.pos!r}")
        torch.set_num_threads(threads)
        self.cfg = model.cfg
        dt = _dtype(model.dtype)
        self.p = {}
        for name, value in model.params.items():
            arr = value.T if _is_weight(name, value) else value  # (Cout, Cin)
            self.p[name] = torch.tensor(np.ascontiguousarray(arr), dtype=dt, requires_grad=True)
        if "lm_head.w" in self.p:
            self.p["lm_head.w"] = torch.tensor(np.ascontiguousarray(model.params["lm_head.w"].T), dtype=dt,
                                               requires_grad=True)  # (V, C)
        decay = [t for n, t in self.p.items() if decayed(n, t.shape)]
        rest = [t for n, t in self.p.items() if not decayed(n, t.shape)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                      {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=betas, eps=1e-8)

    def loss(self, idx, targets):
        """Mean cross-entropy (targets -1 ignored) for int arrays idx, targets (B, T)."""
        cfg, p = self.cfg, self.p
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        B, T = idx_t.shape
        C, nh = cfg.n_embd, cfg.n_head
        x = p["wte.w"][idx_t]  # (B, T, C)
        if cfg.pos == "learned":
            x = x + p["wpe.w"][:T]
        else:
            cos, sin = _rotary(T, C // nh, x.dtype)  # (T, hs) each
        for i in range(cfg.n_layer):
            q = f"h.{i}."
            h = F.layer_norm(x, (C,), p[q + "ln_1.w"], p[q + "ln_1.b"], 1e-5)
            qkv = F.linear(h, p[q + "attn.c_attn.w"], p[q + "attn.c_attn.b"])  # (B, T, 3C)
            qh, kh, vh = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in qkv.split(C, dim=2))
            if cfg.smear:  # k'_t = a k_t + b k_(t-1), (a, b) per head
                a, b = p[q + "attn.smear"][:, :, None, None]  # (nh, 1, 1) each
                kh = a * kh + b * F.pad(kh, (0, 0, 1, 0))[:, :, :T]
            if cfg.pos == "rope":  # after smearing, as the core does: the mixed key turns with its own position
                qh, kh = (t * cos + _rotate_half(t) * sin for t in (qh, kh))
            y = F.scaled_dot_product_attention(qh, kh, vh, is_causal=cfg.causal)  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(B, T, C)
            x = x + F.linear(y, p[q + "attn.c_proj.w"], p[q + "attn.c_proj.b"])
            h = F.layer_norm(x, (C,), p[q + "ln_2.w"], p[q + "ln_2.b"], 1e-5)
            h = F.gelu(F.linear(h, p[q + "mlp.c_fc.w"], p[q + "mlp.c_fc.b"]), approximate="tanh")
            x = x + F.linear(h, p[q + "mlp.c_proj.w"], p[q + "mlp.c_proj.b"])
        x = F.layer_norm(x, (C,), p["ln_f.w"], p["ln_f.b"], 1e-5)
        head = p["wte.w"] if cfg.tie_weights else p["lm_head.w"]
        logits = F.linear(x, head)  # (B, T, V)
        tgt = torch.as_tensor(targets, dtype=torch.long)
        return F.cross_entropy(logits.view(B * T, -1), tgt.view(-1), ignore_index=-1)

    def loss_and_grads(self, idx, targets):
        """(loss float, {name: ndarray}) with gradients in our layout (weights (Cin, Cout))."""
        for t in self.p.values():
            t.grad = None
        loss = self.loss(idx, targets)
        loss.backward()
        grads = {}
        for name, t in self.p.items():
            g = t.grad.detach().numpy()
            grads[name] = g.T if (_is_weight(name, g) or name == "lm_head.w") else g
        return float(loss.detach()), grads

    def step(self, idx, targets, lr=1e-3, clip=1.0):
        """One training step: forward, backward, global-norm clip, AdamW."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.p.values()), clip)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        return float(loss.detach())
