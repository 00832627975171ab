"""Sampling: a generator that yields one token (or character) at a time, with a KV cache.

The context window slides in hops: when the text outgrows block_size, it restarts from the last
half window, so the cache is rebuilt once per half window instead of on every character (in place:
the weights the cache folded for decoding are kept for the whole generation). The uncached
path uses the same rule, so both see exactly the same context and give the same logits. A chat
prompt (core.tasks.lm.Prompt) makes room instead: its oldest whole turns give way (_making_room).
"""

from dataclasses import dataclass, field

import numpy as np

from core.interp import topk_probs

REPLY_STEP = 16  # characters of room a prompt makes at a time for a reply that fills the window
UNSURE_CHARS = 4  # a reply's opening (" You", " I d", " Thu"): where the model picks what kind of answer to give


@dataclass
class Unsure:
    """Reply `reply` instead when the model is unsure how to begin: its likeliest character at one of the
    reply's first `chars` positions is less likely than `below` (sample.unsure_below). A question it was
    never taught is often begun as a guess between frames it knows ("Who composed the Four Seasons?" -> "M"
    at 29%: "Monsday comes after September."), one it knows with a sure first letter. After a reply, `used` says
    whether it was replaced, `opening` holds the characters the model began with and `top` the lowest of
    their probabilities (`cands`: their top candidates, when the stream gave them).

    With `anywhere` > 0 (sample.unsure_reply_below) the whole reply is judged too, and held back until it
    ends: replaced when its likeliest character anywhere is less likely than `anywhere`. Asked about a fact
    it was never told ("What's my name?" in a fresh chat) the model begins in a frame it knows well and then
    makes the value up ("Your name is Tsen.", its "T" 8% sure), where a value it copies from the chat is
    near-certain. `why` is then "reply", `opening` the whole reply, `low` its lowest probability."""

    below: float
    reply: str
    chars: int = UNSURE_CHARS
    anywhere: float = 0.0
    used: bool = False
    why: str = ""
    opening: str = ""
    top: float = 1.0
    low: float = 1.0
    cands: list = field(default_factory=list)

    @property
    def judging(self):
        return self.below > 0 or self.anywhere > 0

    def note(self):
        """Why the reply was replaced: what the model was unsure of and how sure it was."""
        began = self.opening.strip() or self.opening
        if self.why == "reply":
            return (f"unsure of its answer: its likeliest reply {began!r} was {self.low:.0%} sure at worst, "
                    f"under sample.unsure_reply_below {self.anywhere:.0%}")
        return (f"unsure how to answer: its likeliest start {began!r} was {self.top:.0%} sure at worst, "
                f"under sample.unsure_below {self.below:.0%}")


