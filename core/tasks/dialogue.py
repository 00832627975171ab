"""Task 3, multi-turn dialogue: answers that depend on earlier turns (a name, a pet, a preference).

Context recall: on held-out dialogues, the fraction of context-dependent answers that contain the
slot value. Topic coherence (a proxy): the fraction of answers whose reference mentions one of the
dialogue's topic words and whose generated answer mentions one too.
"""

import functools
import json
import re
from pathlib import Path

import numpy as np

from core.tasks.corpus import format_conversation
from core.tasks.lm import LMTask, answer_positions, build_prompt, normalise

CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
# the words that frame a question and name nothing in it: data.ood_madeup keeps these and makes up the
# words that say what is asked ("capital", "Peru")
FRAME_WORDS = frozenset(
    "what what's which who who's how when why is are am was were do does did can could would will you "
    "your i i'm me my the a an of to please tell say know still again it that this have has in on for "
    "with about".split())


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


def substitute(turns, values, fresh):
    """The turns with each slot value replaced by fresh(value) everywhere (whole words, first-letter case kept)."""
    for value in values:
        new = fresh(value)
        pat = re.compile(rf"\b{re.escape(value)}\b", re.IGNORECASE)
        repl = lambda m, new=new: new.capitalize() if m.group(0)[0].isupper() else new  # noqa: E731
        turns = [(pat.sub(repl, q), pat.sub(repl, a)) for q, a in turns]
    return turns


def slot_library(convs, annotations):
    """Per slot, the corpus' (fact turn, recall turn) pairs with the value cut out ("\\0" marks it,
    "\\1" where it was capitalised), and the turns that carry no slot (small talk)."""
    pairs, fillers = {}, []
    for turns, ann in zip(convs, annotations):
        used = set()
        for s in ann.get("slots", []):
            pat = re.compile(rf"\b{re.escape(s['value'])}\b", re.IGNORECASE)
            cut = lambda text: pat.sub(lambda m: "\1" if m.group(0)[0].isupper() else "\0", text)  # noqa: E731
            fact, recall = turns[s["fact_turn"]], turns[s["turn"]]
            pairs.setdefault(s["slot"], set()).add(tuple(cut(t) for t in (*fact, *recall)))
            used |= {s["fact_turn"], s["turn"]}
        fillers += [t for i, t in enumerate(turns) if i not in used]
    return {k: sorted(v) for k, v in pairs.items()}, sorted(set(fillers))


def numeric_slots(annotations):
    """{slot: (lowest, highest)} for the slots whose every value in the annotations is a number: every
    number with as many digits as the corpus' values (ages 15..69 -> 10..99). Made-up values only from
    the corpus' own range never taught copying a number outside it: asked back "I'm 74 years old", a
    model answered "You are 53 years old."."""
    values = {}
    for ann in annotations:
        for s in ann.get("slots", []):
            values.setdefault(s["slot"], []).append(s["value"])
    spans = {}
    for k, v in values.items():
        if all(x.isdigit() for x in v):
            lo, hi = min(map(int, v)), max(map(int, v))
            spans[k] = (0 if lo < 10 else 10 ** (len(str(lo)) - 1), 10 ** len(str(hi)) - 1)
    return spans


