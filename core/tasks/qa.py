"""Task 2, Q&A: a character LM on Q:/A: pairs, scored by loss and by its greedy answers.

Answer accuracy compares the normalised greedy answer with the reference (exact match) and by a
character-level similarity, per level when the corpus has a `.levels` sidecar (one level per pair).
"""

import difflib
import re
from pathlib import Path

import numpy as np

from core.config import parse_level_weights, suggest
from core.tasks.corpus import CorpusError, read_text
from core.tasks.lm import LMTask, build_prompt, chat_prompt, normalise, windows
from core.sample import stream_text


def read_levels(corpus_path, n_pairs):
    """Levels from `<corpus>.levels` beside the corpus (e.g. val.txt -> val.levels), else all 'all'."""
    if corpus_path is None:
        return ["all"] * n_pairs
    side = Path(corpus_path).with_suffix(".levels")
    if side.is_file():
        levels = side.read_text(encoding="utf-8").split()
        if len(levels) == n_pairs:
            return levels
    return ["all"] * n_pairs


def answer_scores(pairs):
    """Exact match (after normalising) and mean character similarity of (predicted, reference) pairs."""
    if not pairs:
        return {"exact": 0.0, "similarity": 0.0, "n": 0}
    exact = [normalise(p) == normalise(r) for p, r in pairs]
    sim = [difflib.SequenceMatcher(None, normalise(p), normalise(r)).ratio() for p, r in pairs]
    return {"exact": float(np.mean(exact)), "similarity": float(np.mean(sim)), "n": len(pairs)}


