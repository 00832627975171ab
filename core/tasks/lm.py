"""What the Q&A and dialogue tasks share: a character stream, random windows, strided loss, greedy answers.

The stream is the corpus text encoded once; a batch is B random windows of block_size+1 characters.
A parallel boolean stream marks answer characters, so loss can be reported on answers alone.
"""

import os
from array import array
from pathlib import Path

import numpy as np

from core.sample import Unsure, stream_text
from core.tasks.corpus import CorpusError, format_turn, iter_conversations, load_conversations
from core.tokenizer import CharTokenizer

CORPORA = Path(__file__).resolve().parent.parent.parent / "corpora"
DONT_KNOW = "I don't know that yet."  # the corpora's answer to what they do not teach (corpora/generate.py)


def id_dtype(vocab_size):
    """The smallest unsigned dtype that holds every id: a large corpus costs one byte per character."""
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32


class StreamWriter:
    """Encodes conversations into preallocated (ids, answer_mask, turn_starts) arrays, 256k characters at a time.

    answer_mask marks answer characters and their newline; turn_starts are the offsets of 'Q:' lines.
    """

    CHUNK = 1 << 18  # characters encoded at once (the int64 temporaries of encode stay this small)

    def __init__(self, tokenizer, n_chars, n_turns):
        self.tokenizer = tokenizer
        self.ids = np.empty(n_chars, dtype=id_dtype(tokenizer.vocab_size))  # (N,)
        self.mask = np.zeros(n_chars, dtype=bool)  # (N,)
        self.starts = np.empty(n_turns, dtype=np.int64)  # (turns,)
        self.pos = self.turn = self.done = 0
        self.buf: list[str] = []

    def add(self, turns):
        """One conversation (a blank line before it unless it is the first)."""
        if self.pos:
            self._text("\n", False)
        for q, a in turns:
            self.starts[self.turn] = self.pos
            self.turn += 1
            self._text(f"Q: {q}\nA:", False)
            self._text(f" {a}\n", True)

    def _text(self, text, answer):
        if answer:
            self.mask[self.pos:self.pos + len(text)] = True
        self.buf.append(text)
        self.pos += len(text)
        if self.pos - self.done >= self.CHUNK:
            self.flush()

    def flush(self):
        if self.buf:
            ids = self.tokenizer.encode("".join(self.buf), unknown="unk")  # (chunk,) int64
            self.ids[self.done:self.done + len(ids)] = ids
            self.done += len(ids)
            self.buf = []

    def result(self):
        self.flush()
        assert self.done == self.pos == len(self.ids) and self.turn == len(self.starts)
        return self.ids, self.mask, self.starts


def conversation_size(turns):
    """(characters, turns) a conversation adds to the stream, without its separating blank line."""
    return sum(len(q) + len(a) + 8 for q, a in turns), len(turns)  # 'Q: ' '\nA:' ' ' '\n'


def encode_conversations(convs, tokenizer):
    """(ids, answer_mask, turn_starts) of the training text, ids in the smallest dtype that fits."""
    sizes = [conversation_size(c) for c in convs]
    n_chars = sum(c for c, _ in sizes) + max(len(convs) - 1, 0)
    w = StreamWriter(tokenizer, n_chars, sum(t for _, t in sizes))
    for turns in convs:
        w.add(turns)
    return w.result()


