"""Tests for corpora/generate.py and the committed corpora it writes."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
SPLITS = ("train", "val", "test")


def _load_generator():
    spec = importlib.util.spec_from_file_location("corpora_generate", CORPORA / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()


def parse_blocks(text: str) -> list[list[tuple[str, str]]]:
    """Blank-line separated blocks of consecutive 'Q: '/'A: ' line pairs."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    blocks = []
    for block in text[:-1].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) % 2 == 0 and lines, block
        turns = []
        for q, a in zip(lines[0::2], lines[1::2]):
            assert q.startswith("Q: ") and len(q) > 3, q
            assert a.startswith("A: ") and len(a) > 3, a
            turns.append((q[3:], a[3:]))
        blocks.append(turns)
    return blocks


def read(rel: str) -> str:
    return (CORPORA / rel).read_text(encoding="utf-8")


def qa_pairs(split: str) -> list[tuple[str, str]]:
    blocks = parse_blocks(read(f"qa/{split}.txt"))
    assert all(len(b) == 1 for b in blocks)
    return [b[0] for b in blocks]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z'-]*", text.lower()))


def test_generation_is_deterministic(tmp_path):
    gen.generate(tmp_path / "a")
    gen.generate(tmp_path / "b")
    for rel in gen.OUTPUTS:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_committed_files_match_fresh_generation(tmp_path):
    gen.generate(tmp_path)
    for rel in gen.OUTPUTS:
        assert (CORPORA / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} is stale; run `python corpora/generate.py`")
    assert gen.check(CORPORA) == []


def test_qa_counts_levels_and_format():
    total = 0
    for split in SPLITS:
        pairs = qa_pairs(split)
        levels = read(f"qa/{split}.levels").split("\n")[:-1]
        assert len(levels) == len(pairs)
        assert set(levels) == set(gen.LEVELS)
        total += len(pairs)
        for q, a in pairs:
            assert len(a) <= gen.MAX_ANSWER, a
    assert total >= 1500


def test_charset_is_small_and_ascii():
    for corpus in ("qa", "dialogue"):
        text = "".join(read(f"{corpus}/{s}.txt") for s in SPLITS)
        assert set(text) <= gen.ALLOWED_CHARS
        assert "\r" not in text


def test_answers_are_canonical_and_held_out_questions_are_new():
    answer: dict[str, str] = {}
    for split in SPLITS:
        for q, a in qa_pairs(split):
            assert answer.setdefault(q, a) == a, f"two answers for {q!r}"
    train_q = {q for q, _ in qa_pairs("train")}
    for split in ("val", "test"):
        assert not train_q & {q for q, _ in qa_pairs(split)}


def _arith_items(split: str) -> list[tuple[int, str, int]]:
    """(x, op, y) of every arithmetic pair in a qa split, each checked: right result, no negative one."""
    pat = re.compile(r"^(\d+) (plus|minus) (\d+) is (-?\d+)\.$")
    out = []
    for (q, a), lv in zip(qa_pairs(split), read(f"qa/{split}.levels").split()):
        if lv != "arithmetic":
            continue
        m = pat.match(a)
        assert m, a
        x, op, y, r = int(m[1]), m[2], int(m[3]), int(m[4])
        assert r == (x + y if op == "plus" else x - y) and r >= 0
        assert f"{x} {op} {y}" in q
        out.append((x, op, y))
    return out


def _operand_pairs(split: str) -> set[frozenset]:
    return {frozenset((x, y)) for x, _, y in _arith_items(split)}


def test_held_out_arithmetic_operand_pairs_disjoint_from_train():
    train, val, test = (_operand_pairs(s) for s in SPLITS)
    assert val and test
    assert not train & val and not train & test and not val & test


