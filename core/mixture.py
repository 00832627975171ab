"""Several saves of one task answering as one: each next character's probability is the mean of theirs.

A Mixture has the decoding surface of a Transformer (forward, forward_step, decode_one, new_kv_cache),
so sampling, chat and evaluation take it as they take one model. It never trains.
"""

import numpy as np

from core.tasks import CHAT_TASKS, chats


class MixtureError(ValueError):
    """Saves that cannot answer together: another task, an encoder, other characters or another window."""


def check_mixable(tokenizers, cfgs, labels):
    """Raise MixtureError, naming the save, unless every save is of one task that writes text and reads
    the same characters and window. cfgs: the saves' whole configs; labels: how each save is named."""
    first, first_chars = cfgs[0], tokenizers[0].chars
    for tok, cfg, label in zip(tokenizers[1:], cfgs[1:], labels[1:]):
        if cfg.task != first.task:
            raise MixtureError(f"{label} is a {cfg.task} save and {labels[0]} a {first.task} save; "
                               f"mix saves of one task")
    if not chats(first.task):
        raise MixtureError(f"{labels[0]} is a {first.task} save: it reads its whole input at once and answers "
                           f"alone; mix saves of a task that writes text ({', '.join(CHAT_TASKS)})")
    for tok, cfg, label in zip(tokenizers[1:], cfgs[1:], labels[1:]):
        if tok.chars != first_chars:
            raise MixtureError(f"{label} was trained on other characters than {labels[0]} "
                               f"({tok.vocab_size} against {len(first_chars)}); mix saves of one task and corpus")
        if cfg.model.block_size != first.model.block_size:
            raise MixtureError(f"{label} reads {cfg.model.block_size} characters at once and {labels[0]} "
                               f"{first.model.block_size}; mix saves with the same model.block_size")


def load_members(specs, first, saves_dir=None, names=None):
    """(models, labels) of the saves `specs` [(name, tag)], checked (check_mixable) to answer with a first
    save or run `first` = (tokenizer, config, label). A save that cannot be read raises SaveError named by
    `names` (how each was asked for; default NAME:TAG); a mismatch raises MixtureError."""
    from core.checkpoint import SaveError
    from core.trainer import load_model  # the trainer imports this module
    models, toks, cfgs, labels = [], [first[0]], [first[1]], [first[2]]
    for i, (name, tag) in enumerate(specs):
        try:
            model, tok, cfg, _ = load_model(name, tag, saves_dir)
        except SaveError as e:
            raise SaveError(f"{names[i] if names else f'{name}:{tag}'}: {e}") from None
        models.append(model)
        toks.append(tok)
        cfgs.append(cfg)
        labels.append(f"{name}:{tag}")
    check_mixable(toks, cfgs, labels)
    return models, labels[1:]


def mean_log_probs(logits):
    """log of the mean of softmax(l) over the list `logits` (each (..., V)), computed stably: (..., V)."""
    logp = []
    for lg in logits:
        lg = np.asarray(lg, dtype=np.float64)
        lg = lg - lg.max(-1, keepdims=True)
        logp.append(lg - np.log(np.exp(lg).sum(-1, keepdims=True)))
    stacked = np.stack(logp)  # (M, ..., V)
    top = stacked.max(0)
    return top + np.log(np.exp(stacked - top).mean(0))


def mean_probs(models, idx, dtype=np.float32):
    """(B, T, V): the mean of the models' next-character probabilities after each prefix of idx (B, T), the
    targets train.teachers trains on. Each model's logits are copied before the next runs (buffers are reused)."""
    return np.exp(mean_log_probs([np.array(m.forward(idx)[0]) for m in models])).astype(dtype)


class Mixture:
    """Models (at least two) that answer together; their KV caches advance in step."""

    def __init__(self, models):
        if len(models) < 2:
            raise MixtureError("a mixture needs at least two models")
        self.models = list(models)
        self.cfg = self.models[0].cfg

    @property
    def head_version(self):
        return tuple(m.head_version for m in self.models)  # any member's head ablation stales the caches

    def new_kv_cache(self, batch=1):
        return {"len": 0, "heads": self.head_version, "members": [m.new_kv_cache(batch) for m in self.models]}

    def forward(self, idx, targets=None):
        """(log mean probabilities (B, T, V), the mean cross-entropy over targets != -1 or None); each
        member's logits are copied before the next runs (a model reuses its buffers)."""
        logp = mean_log_probs([np.array(m.forward(idx)[0]) for m in self.models])
        if targets is None:
            return logp, None
        keep = targets != -1  # (B, T)
        nll = -np.take_along_axis(logp, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]
        return logp, float(nll[keep].mean()) if keep.any() else 0.0

    def forward_step(self, idx, kv):
        """As Transformer.forward_step: (B, Tn, V) for idx (B, Tn) after kv['len'] cached positions."""
        out = []
        for m, sub in zip(self.models, kv["members"]):
            sub["len"] = kv["len"]
            out.append(np.array(m.forward_step(idx, sub)))
        kv["len"], kv["heads"] = kv["members"][0]["len"], self.head_version
        return mean_log_probs(out)

    def decode_one(self, tok, kv):
        """(V,) for one more token of one sequence."""
        out = []
        for m, sub in zip(self.models, kv["members"]):
            sub["len"] = kv["len"]
            out.append(np.array(m.decode_one(tok, sub)))
        kv["len"] = kv["members"][0]["len"]
        return mean_log_probs(out)