def split_mask(n, fraction, seed):
    """(n,) bool, True for the conversations held out for validation (deterministic in seed)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction))) if n > 1 else 0
    held = np.zeros(n, dtype=bool)
    held[order[:n_val]] = True
    return held


def split_conversations(convs, fraction, seed):
    """A deterministic train/val split of whole conversations."""
    held = split_mask(len(convs), fraction, seed)
    return [c for c, h in zip(convs, held) if not h], [c for c, h in zip(convs, held) if h]


def normalise(text):
    """Lower case, punctuation and repeated spaces removed: the exact-match comparison form."""
    kept = "".join(ch.lower() if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(kept.split())


def windows(ids, starts, T, ans=None):
    """x (B, T), y (B, T) shifted by one, mask None: the T+1 ids from each start of starts (B,).
    With ans (the stream's answer mask), targets that are not answer characters are -1 (no loss)."""
    pos = starts[:, None] + np.arange(T + 1)[None, :]  # (B, T+1)
    w = ids[pos].astype(np.int64)  # (B, T+1)
    y = w[:, 1:] if ans is None else np.where(ans[pos[:, 1:]], w[:, 1:], -1)  # (B, T)
    return w[:, :-1], y, None


def answer_positions(text):
    """(len(text),) bool: the characters of each 'A:' line after the 'A:', and its newline, as the
    training stream's answer mask marks them (text starts at a line start)."""
    mark = np.zeros(len(text), dtype=bool)
    at = 0
    for line in text.split("\n"):
        if line.startswith("A:"):
            mark[at + 2:at + len(line) + 1] = True
        at += len(line) + 1
    return mark


class LMTask:
    """A causal character language model over Q:/A: conversations.

    The corpus streams: it is read twice, a conversation at a time (sizes and characters, then the
    encoded arrays), so loading costs little more than the encoded ids and answer mask.
    """

    causal = True
    default_dir = "qa"
    keep_train_convs = True  # the dialogue task rebuilds windows from whole conversations
    TRAIN_PAIR_SAMPLE = 5000  # training pairs kept for train_answer_exact
    ANSWER_CHARS = 80  # an evaluated answer ends at a newline or here (the corpora's longest are 60)

    def _stream(self):
        for p in self.paths:
            yield from iter_conversations(p)

    @property
    def train_convs(self):
        """The training conversations (read again from the corpus when they were not kept)."""
        if self._train_convs is not None:
            return self._train_convs
        return [c for c, h in zip(self._stream(), self.held) if not h]

    def __init__(self, cfg):
        self.cfg = cfg
        d = cfg.data
        own = CORPORA / self.default_dir
        # data.corpus may list several files (os.pathsep between them): their conversations are joined
        paths = [Path(c) for c in d.corpus.split(os.pathsep) if c] if d.corpus else [own / "train.txt"]
        self.train_path = paths[0] if len(paths) == 1 else None  # a single file may have sidecars
        self.paths = paths
        if d.val_corpus:
            self.val_path = Path(d.val_corpus)
        elif not d.corpus:
            self.val_path = own / "val.txt"
        else:
            self.val_path = None
        # pass 1: sizes and characters only (the training text is never held whole)
        n_chars, n_turns, chars = array("i"), array("i"), set("Q: A\n")
        for turns in self._stream():
            c, t = conversation_size(turns)
            n_chars.append(c)
            n_turns.append(t)
            chars.update(*(q + a for q, a in turns))
        val_file = load_conversations(self.val_path) if self.val_path else None
        for turns in val_file or []:
            chars.update(*(q + a for q, a in turns))
        self.held = split_mask(len(n_chars), d.val_fraction, cfg.train.seed) if val_file is None else \
            np.zeros(len(n_chars), dtype=bool)
        if val_file is None and not self.held.any():
            raise CorpusError(f"{d.corpus}: needs at least two conversations to hold one out "
                              "for validation, or pass a separate validation file")
        self.tokenizer = CharTokenizer(sorted(chars))
        # pass 2: encode the training conversations straight into their arrays
        train = ~self.held
        total_turns = int(np.frombuffer(n_turns, dtype=np.int32)[train].sum(dtype=np.int64))
        total_chars = int(np.frombuffer(n_chars, dtype=np.int32)[train].sum(dtype=np.int64)) + \
            max(int(train.sum()) - 1, 0)
        del n_chars, n_turns, train
        w = StreamWriter(self.tokenizer, total_chars, total_turns)
        keep = set(np.linspace(0, total_turns - 1, min(total_turns, self.TRAIN_PAIR_SAMPLE)).astype(int).tolist())
        kept, self._train_convs, turn = [], [] if self.keep_train_convs else None, 0
        for turns, held in zip(self._stream(), self.held):
            if held:
                continue
            w.add(turns)
            kept += [p for i, p in enumerate(turns, turn) if i in keep]
            turn += len(turns)
            if self._train_convs is not None:
                self._train_convs.append(turns)
        self.train_ids, self.train_ans, self.train_starts = w.result()
        # pass 3: the held-out conversations, read after the training text's temporaries are freed
        # (kept while those were made, their small strings would pin memory the allocator cannot return)
        self.val_convs = val_file if val_file is not None else \
            [c for c, h in zip(self._stream(), self.held) if h]
        self.train_pair_sample = kept  # evenly spaced over the training pairs (all, for a small corpus)
        self.val_ids, self.val_ans, _ = encode_conversations(self.val_convs, self.tokenizer)
        T = cfg.model.block_size
        if len(self.train_ids) < T + 2:
            raise CorpusError(f"{d.corpus or self.train_path}: only {len(self.train_ids)} characters; a model with "
                              f"block_size={T} needs more text than one window")

    def batch(self, split, batch_size, rng):
        """B windows, half of them starting at a turn start: x (B, T), y (B, T) shifted by one.

        Windows that start at a 'Q:' line (as prompts do) keep each answer's question in view, so the
        model learns to read the question; the rest start anywhere, as the loss is measured.
        """
        ids = self.train_ids if split == "train" else self.val_ids
        T = min(self.cfg.model.block_size, len(ids) - 1)
        starts = rng.integers(0, len(ids) - T, size=batch_size)  # (B,) anywhere in the stream
        if split == "train":
            half = batch_size // 2  # the other half starts at turn starts
            turn = self.train_starts[rng.integers(0, len(self.train_starts), half)]
            starts[:half] = np.minimum(turn, len(ids) - T - 1)
        return windows(ids, starts, T, self.train_ans if split == "train" and self.cfg.data.answers_only else None)

    def stream_loss(self, model, ids, ans, max_windows=None, batch=64):
        """Mean nats per character over the stream (all and answers only), each scored once.

        Windows of block_size advance by half a window; after the first, only their second half is
        scored, so every character but the first is predicted with at least T/2 of context. With
        max_windows, that many windows spread evenly over the stream give an unbiased estimate.
        """
        T = min(self.cfg.model.block_size, len(ids) - 1)
        hop = max(1, T // 2)
        starts = list(range(0, len(ids) - T, hop))
        if starts[-1] != len(ids) - 1 - T:
            starts.append(len(ids) - 1 - T)
        sparse = bool(max_windows) and len(starts) > max_windows
        if sparse:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, max_windows).astype(int)]
        tot = ans_tot = 0.0
        n = ans_n = 0
        covered = 0  # first stream position not yet scored
        for b in range(0, len(starts), batch):
            s = np.array(starts[b:b + batch])  # (B,)
            pos = s[:, None] + np.arange(T + 1)[None, :]  # (B, T+1)
            w = ids[pos].astype(np.int64)  # (B, T+1)
            logits, _ = model.forward(w[:, :-1])  # (B, T, V)
            lg = logits - logits.max(-1, keepdims=True)
            logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))  # (B, T, V)
            nll = -np.take_along_axis(logp, w[:, 1:, None], axis=-1)[..., 0]  # (B, T)
            for r, start in enumerate(s):
                if sparse:  # separate windows: score the half that has T/2 of context
                    first = 0 if start == 0 else hop
                else:  # overlapping windows: skip targets already scored
                    first = max(covered, start + 1) - (start + 1)
                tgt_pos = start + 1 + np.arange(first, T)
                vals = nll[r, first:]
                tot += float(vals.sum()); n += vals.size
                a = ans[tgt_pos]
                ans_tot += float(vals[a].sum()); ans_n += int(a.sum())
                covered = start + 1 + T
        return tot / max(n, 1), ans_tot / max(ans_n, 1)

    def losses(self, model, full=False):
        """val loss (all characters, answers) and train loss on a fixed sample of the training stream.
        With data.answers_only the model is trained on answers alone, so val_loss and train_loss are the
        answer losses, comparable with the training steps' loss; val_all_loss and train_all_loss hold
        the whole stream's."""
        cap = None if full else 64
        val_all, val_ans = self.stream_loss(model, self.val_ids, self.val_ans, cap)
        tr_all, tr_ans = self.stream_loss(model, self.train_ids, self.train_ans, 64 if not full else 512)
        if self.cfg.data.answers_only:
            return {"val_loss": val_ans, "val_answer_loss": val_ans, "train_loss": tr_ans, "train_answer_loss": tr_ans,
                    "val_all_loss": val_all, "train_all_loss": tr_all}
        return {"val_loss": val_all, "val_answer_loss": val_ans, "train_loss": tr_all, "train_answer_loss": tr_ans}

    def answer(self, model, history, question):
        """The model's greedy answer to `question` after the turns in `history`."""
        prompt = build_prompt(history, question, self.cfg.model.block_size, strict=False)
        return "".join(stream_text(model, self.tokenizer, prompt, stop=("\n",), max_new_tokens=self.ANSWER_CHARS,
                                   temperature=0.0, unknown="unk",
                                   unsure=unsure_for(question, self.cfg.sample.unsure_below,
                                                     self.cfg.sample.unsure_reply_below))).strip()