def made_up(rng, parts, lo, hi, p=None):
    """A made-up word: lo..hi-1 parts (letters or syllables) drawn at random, alike or with chances p."""
    n = rng.integers(lo, hi)
    return "".join(parts[i] for i in (rng.integers(0, len(parts), n) if p is None else rng.choice(len(parts), n, p=p)))


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
        # with its own annotations (not a split of one file), training can vary the slot values
        own_files = self.val_path is not None and self.train_path is not None
        self.train_slots = read_slots(self.train_path, len(self.train_convs)) if own_files else None
        have = set(self.tokenizer.chars)
        self.letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c in have]
        self.syllables = [c + v for c in CONSONANTS for v in VOWELS if c in have and v in have]
        # made-up values: half syllable words, half real words of the training text (natural spelling)
        text = self.tokenizer.decode(self.train_ids).lower()
        self.words = sorted({w for w in re.findall(r"[a-z]{3,10}", text)})
        self.library = slot_library(self.train_convs, self.train_slots) if self.train_slots else None
        self.numeric = numeric_slots(self.train_slots or [])

    def batch(self, split, batch_size, rng):
        """As LMTask.batch, but in training a share (data.fresh_fraction) of the windows hold dialogues
        whose remembered values (names, pets, ...) are fresh made-up words: the model must copy them
        from the context, as it must for held-out dialogues, instead of recalling the few values the
        corpus holds."""
        x, y, mask = super().batch(split, batch_size, rng)
        if split != "train" or not self.train_slots or not self.syllables:
            return x, y, mask
        for b in range(int(round(batch_size * self.cfg.data.fresh_fraction))):
            text = self._fresh_text(rng, x.shape[1] + 1)
            w = self.tokenizer.encode(text, unknown="unk")  # (T+1,)
            x[b], y[b] = w[:-1], w[1:]
            if self.cfg.data.answers_only:
                y[b, ~answer_positions(text)[1:]] = -1
        return x, y, mask

    @functools.cached_property
    def letter_p(self):
        """(letters,) how often each letter occurs in the training text's words (data.text_letters); counted
        on first use, so a task without that setting pays nothing at start-up."""
        text = self.tokenizer.decode(self.train_ids).lower()
        in_words = "".join(re.findall(r"[a-z]{2,}", text))  # not the "Q:" / "A:" marks
        counts = np.array([in_words.count(c) for c in self.letters], dtype=np.float64) + 1.0
        return counts / counts.sum()

    def _value(self, rng, slot):
        """A made-up value for `slot`: a number in the corpus' range where the slot holds numbers (an
        age: "I am 43 years old", never "I am zuvq years old"), else _word()."""
        span = self.numeric.get(slot)
        if span is not None:
            return str(int(rng.integers(span[0], span[1] + 1)))
        return self._word(rng)

    def _word(self, rng):
        if self.letters and rng.random() < self.cfg.data.letter_words:  # no spelling to lean on: copy
            # common letters, often repeated, as in real words ("tortoise": which "o" comes next?); no
            # draw at 0, so the random stream stays as before
            common = self.cfg.data.text_letters > 0 and rng.random() < self.cfg.data.text_letters
            return made_up(rng, self.letters, 3, 11, self.letter_p if common else None)
        if self.words and rng.random() < 0.5:
            return self.words[int(rng.integers(len(self.words)))]
        return made_up(rng, self.syllables, 2, 4)

    def _fresh_text(self, rng, n):
        """n characters of dialogues with fresh slot values, starting at a turn start: a share
        (data.dense_fraction) are dense ones built from the corpus' own fact and recall turns (two or
        three facts, then every one asked back, in shuffled order), the rest corpus dialogues with
        their values replaced. A share of their facts (data.fact_noise) and of their other questions
        (data.ask_noise) get made-up words; in a question, each of its own words may be replaced by one
        (data.ask_swap); an out-of-domain question may be asked about made-up things (data.ood_madeup)."""
        text = ""
        while len(text) < n:
            if self.library and rng.random() < self.cfg.data.dense_fraction:
                turns, facts = self._dense_dialogue(rng)
            else:
                d = int(rng.integers(len(self.train_convs)))
                slot_of = {s["value"]: s["slot"] for s in self.train_slots[d].get("slots", [])}
                turns = substitute(self.train_convs[d], list(slot_of), lambda v: self._value(rng, slot_of[v]))
                facts = {s["fact_turn"] for s in self.train_slots[d].get("slots", [])}
                if self.cfg.data.ood_madeup > 0:  # (no draw at 0: the random stream stays as before)
                    kinds = [k.get("kind") for k in self.train_slots[d].get("turns", [])]
                    turns = [(self._made_up_topic(q, rng), a) if t < len(kinds) and kinds[t] == "ood"
                             and rng.random() < self.cfg.data.ood_madeup else (q, a) for t, (q, a) in enumerate(turns)]
                if not text and rng.random() < 0.5:
                    cut = int(rng.integers(len(turns)))
                    turns, facts = turns[cut:], {t - cut for t in facts if t >= cut}
            asks = set(range(len(turns))) - facts
            for share, which, swap in ((self.cfg.data.fact_noise, facts, 0.0),
                                       (self.cfg.data.ask_noise, asks, self.cfg.data.ask_swap)):
                if share > 0:
                    turns = [(self._noisy(q, rng, swap), a) if t in which and rng.random() < share else (q, a)
                             for t, (q, a) in enumerate(turns)]
            text += ("\n" if text else "") + format_conversation(turns)
        return text[:n]

    def _dense_dialogue(self, rng):
        pairs, fillers = self.library
        names = sorted(pairs)
        chosen = [names[i] for i in rng.permutation(len(names))[:int(rng.integers(2, 4))]]
        turns, asks, facts = [], [], set()
        for slot in chosen:
            word = self._value(rng, slot)
            put = lambda t, w=word: t.replace("\0", w).replace("\1", w.capitalize())  # noqa: E731
            q, a, rq, ra = pairs[slot][int(rng.integers(len(pairs[slot])))]
            if self.cfg.data.cue_fraction > 0 and rng.random() < self.cfg.data.cue_fraction:
                q, rq = self._cue_pair(rng)
            facts.add(len(turns))
            turns.append((put(q), put(a)))
            asks.append((put(rq), put(ra)))
            if fillers and rng.random() < 0.3:
                turns.append(fillers[int(rng.integers(len(fillers)))])
        return turns + [asks[i] for i in rng.permutation(len(asks))], facts

    # (fact, question) frames around a made-up word {c}; "\0" is the value, "\1" the value capitalised
    CUE_FRAMES = (("I {c} \0.", "What do I {c}?"), ("My {c} is \0.", "What is my {c}?"),
                  ("\1 is my {c}.", "Which is my {c}?"), ("I {c} \0 every day.", "What do I {c} every day?"))

    def _cue_pair(self, rng):
        """A fact and its question around one made-up word ("My zuvo is \0." / "What is my zuvo?"): the
        question names no slot, so the answer's slot can only be read from the acknowledgement after the
        fact whose words the question repeats, as for a phrasing never seen ("I'm based in Kyoto." ...
        "Where am I based?")."""
        cue = made_up(rng, self.syllables, 2, 4)
        fact, ask = self.CUE_FRAMES[int(rng.integers(len(self.CUE_FRAMES)))]
        return fact.replace("{c}", cue), ask.replace("{c}", cue)

    def _noisy(self, question, rng, swap=0.0):
        """The question with one or two made-up words (random letters or syllables) put between its words:
        "What is my pet?" -> "What is zovi my pet?". In a question the model learns to read it by the
        words it knows, as it must for a phrasing with words it never saw ("What's my pet again?"); every
        question but the facts gets them (recall, Q&A, out-of-domain, small talk), so made-up words are
        no sign of a recall question, and "Who ruled Sparta?" is still not one.
        In a fact the made-up words look like the value ("I kep have a zuvq."): only the acknowledgement,
        in a frame the model knows ("A zuvq is a lovely pet."), tells which word is the value, so the model
        learns to take it from there, as it must after a statement in a phrasing it never saw.
        With swap > 0 each of the question's own words (but one holding a digit: "4 plus 1") is first
        replaced by a made-up word with that chance: no frame is a sure sign of the slot asked ("What
        name did I give you?"), and where the words naming it are gone too the answer is still the fact
        the chat holds, so an unseen phrasing is answered from the facts stated, not from its words alone."""
        words = question.split(" ")
        if swap > 0:
            words = [self._swapped(w, rng) if not any(c.isdigit() for c in w) and rng.random() < swap else w
                     for w in words]
        for _ in range(int(rng.integers(1, 3))):
            if self.letters and rng.random() < 0.5:
                junk = made_up(rng, self.letters, 2, 8)
            else:
                junk = made_up(rng, self.syllables, 1, 4)
            at = int(rng.integers(0, len(words) + 1))
            if at == 0:  # a new first word is capitalised; the old one keeps its case (it may be the value)
                junk = junk.capitalize()
            elif at == len(words) and words[-1][-1:] in "?.!":  # before the closing mark
                words[-1], junk = words[-1][:-1], junk + words[-1][-1]
            words.insert(at, junk)
        return " ".join(words)

    def _made_up_topic(self, question, rng):
        """The out-of-domain question with every word but its frame words made up ("Who wrote Hamlet?" ->
        "Who zorb Kelavu?"): still answered "I don't know that yet.", so a question that names nothing
        the model was taught gets that answer, whatever words it uses, while one naming a slot ("pet",
        "name") or a Q&A topic is answered."""
        return " ".join(w if w.rstrip("?.!,").lower() in FRAME_WORDS else self._swapped(w, rng)
                        for w in question.split(" "))

    def _swapped(self, word, rng):
        """A made-up word in place of `word`, with its first-letter case and closing mark ("you?" -> "zol?")."""
        core = word.rstrip("?.!,")
        junk = made_up(rng, self.syllables, 1, 4) if rng.random() < 0.5 or not self.letters else \
            made_up(rng, self.letters, 2, 8)
        if core[:1].isupper():
            junk = junk.capitalize()
        return junk + word[len(core):]

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
