"""Task 3, multi-turn dialogue: answers that depend on earlier turns (a name, a pet, a preference).

Context recall: on held-out dialogues, the fraction of context-dependent answers that contain the
slot value. Topic coherence (a proxy): the fraction of answers whose reference mentions one of the
dialogue's topic words and whose generated answer mentions one too.
"""

import json
from pathlib import Path

import numpy as np

from core.tasks.lm import LMTask, build_prompt, normalise


def read_slots(corpus_path, n_dialogues):
    """Slot annotations from `<corpus>.slots.jsonl` beside the corpus, or None when absent/mismatched."""
    if corpus_path is None:
        return None
    side = Path(corpus_path).with_suffix(".slots.jsonl")
    if not side.is_file():
        return None
    rows = [json.loads(line) for line in side.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows if len(rows) == n_dialogues else None


def recall_scores(results):
    """results: [(generated, expected_value)] -> fraction whose answer contains the value."""
    if not results:
        return 0.0
    return float(np.mean([normalise(v) in normalise(g) for g, v in results]))


def mentions(text, words):
    t = f" {normalise(text)} "
    return any(f" {normalise(w)} " in t for w in words)


class DialogueTask(LMTask):
    name = "dialogue"
    metric = "context_recall"
    default_dir = "dialogue"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.slots = read_slots(self.val_path, len(self.val_convs))

    def evaluate(self, model, rng=None, full=False):
        """Losses, context recall and topic coherence on held-out dialogues."""
        m = self.losses(model, full)
        if self.slots is None:
            m["context_recall"] = None
            m["topic_coherence"] = None
            return m
        n = len(self.val_convs) if full else min(len(self.val_convs), max(1, self.cfg.data.n_eval // 2))
        recall, topical = [], []
        for d in np.linspace(0, len(self.val_convs) - 1, n).astype(int):
            turns, ann = self.val_convs[d], self.slots[d]
            wanted = {s["turn"]: s["value"] for s in ann.get("slots", [])}
            topic = ann.get("topic", [])
            for t, (q, ref) in enumerate(turns):
                if t not in wanted and not mentions(ref, topic):
                    continue  # turns that test neither recall nor topic are not generated
                out = self.answer(model, turns[:t], q)
                if t in wanted:
                    recall.append((out, wanted[t]))
                if mentions(ref, topic):
                    topical.append(mentions(out, topic))
        m["context_recall"] = recall_scores(recall)
        m["topic_coherence"] = float(np.mean(topical)) if topical else None
        m["recall_n"] = len(recall)
        return m

    def probe(self, text=None):
        turns = self.val_convs[0]
        prompt = build_prompt(turns[:-1], text or turns[-1][0], self.cfg.model.block_size, reserve=0)
        return self.tokenizer.encode(prompt, unknown="unk")[None, :], list(prompt)