def unsure_for(message, below, anywhere=0.0):
    """What replaces a reply to `message` the model is unsure how to begin (sample.unsure_below) or unsure
    of anywhere (sample.unsure_reply_below), or None. Only a question (ending in "?") is answered "I don't
    know that yet."; a statement ("I'm called Bruno.") is acknowledged however the model begins it."""
    if (below > 0 or anywhere > 0) and message.rstrip().endswith("?"):
        return Unsure(below, DONT_KNOW, anywhere=anywhere)
    return None


class PromptTooLong(ValueError):
    """A message that cannot fit the model's context window."""


# tasks whose training conversations are single Q/A pairs: their chat prompt is the question alone
SINGLE_PAIR_TASKS = ("qa",)


def chat_prompt(task, history, question, block_size):
    """What a chat sends the model: the context it was trained on.

    A Q&A model learned conversations of one pair each, so earlier turns are noise to it (measured:
    held-out exact-match fell 47.0% -> 38.9% after 4 earlier turns); it gets the question alone. A
    dialogue model learned multi-turn conversations and gets the turns so far.
    """
    return build_prompt([] if task in SINGLE_PAIR_TASKS else history, question, block_size)


REPLY_ROOM = 16  # characters a prompt leaves free for the reply's start (a longer reply takes more, below)


