"""Task 1, the attention proof: reverse a sequence of letters with a bidirectional encoder.

Position i must copy the letter at T-1-i, which only attention can fetch; the trained map is an
anti-diagonal. Held-out sequences are drawn first and never appear in a training batch.
"""

import numpy as np

from core.tokenizer import CharTokenizer

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PROBE = "PYTHONATTENDSBACKWARDS"  # the default probe word, cut to the sequence length


class ReversalTask:
    name = "reversal"
    metric = "accuracy"
    causal = False

    def __init__(self, cfg):
        self.cfg = cfg
        self.seq_len = cfg.data.seq_len
        if self.seq_len > cfg.model.block_size:
            raise ValueError(f"data.seq_len={self.seq_len} is longer than model.block_size="
                             f"{cfg.model.block_size}; raise model.block_size or shorten the sequences")
        self.tokenizer = CharTokenizer.from_text(ALPHABET)
        rng = np.random.default_rng(cfg.train.seed + 7919)  # held-out set: its own stream
        self.eval_x = self._letters(rng, cfg.data.n_eval)  # (N, L)
        self._held = {row.tobytes() for row in self.eval_x}
        self.train_x = None
        if cfg.data.n_train > 0:
            self.train_x = self._fresh(rng, cfg.data.n_train)  # (n_train, L)

    def _letters(self, rng, n):
        return rng.integers(1, 27, size=(n, self.seq_len), dtype=np.int64)  # ids 1..26 are A..Z

    def _fresh(self, rng, n):
        """n sequences none of which is in the held-out set."""
        x = self._letters(rng, n)  # (n, L)
        for i in range(n):
            while x[i].tobytes() in self._held:
                x[i] = self._letters(rng, 1)[0]
        return x

    def batch(self, split, batch_size, rng):
        """(x, y, mask): y is x reversed, position by position."""
        if split == "train":
            if self.train_x is not None:
                x = self.train_x[rng.integers(0, len(self.train_x), batch_size)]
            else:
                x = self._fresh(rng, batch_size)  # (B, L)
        else:
            x = self.eval_x[:batch_size]
        return x, x[:, ::-1].copy(), None

    def evaluate(self, model, rng=None, full=True, extra=None, keep=0):
        """Held-out exact-sequence and per-position accuracy, loss, and anti-diagonal attention mass.

        `extra` (k, L) ids ride in the same forward without entering the metrics (rows are independent
        without a causal mask). Their logits and maps, followed by those of the first `keep` held-out
        rows, come back under "extra": logits (k + keep, L, V), maps (nl, k + keep, nh, L, L).
        """
        x = self.eval_x
        N = len(x)
        y = x[:, ::-1]
        if extra is None:
            logits, loss = model.forward(x, y)  # (N, L, V)
        else:  # ignored targets for the extra rows: the loss stays the evaluation's
            logits, loss = model.forward(np.concatenate([x, extra]), np.concatenate([y, np.full(extra.shape, -1, y.dtype)]))
        maps = model.attention_maps()  # (nl, N + k, nh, L, L)
        out = None if extra is None else {"logits": np.concatenate([logits[N:], logits[:keep]]),
                                          "maps": np.concatenate([maps[:, N:], maps[:, :keep]], axis=1)}
        logits, maps = logits[:N], maps[:, :N]
        pred = logits.argmax(-1)
        m = reversal_metrics(pred, y)
        m["val_loss"] = float(loss)
        m.update(antidiagonal_mass(maps))
        if out is not None:
            m["extra"] = out
        return m

    def probe(self, text=None):
        """(ids (1, L), labels) for the attention heatmap; letters only, cut to L, or continued with the
        default probe's letters (PYTHON at length 8 reads PYTHONAT, never a repeat like PYTHONPY)."""
        text = "".join(c for c in (text or PROBE).upper() if c in ALPHABET) or PROBE
        pad = PROBE * (self.seq_len // len(PROBE) + 1)
        text = (text + pad[len(text):])[:self.seq_len]
        return self.tokenizer.encode(text)[None, :], list(text)


def reverse_with(model, tokenizer, text, block_size):
    """The model's output for `text` (letters A-Z): what a reversal model prints for a prompt.

    Raises ValueError naming the problem for text it cannot read (other characters, too long).
    """
    letters = text.strip().upper()
    bad = sorted({c for c in letters if c not in ALPHABET})
    if not letters or bad:
        shown = ", ".join(repr(c) for c in bad[:8])
        raise ValueError(f"a reversal model reads the letters A-Z only; the prompt {text!r} "
                         + (f"has {shown}" if bad else "is empty") + "; try --prompt PYTHON")
    if len(letters) > block_size:
        raise ValueError(f"the prompt has {len(letters)} letters; this model reads at most {block_size}")
    logits, _ = model.forward(tokenizer.encode(letters)[None, :])  # (1, L, V)
    return tokenizer.decode(logits[0].argmax(-1).tolist())


def reversal_metrics(pred, target):
    """Exact-sequence accuracy and per-position accuracy of predictions (N, L) against targets."""
    hit = pred == target  # (N, L)
    return {"accuracy": float(hit.all(axis=1).mean()),
            "position_accuracy": [round(float(a), 4) for a in hit.mean(axis=0)]}


def antidiagonal_mass(maps):
    """Mean attention weight on the mirrored key (i -> L-1-i), per layer and head, and the best head."""
    L = maps.shape[-1]
    i = np.arange(L)
    mass = maps[..., i, L - 1 - i].mean(axis=(1, 3))  # (nl, nh)
    best = np.unravel_index(int(mass.argmax()), mass.shape)
    return {"antidiagonal_mass": [[round(float(v), 4) for v in row] for row in mass],
            "antidiagonal_best": float(mass.max()),
            "antidiagonal_best_head": [int(best[0]), int(best[1])]}