def test_held_out_arithmetic_stays_in_0_to_20_and_train_covers_every_other_pair_to_49():
    for split in ("val", "test"):
        assert all(max(p) <= 20 for p in _operand_pairs(split))
    items = _arith_items("train")
    assert len(items) == len(set(items))  # each question once
    held = _operand_pairs("val") | _operand_pairs("test")
    every = {frozenset((a, b)) for b in range(gen.ARITH_TRAIN_MAX + 1) for a in range(b + 1)}
    assert _operand_pairs("train") == every - held
    for a, b in (sorted(p) * 2 if len(p) == 1 else sorted(p) for p in every - held):
        assert {(a, "plus", b), (b, "plus", a), (b, "minus", a)} <= set(items)


def _dialogues(split: str):
    blocks = parse_blocks(read(f"dialogue/{split}.txt"))
    records = [json.loads(x) for x in read(f"dialogue/{split}.slots.jsonl").splitlines()]
    assert len(blocks) == len(records)
    return list(zip(blocks, records))


def test_dialogue_counts_and_turns():
    total = 0
    for split in SPLITS:
        dialogues = _dialogues(split)
        total += len(dialogues)
        lengths = sorted(len(gen.dialogue_text(t)) for t, _ in dialogues)
        assert lengths[len(lengths) * 3 // 4] <= 250  # most fit in ~250 chars
        for i, (turns, rec) in enumerate(dialogues):
            assert 2 <= len(turns) <= 6
            assert rec["dialogue"] == i and rec["n_turns"] == len(turns)
    assert total >= 500


@pytest.mark.parametrize("split", SPLITS)
def test_slot_values_appear_in_recall_answers(split):
    for turns, rec in _dialogues(split):
        assert rec["slots"] and rec["topic"]
        for s in rec["slots"]:
            assert 1 <= s["turn"] - s["fact_turn"] <= 3
            assert s["value"] in turns[s["turn"]][1]
            assert s["value"] not in turns[s["turn"]][0]  # the question alone cannot answer it
            assert s["value"].lower() in turns[s["fact_turn"]][0].lower()


def test_held_out_slot_values_never_in_train():
    train_words = words(read("dialogue/train.txt")) | words(read("qa/train.txt"))
    train_values = {s["value"] for _, r in _dialogues("train") for s in r["slots"]}
    for split in ("val", "test"):
        for _, rec in _dialogues(split):
            for s in rec["slots"]:
                assert s["value"].lower() not in train_words, s
                assert s["value"] not in train_values, s


def test_check_mode_flags_a_changed_file(tmp_path):
    gen.generate(tmp_path)
    assert gen.check(tmp_path) == []
    (tmp_path / "qa" / "val.txt").write_text("Q: x\nA: y\n")
    assert gen.check(tmp_path) == ["qa/val.txt"]


@pytest.mark.parametrize("corpus", ["qa", "dialogue", "chat"])
def test_held_out_characters_all_seen_in_train(corpus):
    train_chars = set(read(f"{corpus}/train.txt"))
    for split in ("val", "test"):
        assert set(read(f"{corpus}/{split}.txt")) <= train_chars  # a train-built tokenizer covers them


# ---- chat corpus: held-out splits share no phrasing template, slot value, out-of-domain family or
#      arithmetic operand pair with train (checked on the text, not only on the generator's tables) ----

def _chats(split: str):
    blocks = parse_blocks(read(f"chat/{split}.txt"))
    records = [json.loads(x) for x in read(f"chat/{split}.slots.jsonl").splitlines()]
    assert len(blocks) == len(records)
    return list(zip(blocks, records))


def _phrasing(text: str, value: str) -> str:
    """The user's words with the slot value and any sibling relation cut out: the template's shape."""
    t = re.sub(rf"\b{re.escape(value)}\b", "<v>", text, flags=re.IGNORECASE)
    t = re.sub(r"\b(a|an)( <v>)", r"<a>\2", t)
    return re.sub(r"\b(brother|sister)\b", "<r>", t)


def _phrasings_by_slot(split: str) -> dict[str, tuple[set[str], set[str]]]:
    """slot -> (the phrasings it is stated in, the phrasings it is asked in) in split."""
    out = {}
    for turns, rec in _chats(split):
        for s in rec["slots"]:
            facts, asks = out.setdefault(s["slot"], (set(), set()))
            facts.add(_phrasing(turns[s["fact_turn"]][0], s["value"]))
            asks.add(_phrasing(turns[s["turn"]][0], s["value"]))
    return out


def _slot_phrasings(split: str) -> set[str]:
    return set().union(*(facts | asks for facts, asks in _phrasings_by_slot(split).values()))


def test_chat_records_match_the_text():
    for split in SPLITS:
        for i, (turns, rec) in enumerate(_chats(split)):
            assert rec["dialogue"] == i and rec["n_turns"] == len(turns) == len(rec["turns"])
            assert len(gen.dialogue_text(turns)) <= gen.MAX_CHAT_CHARS
            for s in rec["slots"]:
                assert s["fact_turn"] < s["turn"]
                assert s["value"].lower() in turns[s["fact_turn"]][0].lower()
                assert s["value"] in turns[s["turn"]][1]
                assert all(w in turns[s["turn"]][1] for w in s["words"])
            for (q, a), t in zip(turns, rec["turns"]):
                assert (a == gen.DONT_KNOW) == (t["kind"] == "ood"), (q, a)


@pytest.mark.parametrize("split", ["val", "test"])
def test_chat_held_out_phrasings_never_in_train(split):
    train = _slot_phrasings("train")
    held = _slot_phrasings(split)
    assert len(held) >= 30  # several phrasings per slot
    assert not held & train, sorted(held & train)[:5]


def test_chat_val_and_test_phrasings_differ():
    assert not _slot_phrasings("val") & _slot_phrasings("test")


def test_chat_training_asks_each_slot_in_many_phrasings_without_held_out_marks():
    """The wider family: a slot is learnt from its words, not from a few whole questions, and no
    training phrasing borrows a held-out frame's mark."""
    by_slot = _phrasings_by_slot("train")
    assert set(by_slot) == set(gen.CHAT_SLOTS)
    marks = re.compile(r"\b(again|remind|recall|remember|what's|i'm)\b", re.IGNORECASE)
    for slot, (facts, asks) in by_slot.items():
        assert len(facts) >= 15 and len(asks) >= 25, (slot, len(facts), len(asks))
        assert not [p for p in facts | asks if marks.search(p)], slot


@pytest.mark.parametrize("split", ["val", "test"])
def test_chat_held_out_slot_values_never_in_train(split):
    train_words = set(re.findall(r"[a-z0-9']+", read("chat/train.txt").lower()))
    train_values = {s["value"] for _, r in _chats("train") for s in r["slots"]}
    held = {s["value"] for _, r in _chats(split) for s in r["slots"]}
    assert len(held) >= 20
    for v in held:
        assert v not in train_values and v.lower() not in train_words, v


@pytest.mark.parametrize("split", ["val", "test"])
def test_chat_out_of_domain_family_held_out(split):
    def ood(s):
        return [(q, t["family"]) for turns, r in _chats(s) for (q, _), t in zip(turns, r["turns"])
                if t["kind"] == "ood"]
    train = ood("train")
    held = ood(split)
    assert len(held) >= 30
    assert not {f for _, f in held} & {f for _, f in train}
    starts = {" ".join(q.split()[:2]) for q, _ in train}
    for q, _ in held:  # the question's opening words are a template no training question uses
        assert " ".join(q.split()[:2]) not in starts, q


@pytest.mark.parametrize("split", ["val", "test"])
def test_chat_arithmetic_pairs_held_out(split):
    def pairs(s):
        return {frozenset((int(a), int(b))) for a, b in
                re.findall(r"(\d+) (?:plus|minus) (\d+)", read(f"chat/{s}.txt"))}
    held = pairs(split)
    assert len(held) >= 10
    assert not held & pairs("train")


def test_chat_qa_turns_come_from_the_matching_qa_split():
    for split in SPLITS:
        qa = dict(qa_pairs(split))
        for turns, r in _chats(split):
            for (q, a), t in zip(turns, r["turns"]):
                if t["kind"] == "qa":
                    assert qa.get(q) == a, f"{split}: {q!r} is not a {split} qa question"