class Prompt(str):
    """A prompt that can make room for a reply longer than it left free: with_room(n) is the same
    conversation cropped to leave n characters of the window free (core.sample.stream_text calls it
    when the reply fills the window, so the oldest whole turns give way, not the window's first half)."""

    def __new__(cls, text, remake=None):
        self = super().__new__(cls, text)
        self._remake = remake
        return self

    def with_room(self, room):
        return self._remake(room) if self._remake is not None else None


def build_prompt(history, question, block_size, reserve=None, strict=True, gap=""):
    """The conversation as the model saw it in training, cropped from the left at turn boundaries.

    `reserve` characters are kept free for the answer (default REPLY_ROOM, at most a quarter of the
    window): every turn that fits stays in view, and a reply that needs more room takes it from the
    oldest turns as it is written (Prompt.with_room). A fixed quarter of the window (64 characters of
    256) dropped the first fact of 13 of the chat task's 30 val questions asked with another fact
    between, which no model could then recall; the longest reply the corpora hold is 44 characters.
    `gap` goes between turns ("\n" would make each turn a conversation of its own, as Q&A training
    text has it). A question that does not fit is an error, or with strict=False is cut to its last
    characters.
    """
    reserve = min(REPLY_ROOM, block_size // 4) if reserve is None else reserve
    tail = format_turn(question)
    budget = block_size - reserve
    if len(tail) > budget and not strict:
        return tail[-budget:] if budget > 0 else ""
    if len(tail) > budget and budget < len(format_turn("x")):
        raise PromptTooLong(f"this model's context holds {block_size} characters, too few for a message and "
                            "room for a reply")
    if len(tail) > budget:
        raise PromptTooLong(f"the message is {len(question)} characters, but this model's context holds "
                            f"{block_size} with room for a reply; shorten it to at most "
                            f"{max(1, budget - len(tail) + len(question))} characters")
    kept = []
    used = len(tail)
    for q, a in reversed(history):
        turn = format_turn(q, a) + gap
        if used + len(turn) > budget:
            break
        kept.append(turn)
        used += len(turn)
    return Prompt("".join(reversed(kept)) + tail,
                  lambda room: build_prompt(history, question, block_size, room, strict=False, gap=gap))
