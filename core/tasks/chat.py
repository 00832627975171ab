"""Task 4, chat: one model that recalls facts stated in many phrasings, answers the Q&A corpus'
questions and arithmetic at any turn, and says "I don't know that yet." to what it was never taught.

Scored on the val split (new phrasings and slot values); a full evaluation also scores the test split
(a held-out family of phrasings, values and out-of-domain questions, never tuned on) as `heldout_family`.
"""

import numpy as np

from core.tasks.corpus import load_conversations
from core.tasks.dialogue import DialogueTask, read_slots
from core.tasks.lm import CORPORA, DONT_KNOW, normalise
ASKED = ("recall", "qa", "arith", "ood")  # the turn kinds whose answers are generated and scored


def mean(xs):
    return float(np.mean(xs)) if xs else None


def named_slot(answer, words, other_words):
    """True when the answer uses a word naming the asked slot and none naming another slot."""
    said = set(normalise(answer).split())
    return bool(said & set(words)) and not said & (other_words - set(words))


def by_phrasing(hits):
    """{phrasing: {"recall", "n"}}, lowest recall first: a split's few phrasings each ask many questions,
    so one phrasing read wrongly moves the split's recall by points."""
    rows = {t: {"recall": mean(v), "n": len(v)} for t, v in hits.items()}
    return dict(sorted(rows.items(), key=lambda kv: (kv[1]["recall"], -kv[1]["n"], kv[0])))


LAYOUTS = ("one fact in the chat", "others, none between", "another fact between")


def layout_of(slot, slots):
    """Where a recall question sits among the chat's facts: the only fact told, one of several with none
    stated between it and its question, or one with another fact stated in between (the copy may take
    the later fact's value: "Your favourite colour is gnocchi.")."""
    others = [o for o in slots if o is not slot]
    if not others:
        return LAYOUTS[0]
    between = any(slot["fact_turn"] < o["fact_turn"] < slot["turn"] for o in others)
    return LAYOUTS[2] if between else LAYOUTS[1]


def chat_score(m):
    """One figure to pick the best save by: the mean of the five goals' rates (false don't-know inverted)."""
    parts = [m.get("context_recall"), m.get("slot_correct"), m.get("qa_mid_exact"), m.get("dont_know_ood")]
    if m.get("dont_know_false") is not None:
        parts.append(1.0 - m["dont_know_false"])
    parts = [p for p in parts if p is not None]
    return float(np.mean(parts)) if parts else None