def window_keep(block_size):
    """How many tokens survive when the window overflows."""
    return max(1, block_size - max(1, block_size // 2))


def pick_token(logits, temperature=1.0, top_k=0, top_p=1.0, rng=None):
    """Choose the next id from logits (V,): greedy at temperature 0, else top-k / nucleus sampling."""
    if temperature <= 0:
        return int(np.argmax(logits))
    logits = np.asarray(logits, dtype=np.float64)  # (V,)
    z = logits / temperature
    if 0 < top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")  # (V,)
        cum = np.cumsum(p[order])
        cut = int(np.searchsorted(cum, top_p)) + 1  # smallest prefix reaching top_p
        keep = np.zeros_like(p, dtype=bool)
        keep[order[:cut]] = True
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    rng = rng if rng is not None else np.random.default_rng()
    return int(min(np.searchsorted(np.cumsum(p), rng.random(), side="right"), p.size - 1))


def next_logits(model, ids, state, use_cache=True):
    """Logits (V,) for the token after `ids`; `state` holds the window start and the KV cache."""
    block = model.cfg.block_size
    n = len(ids)
    kv = state.get("kv")
    if kv is not None and kv["heads"] != model.head_version:
        kv["len"] = 0  # the head ablation changed: the cached keys and values are stale
    if n - state["start"] > block:
        state["start"] = n - window_keep(block)
        if kv is not None:
            kv["len"] = 0  # the window moved: its positions are computed afresh into the same cache
    if use_cache and kv is not None and kv["len"] == n - state["start"] - 1:
        return model.decode_one(ids[-1], kv)  # the common case: one new position
    window = np.asarray([ids[state["start"]:]], dtype=np.int64)  # (1, T)
    if not use_cache or not model.cfg.causal:
        return model.forward(window)[0][0, -1]
    if kv is None:
        kv = state["kv"] = model.new_kv_cache()
    kv["len"] = 0
    return model.forward_step(window, kv)[0, -1]


def generate(model, ids, *, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, rng=None,
             use_cache=True, cancel=None, with_logits=False, banned=()):
    """Yield up to max_new_tokens new ids, one per step (with_logits: (id, logits (V,)) pairs, the
    logits it was drawn from, `banned` ids included); stops early when cancel() is true. Ids in
    `banned` are never drawn."""
    if not len(ids):
        raise ValueError("generation needs at least one token of context")
    ids = [int(i) for i in ids]
    rng = rng if rng is not None else np.random.default_rng()
    state = {"start": 0, "kv": None}
    for _ in range(max_new_tokens):
        if cancel is not None and cancel():
            return
        logits = next_logits(model, ids, state, use_cache)
        allowed = logits
        if banned:
            allowed = np.array(logits, dtype=np.float64)  # (V,)
            allowed[list(banned)] = -np.inf
        tok = pick_token(allowed, temperature, top_k, top_p, rng)
        ids.append(tok)
        yield (tok, logits) if with_logits else tok


def stream_text(model, tokenizer, prompt, *, stop=("\n",), max_new_tokens=200, temperature=0.8,
                top_k=0, top_p=1.0, seed=None, use_cache=True, cancel=None, unknown="error", topk=0, unsure=None):
    """Yield the reply one character at a time; a stop string ends it and is not yielded.

    topk=K > 0 yields (char, [(candidate char, probability), ...K]) instead: the K likeliest next
    characters under the model's raw softmax (temperature 1, before any top-k / top-p filtering).
    <unk> is never written: it stands for a character outside the vocabulary, not one to reply with
    (a young model would otherwise print it as "\ufffd").
    unsure (an Unsure, below or anywhere > 0): the reply's opening (with `anywhere`, the whole reply) is held
    back until it is known whether the model was sure enough of it; if not, unsure.reply is yielded instead
    (its characters with no candidates).
    """
    deciding = unsure is not None and unsure.judging
    whole = deciding and unsure.anywhere > 0
    if deciding:
        unsure.used, unsure.why, unsure.opening, unsure.top, unsure.low, unsure.cands = False, "", "", 1.0, 1.0, []
    rng = np.random.default_rng(seed)
    hold = max((len(s) for s in stop), default=1) - 1  # chars held back until no stop string can start
    text, sent, cands = "", 0, []
    for tok, logits in _making_room(model, tokenizer, prompt, unknown, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_k=top_k, top_p=top_p, rng=rng, use_cache=use_cache,
                                    cancel=cancel, with_logits=True,
                                    banned=(tokenizer.UNK_ID,) if tokenizer.vocab_size > 1 else ()):
        ch = tokenizer.decode([tok])  # one character per id
        text += ch
        if topk > 0:
            cands += [[(tokenizer.decode([i]), p) for i, p in topk_probs(logits, topk)]] * len(ch)
        hit = min((text.find(s) for s in stop if s and s in text), default=-1)
        if deciding:
            p = topk_probs(logits, 1)[0][1]
            if len(text) - len(ch) < unsure.chars:
                unsure.top = min(unsure.top, p)
            if hit < 0:  # (a stop string's own characters are not the reply's)
                unsure.low = min(unsure.low, p)
            if hit < 0 and (whole or len(text) < unsure.chars):
                continue  # the opening (or the whole reply) is still being written: nothing is shown yet
            deciding = False
            if _replaced(unsure, text if hit < 0 else text[:hit], cands, whole):
                yield from _instead(unsure, topk)
                return
        end = len(text) - hold if hit < 0 else hit
        while sent < end:
            yield (text[sent], cands[sent]) if topk > 0 else text[sent]
            sent += 1
        if hit >= 0:
            return
    stopped = cancel is not None and cancel()
    if deciding and not stopped and _replaced(unsure, text, cands, whole):  # the reply ended while held back
        yield from _instead(unsure, topk)
        return
    for i in range(sent, len(text)):
        yield (text[i], cands[i]) if topk > 0 else text[i]


def _making_room(model, tokenizer, prompt, unknown, *, max_new_tokens, cancel=None, **kw):
    """generate()'s (id, logits) pairs for `prompt`. A prompt that can make room for its reply
    (core.tasks.lm.Prompt) is rebuilt when the reply fills the window, its oldest whole turns dropped,
    so the turns kept stay whole (a fact told early in a chat stays in view while its turn fits);
    otherwise, or when no room can be made, the window hops as generate() does."""
    block = model.cfg.block_size
    ids = list(tokenizer.encode(prompt, unknown=unknown))
    remake = getattr(prompt, "with_room", None)
    made = []
    while len(made) < max_new_tokens:
        left = max_new_tokens - len(made)
        if remake is not None and len(ids) + len(made) >= block:
            bigger = remake(len(made) + REPLY_STEP)
            new = list(tokenizer.encode(bigger, unknown=unknown)) if bigger else []
            if new and len(new) + len(made) < block:
                ids = new
            else:
                remake = None  # the question alone fills the window: let it hop
        n = left if remake is None else min(left, block - len(ids) - len(made))
        before = len(made)
        for tok, logits in generate(model, ids + made, max_new_tokens=n, cancel=cancel, **kw):
            made.append(tok)
            yield tok, logits
        if len(made) - before < n:  # cancelled
            return


def _instead(unsure, topk):
    """unsure.reply's characters, after the spaces the model began with (" I don't know that yet.")."""
    lead = unsure.opening[:len(unsure.opening) - len(unsure.opening.lstrip())]
    return (((c, []) if topk > 0 else c) for c in lead + unsure.reply)


def _replaced(unsure, text, cands, whole=False):
    """Decide on the reply held back, `text` (its opening, or with `whole` all of it; unsure.top and
    unsure.low already their lowest top-1 probabilities): True to reply unsure.reply instead."""
    unsure.opening, unsure.cands = text[:unsure.chars], cands[:unsure.chars]
    # a model already beginning unsure.reply ("I d") goes on in its own words
    if unsure.reply.startswith(text[:unsure.chars].lstrip()):
        return False
    if unsure.below > 0 and unsure.top < unsure.below:
        unsure.used, unsure.why = True, "start"
    elif whole and unsure.low < unsure.anywhere:
        unsure.used, unsure.why, unsure.opening, unsure.cands = True, "reply", text, cands[:len(text)]
    return unsure.used