class QATask(LMTask):
    name = "qa"
    metric = "answer_exact"
    default_dir = "qa"
    keep_train_convs = False  # a large corpus streams: only the encoded text and a sample of pairs stay

    def __init__(self, cfg):
        super().__init__(cfg)
        self.val_pairs = [t for c in self.val_convs for t in c]
        self.val_levels = read_levels(self.val_path, len(self.val_pairs))
        self.train_pairs = self.train_pair_sample  # all of a small corpus; an even sample of a large one
        self.pair_p = self._pair_chances() if cfg.data.level_weights else None  # (at a question, anywhere)

    def _pair_chances(self):
        """data.level_weights as two distributions over the training pairs: for windows that start at a
        pair's question (weight), and for windows that start anywhere (weight x the pair's length), so a
        pair of weight 3 is drawn as often as if the corpus held it three times. None for a corpus with
        no levels (no .levels file beside it, or several files joined): every pair alike, as the preset's
        weights name the levels of the project's own corpus."""
        key = "data.level_weights"
        side = self.train_path.with_suffix(".levels") if self.train_path is not None else None
        if side is None or not side.is_file():
            return None
        levels = read_text(side).split()
        per_conv = [len(c) for c in self._stream()]  # pairs per conversation, held-out ones included
        if len(levels) != sum(per_conv):
            raise CorpusError(f"{key}: {side} names {len(levels)} levels but {self.train_path} holds "
                              f"{sum(per_conv)} pairs; write one level per pair, in order")
        held = np.repeat(self.held, per_conv)  # (pairs,) the validation split's pairs are never drawn
        levels = [lv for lv, h in zip(levels, held) if not h]
        weights = parse_level_weights(self.cfg.data.level_weights, key)
        unknown = sorted(set(weights) - set(levels))
        if unknown:
            raise CorpusError(f"{key}: level '{unknown[0]}' is not in {side}; "
                              f"{suggest(unknown[0], sorted(set(levels)))}its levels are "
                              f"{', '.join(sorted(set(levels)))} (set {key}= to draw every pair alike)")
        w = np.array([weights.get(lv, 1.0) for lv in levels])  # (pairs,)
        if not w.any():
            raise CorpusError(f"{key}: every training pair has weight 0; give some level a weight above 0")
        self.pair_len = np.diff(self.train_starts, append=len(self.train_ids))  # (pairs,) to the next one
        spans = w * self.pair_len  # characters a window may start at, weighted
        return w / w.sum(), spans / spans.sum()

    def batch(self, split, batch_size, rng):
        """As LMTask.batch; with data.level_weights the training windows start at pairs drawn by level."""
        if split != "train" or self.pair_p is None:
            return super().batch(split, batch_size, rng)
        ids, starts_p, any_p = self.train_ids, *self.pair_p
        T = min(self.cfg.model.block_size, len(ids) - 1)
        half = batch_size // 2  # as LMTask.batch: half at a question, half anywhere
        first = self.train_starts[rng.choice(len(starts_p), size=half, p=starts_p)]  # (half,)
        pick = rng.choice(len(any_p), size=batch_size - half, p=any_p)  # (B - half,)
        rest = self.train_starts[pick] + (rng.random(len(pick)) * self.pair_len[pick]).astype(np.int64)
        starts = np.minimum(np.concatenate([first, rest]), len(ids) - T - 1)  # (B,)
        return windows(ids, starts, T, self.train_ans if self.cfg.data.answers_only else None)

    def evaluate(self, model, rng=None, full=False):
        """Losses plus answer accuracy on held-out questions (all when full, else a fixed sample)."""
        m = self.losses(model, full)
        n = len(self.val_pairs) if full else min(len(self.val_pairs), self.cfg.data.n_eval)
        pick = np.linspace(0, len(self.val_pairs) - 1, n).astype(int) if n else []
        by_level = {}
        for i in pick:
            q, a = self.val_pairs[i]
            by_level.setdefault(self.val_levels[i], []).append((self.answer(model, [], q), a))
        everything = [p for ps in by_level.values() for p in ps]
        s = answer_scores(everything)
        m["answer_exact"], m["answer_similarity"] = s["exact"], s["similarity"]
        m["answer_by_level"] = {lv: answer_scores(ps) for lv, ps in sorted(by_level.items())}
        by_op = {}  # arithmetic per operation, read from the reference ("3 plus 8 is 11.")
        for p, r in everything:
            op = re.match(r"\s*\d+ (plus|minus) \d+ is ", r)
            if op:
                by_op.setdefault(op.group(1), []).append((p, r))
        if by_op:
            m["arith_exact_by_op"] = {op: answer_scores(ps)["exact"] for op, ps in sorted(by_op.items())}
        k = len(self.train_pairs) if full else min(len(self.train_pairs), max(1, n // 3))
        sel = np.linspace(0, len(self.train_pairs) - 1, k).astype(int)  # recall of training answers
        m["train_answer_exact"] = answer_scores(
            [(self.answer(model, [], self.train_pairs[i][0]), self.train_pairs[i][1]) for i in sel])["exact"]
        return m

    def probe(self, text=None):
        """The first held-out question as a prompt, for the attention view."""
        q = text or self.val_pairs[0][0]
        prompt = f"Q: {q}\nA:"[-self.cfg.model.block_size:]
        return self.tokenizer.encode(prompt, unknown="unk")[None, :], list(prompt)

    def history_exact(self, model, turns=(0, 4, 8), how="chat", limit=None):
        """Held-out answer exact-match when each question follows `k` earlier chat turns, for k in turns.

        The earlier turns are the k preceding held-out questions with the model's own greedy answers,
        as a chat would hold them. `how` builds the prompt: "chat" as the chat sends it (chat_prompt),
        "joined" with the turns back to back, "separated" with a blank line between turns.
        """
        pairs = self.val_pairs[:limit] if limit else self.val_pairs
        own = [self.answer(model, [], q) for q, _ in pairs]  # the answers with no history
        out = {}
        for k in turns:
            hits = []
            for i, (q, ref) in enumerate(pairs):
                hist = [(pairs[j % len(pairs)][0], own[j % len(pairs)]) for j in range(i - k, i)]
                hits.append(normalise(self._reply(model, hist, q, how)) == normalise(ref))
            out[k] = float(np.mean(hits)) if hits else 0.0
        return out

    def _reply(self, model, history, question, how):
        T = self.cfg.model.block_size
        if how == "chat":
            prompt = chat_prompt(self.name, history, question, T)
        else:
            prompt = build_prompt(history, question, T, strict=False, gap="\n" if how == "separated" else "")
        return "".join(stream_text(model, self.tokenizer, prompt, stop=("\n",), max_new_tokens=self.ANSWER_CHARS,
                                   temperature=0.0, unknown="unk")).strip()