class ChatTask(DialogueTask):
    name = "chat"
    metric = "chat_score"
    default_dir = "chat"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.test_convs = self.test_slots = None
        if not cfg.data.corpus and not cfg.data.val_corpus:  # the own corpus: its held-out family too
            path = CORPORA / self.default_dir / "test.txt"
            if path.is_file():
                self.test_convs = load_conversations(path)
                self.test_slots = read_slots(path, len(self.test_convs))

    def evaluate(self, model, rng=None, full=False):
        """Losses and the chat scores on val dialogues (a fixed sample unless full); full adds the test split."""
        if self.slots is None or any("turns" not in r for r in self.slots):
            return super().evaluate(model, rng, full)  # a corpus without turn kinds: dialogue metrics
        m = self.losses(model, full)
        n = len(self.val_convs) if full else min(len(self.val_convs), max(1, self.cfg.data.n_eval // 2))
        m.update(self.scores(model, self.val_convs, self.slots, n, phrasings=full))
        m["chat_score"] = chat_score(m)
        if full:
            m["live_recall"] = self.live_recall(model, self.val_convs, self.slots, n)
        if full and self.test_convs is not None and self.test_slots is not None:
            held = self.scores(model, self.test_convs, self.test_slots, len(self.test_convs), phrasings=True)
            held["chat_score"] = chat_score(held)
            held["live_recall"] = self.live_recall(model, self.test_convs, self.test_slots, len(self.test_convs))
            m["heldout_family"] = held
        return m

    def live_recall(self, model, convs, records, n):
        """Context recall in a chat as a person has it: each earlier answer in the prompt is the model's own
        reply, not the corpus' (`scores` gives it the corpus' answers), so a fact acknowledged as another
        slot ("I'm called Bruno." -> "Bruno is a nice name for a sister.") is recalled as that slot, as in
        the Chat tab. Every turn is answered: a full evaluation's cost, not the periodic one's."""
        hits = []
        for d in np.linspace(0, len(convs) - 1, n).astype(int):
            wanted = {s["turn"]: s["value"] for s in records[d]["slots"]}
            history = []
            for t, (q, _) in enumerate(convs[d]):
                out = self.answer(model, history, q)
                if t in wanted:
                    hits.append(normalise(wanted[t]) in normalise(out))
                history.append((q, out))
        return mean(hits)

    def scores(self, model, convs, records, n, phrasings=False):
        """Recall, slot naming, two-fact recall, don't-know rates, Q&A mid-dialogue vs fresh, arithmetic.
        dont_know_unstated: each recall question asked in a fresh chat, about a fact never told, answered
        "I don't know that yet." (not a made-up value). phrasings: also recall per phrasing of the question
        (recall_by_ask) and of the fact it asks back (recall_by_fact), where the records name them, and recall
        by where the question sits among the chat's facts (recall_by_layout, LAYOUTS)."""
        other = {w for r in records for s in r["slots"] for w in s["words"]}
        got = {k: [] for k in ("recall", "slot", "two", "dk_ood", "dk_in", "mid", "fresh", "ack", "unstated")}
        by_op, by_ask, by_fact, by_layout = {}, {}, {}, {}
        for d in np.linspace(0, len(convs) - 1, n).astype(int):
            turns, rec = convs[d], records[d]
            wanted = {s["turn"]: s for s in rec["slots"]}
            stated = {s["fact_turn"] for s in rec["slots"]}
            hits = []
            for t, ((q, ref), kind) in enumerate(zip(turns, rec["turns"])):
                if t in stated:  # the bot's acknowledgement of a fact: the slot it read and the value it took
                    got["ack"].append(normalise(self.answer(model, turns[:t], q)) == normalise(ref))
                if kind["kind"] not in ASKED:
                    continue
                out = self.answer(model, turns[:t], q)
                dk = normalise(out) == normalise(DONT_KNOW)
                if kind["kind"] == "ood":
                    got["dk_ood"].append(dk)
                    continue
                got["dk_in"].append(dk)
                if kind["kind"] == "recall":
                    s = wanted[t]
                    hits.append(normalise(s["value"]) in normalise(out))
                    got["recall"].append(hits[-1])
                    by_layout.setdefault(layout_of(s, rec["slots"]), []).append(hits[-1])
                    if "template" in kind:  # held-out splits say which phrasing asked and which stated it
                        by_ask.setdefault(kind["template"], []).append(hits[-1])
                        fact_kind = rec["turns"][s["fact_turn"]]
                        if "template" in fact_kind:
                            by_fact.setdefault(fact_kind["template"], []).append(hits[-1])
                    got["slot"].append(named_slot(out, s["words"], other))
                    # the same question in a fresh chat, where nothing has been told: don't-know is right
                    got["unstated"].append(normalise(self.answer(model, [], q)) == normalise(DONT_KNOW))
                    continue
                exact = normalise(out) == normalise(ref)
                if kind["kind"] == "arith":
                    by_op.setdefault(kind["op"], []).append(exact)
                if t > 0:  # asked mid-dialogue: the same question in a fresh chat for comparison
                    got["mid"].append(exact)
                    got["fresh"].append(normalise(self.answer(model, [], q)) == normalise(ref))
            if len(wanted) >= 2:
                got["two"].append(all(hits))
        res = {"context_recall": mean(got["recall"]), "slot_correct": mean(got["slot"]),
              "two_fact_recall": mean(got["two"]), "dont_know_ood": mean(got["dk_ood"]),
              "dont_know_false": mean(got["dk_in"]), "qa_mid_exact": mean(got["mid"]),
              "qa_fresh_exact": mean(got["fresh"]), "ack_exact": mean(got["ack"]),
              "dont_know_unstated": mean(got["unstated"]),
              "arith_exact_by_op": {op: mean(v) for op, v in sorted(by_op.items())},
              "recall_n": len(got["recall"]), "two_n": len(got["two"]), "ood_n": len(got["dk_ood"]),
              "qa_mid_n": len(got["mid"]), "arith_n": {op: len(v) for op, v in sorted(by_op.items())}}
        if phrasings and by_ask:
            res.update(recall_by_ask=by_phrasing(by_ask), recall_by_fact=by_phrasing(by_fact))
        if phrasings and by_layout:
            res["recall_by_layout"] = {k: {"recall": mean(by_layout[k]), "n": len(by_layout[k])}
                                       for k in LAYOUTS if k in by_layout}
        return res
