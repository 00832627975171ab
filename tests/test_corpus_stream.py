"""A large corpus streams: it is encoded a conversation at a time into one-byte ids, with the same ids,
answer mask and turn starts as encoding the whole text at once. Its memory is measured by
`python -m bench corpus` (figures in RELIABILITY.md), not asserted here."""

import numpy as np

from bench.corpus import make_corpus
from core.config import load_config
from core.tasks import make_task
from core.tasks.corpus import load_conversations
from core.tasks.lm import LMTask, split_conversations
from core.tokenizer import CharTokenizer


def whole_text_encoding(convs, tok):
    """The encoding as it was before streaming: the whole text joined, then encoded (the reference)."""
    text, mask, starts = [], [], []
    for c, turns in enumerate(convs):
        if c:
            text.append("\n")
            mask.append(False)
        for q, a in turns:
            starts.append(len(mask))
            head, body = f"Q: {q}\nA:", f" {a}\n"
            text += [head, body]
            mask += [False] * len(head) + [True] * len(body)
    return tok.encode("".join(text), unknown="unk"), np.array(mask), np.array(starts)


def test_streamed_encoding_equals_the_whole_text_encoding(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    make_corpus(path, 1)  # 1 MB: several 256k-character chunks
    monkeypatch.setattr(LMTask, "TRAIN_PAIR_SAMPLE", 100)
    cfg = load_config("qa", overrides=[f"data.corpus={path}", "data.n_eval=4"])
    task = make_task(cfg)
    convs = load_conversations(path)
    train, val = split_conversations(convs, cfg.data.val_fraction, cfg.train.seed)
    tok = CharTokenizer.from_text("".join(f"Q: {q}\nA: {a}\n" for c in train + val for q, a in c) + "\n")
    assert task.tokenizer.chars == tok.chars and task.val_convs == val and task.train_convs == train
    for got, want in zip((task.train_ids, task.train_ans, task.train_starts), whole_text_encoding(train, tok)):
        np.testing.assert_array_equal(got, want)
    assert task.train_ids.dtype == np.uint8
    pairs = [p for c in train for p in c]
    assert task.train_pairs == [pairs[i] for i in np.linspace(0, len(pairs) - 1, 100).astype(int)]
