"""AdamW over the model's flat buffers, global-norm gradient clipping, warmup + cosine schedule.

Weight decay applies to matrices only (embeddings and weights), never to biases, LayerNorm gains or
the attention's key taps (h.i.attn.smear, a mixing weight pair per head, not a map between spaces).
All scalars are cast to the buffer's dtype so the update stays in float32.
"""

import math

import numpy as np


def lr_at(step, lr, min_lr, warmup_steps, max_steps, restart_at=0, restart_lr=0.0, restart_min_lr=0.0):
    """Linear warmup to `lr`, then cosine decay to `min_lr` at `max_steps` (step counts from 0).

    With restart_at > 0 the first cosine ends at restart_at, and a second one (a warm restart, no warmup)
    runs from `restart_lr` at step restart_at down to `restart_min_lr` at max_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if 0 < restart_at <= step:
        progress = min(1.0, (step - restart_at) / max(1, max_steps - restart_at))
        return restart_min_lr + 0.5 * (restart_lr - restart_min_lr) * (1.0 + math.cos(math.pi * progress))
    end = restart_at if restart_at > 0 else max_steps
    if step >= end:
        return min_lr
    span = max(1, end - warmup_steps)
    progress = (step - warmup_steps) / span
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(grad_flat, max_norm):
    """Scale gradients in place so their global L2 norm is at most max_norm; return the norm before."""
    norm = float(np.sqrt(np.dot(grad_flat, grad_flat)))
    if max_norm > 0 and norm > max_norm:
        grad_flat *= grad_flat.dtype.type(max_norm / (norm + 1e-6))
    return norm


def decayed(name, shape):
    """Whether weight decay applies: a matrix, and not the attention's key taps."""
    return len(shape) == 2 and not name.endswith(".attn.smear")


class AdamW:
    """Decoupled weight decay Adam (Loshchilov & Hutter) on one flat parameter buffer."""

    def __init__(self, model, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.0):
        self.model = model
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.m = np.zeros_like(model.flat)  # (P,)
        self.v = np.zeros_like(model.flat)  # (P,)
        self.t = 0
        self.decay_slices = []  # contiguous (start, stop) runs of matrix entries in the flat buffer
        off = 0
        for name, shape in model.shapes.items():
            n = int(np.prod(shape))
            if decayed(name, shape):
                if self.decay_slices and self.decay_slices[-1][1] == off:
                    self.decay_slices[-1] = (self.decay_slices[-1][0], off + n)
                else:
                    self.decay_slices.append((off, off + n))
            off += n
        self._tmp = np.empty_like(model.flat)

    def step(self, lr):
        """One update with learning rate lr using model.grad_flat."""
        p, g, m, v, tmp = self.model.flat, self.model.grad_flat, self.m, self.v, self._tmp
        f = p.dtype.type
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        if self.weight_decay > 0:
            keep = f(1.0 - lr * self.weight_decay)
            for a, b in self.decay_slices:
                p[a:b] *= keep
        m *= f(b1)
        np.multiply(g, f(1.0 - b1), out=tmp)
        m += tmp
        v *= f(b2)
        np.multiply(g, g, out=tmp)
        tmp *= f(1.0 - b2)
        v += tmp
        step_size = lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        np.sqrt(v, out=tmp)
        tmp += f(self.eps * math.sqrt(1.0 - b2 ** self.t))
        np.divide(m, tmp, out=tmp)
        tmp *= f(step_size)
        p -= tmp

    def state_dict(self):
        return {"m": self.m.copy(), "v": self.v.copy(), "t": np.array(self.t, dtype=np.int64)}

    def load_state_dict(self, state):
        if state["m"].shape != self.m.shape or state["v"].shape != self.v.shape:
            raise ValueError("optimizer state does not match the model's parameter count")
        self.m[...] = state["m"]
        self.v[...] = state["v"]
        self.t = int(state["t"])
