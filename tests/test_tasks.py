import numpy as np
import pytest

from core.config import load_config
from core.tasks import make_task
from core.tasks.corpus import CorpusError, parse_conversations, read_text
from core.tasks.dialogue import made_up, mentions, recall_scores
from core.tasks.lm import PromptTooLong, build_prompt, encode_conversations, normalise
from core.tasks.qa import answer_scores
from core.tasks.reversal import antidiagonal_mass, reversal_metrics
from core.tokenizer import CharTokenizer

TINY = ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32", "train.batch_size=4",
        "data.n_eval=4", "model.dropout=0.0"]


def test_reversal_metrics_perfect_and_wrong():
    t = np.array([[1, 2, 3], [4, 5, 6]])
    assert reversal_metrics(t, t) == {"accuracy": 1.0, "position_accuracy": [1.0, 1.0, 1.0]}
    wrong = reversal_metrics(t + 1, t)
    assert wrong["accuracy"] == 0.0 and wrong["position_accuracy"] == [0.0, 0.0, 0.0]
    half = t.copy()
    half[0, 1] = 9
    m = reversal_metrics(half, t)
    assert m["accuracy"] == 0.5 and m["position_accuracy"] == [1.0, 0.5, 1.0]


def test_antidiagonal_mass_of_a_perfect_and_a_uniform_map():
    L = 5
    anti = np.eye(L)[::-1]
    maps = np.stack([np.stack([anti, np.full((L, L), 1 / L)])])[:, None]  # (1 layer, 1 seq, 2 heads, L, L)
    m = antidiagonal_mass(maps)
    assert m["antidiagonal_mass"] == [[1.0, 0.2]]
    assert m["antidiagonal_best"] == 1.0 and m["antidiagonal_best_head"] == [0, 0]


def test_reversal_held_out_never_in_training():
    cfg = load_config("reversal", overrides=["data.seq_len=2", "data.n_eval=300"])
    task = make_task(cfg)
    held = {r.tobytes() for r in task.eval_x}
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y, _ = task.batch("train", 64, rng)
        assert not ({r.tobytes() for r in x} & held)
        np.testing.assert_array_equal(y, x[:, ::-1])


def test_answer_scores_exact_after_normalising():
    s = answer_scores([("Paris is the capital.", "paris is the capital"), ("no", "yes")])
    assert s["exact"] == 0.5 and s["similarity"] == 0.5
    assert 0 < answer_scores([("the cat", "the hat")])["similarity"] < 1
    assert answer_scores([("a b", "a b")])["similarity"] == 1.0
    assert normalise("  Hello,   World!! ") == "hello world"


def test_recall_and_topic_proxies():
    assert recall_scores([("You have a dog.", "dog"), ("You have a cat.", "dog")]) == 0.5
    assert recall_scores([]) == 0.0
    assert mentions("I like dogs and tea", ["tea"]) and not mentions("teapot", ["tea"])


def test_parse_conversations_and_errors():
    convs = parse_conversations("Q: hi\nA: hello\n\nQ: a\nA: b\nQ: c\nA: d\n")
    assert convs == [[("hi", "hello")], [("a", "b"), ("c", "d")]]
    for bad, where in [("", "no Q:/A:"), ("Q: x\n\n", ":2"), ("A: y\n", ":1"), ("Q: a\nQ: b\n", ":2"),
                       ("hello\n", ":1"), ("Q: a\nA: b\nQ: c", "ends with")]:
        with pytest.raises(CorpusError, match=where):
            parse_conversations(bad, "f.txt")


def test_read_text_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_text(tmp_path / "missing.txt")
    p = tmp_path / "latin1.txt"
    p.write_bytes("Q: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        read_text(p)


def test_answer_mask_marks_answers_only():
    tok = CharTokenizer.from_text("Q: A\nhiyoab")
    ids, mask, starts = encode_conversations([[("hi", "yo")], [("a", "b")]], tok)
    text = tok.decode(ids)
    assert text == "Q: hi\nA: yo\n\nQ: a\nA: b\n"
    assert list(starts) == [0, 13]
    assert "".join(c for c, m in zip(text, mask) if m) == " yo\n b\n"


def test_build_prompt_crops_whole_turns_from_the_left():
    hist = [("one", "1"), ("two", "2"), ("three", "3")]
    p = build_prompt(hist, "four?", block_size=64, reserve=8)
    assert p.endswith("Q: four?\nA:") and p.startswith("Q: ")
    assert len(p) <= 56 and "three" in p
    full = build_prompt(hist, "x", block_size=400)
    assert full.startswith("Q: one\nA: 1\n")
    with pytest.raises(PromptTooLong, match="shorten"):
        build_prompt([], "x" * 100, block_size=64)


def test_qa_task_uses_own_corpus_with_levels():
    task = make_task(load_config("qa", overrides=TINY))
    assert len(task.train_pairs) >= 1000 and set(task.val_levels) >= {"arithmetic", "greetings"}
    x, y, _ = task.batch("train", 3, np.random.default_rng(0))
    assert x.shape == (3, 32)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_qa_evaluation_reports_arithmetic_per_operation(monkeypatch):
    task = make_task(load_config("qa", overrides=TINY))
    answers = dict(task.val_pairs)

    class Uniform:
        def forward(self, idx):
            return np.zeros((*idx.shape, task.tokenizer.vocab_size)), None
    # an oracle that knows every sum and no difference
    monkeypatch.setattr(task, "answer", lambda model, hist, q: answers.get(q, "?") if "minus" not in q else "0.")
    m = task.evaluate(Uniform(), full=True)
    assert m["arith_exact_by_op"] == {"minus": 0.0, "plus": 1.0}
    arith = m["answer_by_level"]["arithmetic"]
    n_plus = sum(" plus " in q for q, _ in task.val_pairs)
    assert arith["exact"] == pytest.approx(n_plus / arith["n"]) and 0 < n_plus < arith["n"]


def _level_corpus(tmp_path, n=40):
    """n one-pair conversations (even ones 'sums', odd ones 'words', of unequal length) and their levels."""
    p = tmp_path / "c.txt"
    p.write_text("".join(f"Q: s{i}?\nA: {i} plus 1.\n\n" if i % 2 == 0 else
                         f"Q: w{i}?\nA: a much longer answer of words {i}.\n\n" for i in range(n)))
    p.with_suffix(".levels").write_text("".join("sums\n" if i % 2 == 0 else "words\n" for i in range(n)))
    return p


def _first_lines(task, x):
    return [task.tokenizer.decode(row).split("\n")[0] for row in x]


def test_level_weights_draw_pairs_as_if_repeated(tmp_path):
    """data.level_weights: windows at a question pick a level's pairs in proportion to its weight; windows
    that start anywhere, in proportion to weight x length; the held-out pairs are never drawn."""
    p = _level_corpus(tmp_path)
    base = TINY + [f"data.corpus={p}", "data.val_fraction=0.25"]
    # the preset's weights name the project corpus' levels: on this corpus they are an error to fix
    with pytest.raises(CorpusError, match="level 'arithmetic' is not in .*set data.level_weights= to"):
        make_task(load_config("qa", overrides=base))
    base.append("data.level_weights=")
    rng = np.random.default_rng(0)
    even = make_task(load_config("qa", overrides=base))
    x, _, _ = even.batch("train", 4000, rng)
    plain = np.mean([" plus " in line or line.startswith("Q: s") for line in _first_lines(even, x[:2000])])
    task = make_task(load_config("qa", overrides=base + ["data.level_weights=sums=3"]))
    x, y, _ = task.batch("train", 4000, rng)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    first = _first_lines(task, x[:2000])  # the first half starts at a question
    assert all(line.startswith("Q: ") for line in first)
    held = {q for c in task.val_convs for q, _ in c}
    assert not {line[3:] for line in first} & held
    sums = np.mean([line.startswith("Q: s") for line in first])
    n_sums = sum(q.startswith("s") for c in task.train_convs for q, _ in c)
    expect = 3 * n_sums / (3 * n_sums + (len(task.train_convs) - n_sums))
    assert sums == pytest.approx(expect, abs=0.04) and sums > plain + 0.15
    # the rest start anywhere in a pair: weight 0 for sums leaves only words' characters there
    task = make_task(load_config("qa", overrides=base + ["data.level_weights=sums=0, words=1"]))
    x, _, _ = task.batch("train", 400, rng)
    assert all(" plus " not in task.tokenizer.decode(row[:8]) for row in x)
    assert task.batch("val", 4, rng)[0].shape == (4, 32)  # evaluation windows are not reweighted
    # a corpus with no levels (the preset's weights name the project corpus' levels): every pair alike
    p.with_suffix(".levels").unlink()
    assert make_task(load_config("qa", overrides=base + ["data.level_weights=sums=3"])).pair_p is None


@pytest.mark.parametrize("weights, levels, word", [
    ("sum=3", None, "level 'sum' is not in"),
    ("sums=0, words=0", None, "every training pair has weight 0"),
    ("sums=2", "short", "names 39 levels but"),
])
def test_level_weights_errors_name_the_file_and_fix(tmp_path, weights, levels, word):
    p = _level_corpus(tmp_path)
    side = p.with_suffix(".levels")
    if levels == "short":
        side.write_text("sums\n" * 39)
    with pytest.raises(CorpusError, match=word) as e:
        make_task(load_config("qa", overrides=TINY + [f"data.corpus={p}", "data.val_fraction=0.25",
                                                      f"data.level_weights={weights}"]))
    assert "data.level_weights" in str(e.value)


def test_qa_split_when_no_val_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("".join(f"Q: q{i}?\nA: answer number {i}.\n\n" for i in range(20)))
    task = make_task(load_config("qa", overrides=TINY + [f"data.corpus={p}", "data.val_fraction=0.25"]))
    assert len(task.val_convs) == 5 and len(task.train_convs) == 15
    assert not set(map(tuple, task.val_convs)) & set(map(tuple, task.train_convs))


def test_stream_loss_scores_every_character_once(tmp_path):
    task = make_task(load_config("qa", overrides=TINY))

    class Uniform:  # a model that knows nothing: loss must be exactly ln V per character
        def forward(self, idx):
            return np.zeros((*idx.shape, task.tokenizer.vocab_size)), None
    all_l, ans_l = task.stream_loss(Uniform(), task.val_ids, task.val_ans)
    assert all_l == pytest.approx(np.log(task.tokenizer.vocab_size))
    assert ans_l == pytest.approx(np.log(task.tokenizer.vocab_size))


def test_dialogue_task_has_slots_for_held_out_dialogues():
    task = make_task(load_config("dialogue", overrides=TINY))
    assert task.slots is not None and len(task.slots) == len(task.val_convs)


def test_dialogue_training_windows_vary_the_remembered_values():
    from core.tasks.dialogue import substitute
    turns = [("My pet is a Dog.", "A dog is a nice pet."), ("What pet do I have?", "You have a dog.")]
    out = substitute(turns, ["dog"], lambda v: "zuma")
    assert out == [("My pet is a Zuma.", "A zuma is a nice pet."), ("What pet do I have?", "You have a zuma.")]
    assert substitute([("hotdog", "dog")], ["dog"], lambda v: "x") == [("hotdog", "x")]  # whole words only
    task = make_task(load_config("dialogue", overrides=TINY))
    x, y, _ = task.batch("train", 8, np.random.default_rng(0))
    kept = y[:, :-1] >= 0  # the presets train on answers alone: the rest is -1
    assert x.shape == (8, 32) and kept.any() and np.array_equal(x[:, 1:][kept], y[:, :-1][kept])
    train_text = task.tokenizer.decode(task.train_ids)
    words = set(task.tokenizer.decode(x[:4].ravel()).replace("\n", " ").replace(".", " ").split())
    assert words - set(train_text.replace("\n", " ").replace(".", " ").split())  # made-up values appear


def test_several_corpora_are_joined(tmp_path):
    import os
    a, b, v = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "v.txt"
    a.write_text("".join(f"Q: a{i}?\nA: alpha {i}.\n\n" for i in range(5)))
    b.write_text("".join(f"Q: b{i}?\nA: beta {i}.\n\n" for i in range(7)))
    v.write_text("Q: c?\nA: gamma.\n")
    task = make_task(load_config("qa", overrides=TINY + [f"data.corpus={a}{os.pathsep}{b}", f"data.val_corpus={v}"]))
    assert len(task.train_convs) == 12 and task.val_convs == [[("c?", "gamma.")]]
    assert "g" in task.tokenizer.chars  # the tokenizer covers every file


def test_sparse_stream_loss_spreads_windows_over_the_stream():
    task = make_task(load_config("qa", overrides=TINY))
    seen = []

    class Spy:
        def forward(self, idx):
            seen.extend(idx[:, 0].tolist())
            return np.zeros((*idx.shape, task.tokenizer.vocab_size)), None
    loss, _ = task.stream_loss(Spy(), task.train_ids, task.train_ans, max_windows=10)
    assert loss == pytest.approx(np.log(task.tokenizer.vocab_size)) and len(seen) == 10


def test_dialogue_made_up_values_follow_the_config():
    letters = make_task(load_config("dialogue", overrides=TINY + ["data.letter_words=1.0"]))
    rng = np.random.default_rng(0)
    words = [letters._word(rng) for _ in range(200)]
    assert all(3 <= len(w) <= 10 and w.isalpha() and w.islower() for w in words)
    assert len(set(words)) > 190  # random letters: practically never the same word twice
    assert any(not any(v in w for v in "aeiou") for w in words)  # no syllable structure to lean on
    plain = make_task(load_config("dialogue", overrides=TINY + ["data.letter_words=0.0"]))
    assert all(w in plain.words or set(w[1::2]) <= set("aeiou") for w in (plain._word(rng) for _ in range(200)))
    # fresh_fraction sets how many windows of a batch carry made-up values
    none = make_task(load_config("dialogue", overrides=TINY + ["data.fresh_fraction=0.0"]))
    x, _, _ = none.batch("train", 8, np.random.default_rng(1))
    train_text = none.tokenizer.decode(none.train_ids)
    assert all(none.tokenizer.decode(row) in train_text for row in x)  # every window is corpus text
    every = make_task(load_config("dialogue", overrides=TINY + ["data.fresh_fraction=1.0"]))
    x, _, _ = every.batch("train", 8, np.random.default_rng(1))
    assert sum(every.tokenizer.decode(row) not in train_text for row in x) >= 6


def test_text_letters_draws_made_up_letters_as_often_as_the_training_text_has_them():
    """data.text_letters: a share of the random-letter values drawn with the training text's letter
    frequencies (common letters, repeated, as in "tortoise"); at 0 the values and the random stream are
    those of uniform letters."""
    def letters_of(share, seed=0, n=600):
        task = make_task(load_config("chat", overrides=TINY + ["data.letter_words=1.0", f"data.text_letters={share}"]))
        rng = np.random.default_rng(seed)
        return task, "".join(task._word(rng) for _ in range(n))

    task, common = letters_of(1.0)
    _, uniform = letters_of(0.0)
    assert task.letter_p.sum() == pytest.approx(1.0) and len(task.letter_p) == len(task.letters)
    p = dict(zip(task.letters, task.letter_p))
    assert p["e"] > 5 * p["v"] and p["q"] < 0.01  # the words' letters; "Q:" is not a word
    top = sorted(task.letters, key=p.get)[-6:]  # the six most frequent letters of the training text
    share = lambda text: sum(text.count(c) for c in top) / len(text)  # noqa: E731
    assert share(common) > 0.45 and share(uniform) < 0.35  # uniform: 6 of ~25 letters, about 0.24
    assert 3 * uniform.count("z") > common.count("z")
    half = share(letters_of(0.5)[1])
    assert share(uniform) < half < share(common)
    # at 0 nothing more is drawn: the words are made_up's own uniform ones, in the same stream
    rng, again = np.random.default_rng(0), np.random.default_rng(0)
    zero = make_task(load_config("chat", overrides=TINY + ["data.letter_words=1.0", "data.text_letters=0"]))
    for _ in range(50):
        again.random()  # _word's letter_words draw
        assert zero._word(rng) == made_up(again, zero.letters, 3, 11)


def test_dense_fraction_sets_the_share_of_dense_dialogues(monkeypatch):
    """data.dense_fraction: the share of the made-up-value dialogues built densely (facts, then each asked
    back) rather than taken from the corpus with their values replaced."""
    import core.tasks.dialogue as dialogue
    counts = {}

    def counted(name, fn):
        def wrapper(*a, **k):
            counts[name] = counts.get(name, 0) + 1
            return fn(*a, **k)
        return wrapper
    monkeypatch.setattr(dialogue, "substitute", counted("corpus", dialogue.substitute))
    for share, want in ((0.0, {"corpus"}), (1.0, {"dense"}), (0.5, {"corpus", "dense"})):
        task = make_task(load_config("dialogue", overrides=TINY + [f"data.dense_fraction={share}"]))
        monkeypatch.setattr(task, "_dense_dialogue", counted("dense", task._dense_dialogue))
        counts.clear()
        rng = np.random.default_rng(0)
        for _ in range(20):
            task._fresh_text(rng, 300)
        assert set(counts) == want, (share, counts)
        if share == 0.5:
            assert 0.25 < counts["dense"] / sum(counts.values()) < 0.75, counts


def test_ask_and_fact_noise_put_made_up_words_into_questions_and_facts(monkeypatch):
    """data.ask_noise / data.fact_noise: that share of the made-up-value dialogues' questions (all but the
    facts) / facts get one or two made-up words between their words; answers are untouched, and at 0
    nothing changes."""
    def windows(ask, fact, dense):
        task = make_task(load_config("chat", overrides=TINY + ["data.letter_words=1.0", f"data.dense_fraction={dense}",
                                                               f"data.ask_noise={ask}", f"data.fact_noise={fact}",
                                                               "data.ask_swap=0", "data.ood_madeup=0"]))
        made = []
        build = task._dense_dialogue
        monkeypatch.setattr(task, "_dense_dialogue", lambda rng: made.append(build(rng)) or made[-1])
        rng = np.random.default_rng(0)
        pairs = []
        for _ in range(40):
            made.clear()
            text = task._fresh_text(rng, 1500)
            want = [((q, a), "fact" if t in facts else "ask")
                    for turns, facts in made for t, (q, a) in enumerate(turns)]
            got = [line for line in text.split("\n") if line][:-2]  # the window's last turn may be cut
            got = list(zip(got[0::2], got[1::2]))
            pairs += [(w, g) for w, g in zip(want, got)]
        return task, pairs

    def dropped(q, orig):
        """q less one or two of its words equals orig (case aside, the closing mark kept)."""
        words = q.split(" ")
        cut = [[i] for i in range(len(words))] + [[i, k] for i in range(len(words)) for k in range(i + 1, len(words))]
        for drop in cut:
            kept = [w for j, w in enumerate(words) if j not in drop]
            text = " ".join(kept)
            if text.lower() == orig.lower() or (text + orig[-1:]).lower() == orig.lower():
                return True
        return False
    _, pairs = windows(0.0, 0.0, 1.0)
    bad = [(w, g) for w, g in pairs if g != (f"Q: {w[0][0]}", f"A: {w[0][1]}")]
    assert len(pairs) > 300 and not bad, bad[:2]
    for ask, fact in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
        _, pairs = windows(ask, fact, 1.0)
        noised = {r for r, share in (("ask", ask), ("fact", fact)) if share}
        changed = [(q, g[0][3:]) for ((q, a), role), g in pairs if role in noised]
        assert len(changed) > 100 and not [c for c in changed if c[1] == c[0] or not dropped(c[1], c[0])], [c for c in changed if c[1] == c[0] or not dropped(c[1], c[0])][:3]
        assert all(g == (f"Q: {q}", f"A: {a}") for ((q, a), role), g in pairs if role not in noised)
        assert all(g[1] == f"A: {a}" for ((q, a), _), g in pairs)
    # corpus dialogues with replaced values: every question but the facts gets the words (out-of-domain,
    # Q&A and arithmetic too, so made-up words are no sign of a recall question); the facts do not
    task, _ = windows(1.0, 0.0, 0.0)
    facts = {turns[s["fact_turn"]][0] for turns, ann in zip(task.train_convs, task.train_slots)
             for s in ann.get("slots", [])}
    others = {q for turns in task.train_convs for q, _ in turns} - facts
    text = "\n".join(task._fresh_text(np.random.default_rng(2), 800) for _ in range(30))
    qs = [line[3:] for line in text.split("\n")[:-2] if line.startswith("Q: ")]
    assert len(qs) > 60 and not any(q in others for q in qs)
    assert sum("plus" in q or "minus" in q for q in qs) > 5
    rng = np.random.default_rng(1)
    noisy = [task._noisy("What is my pet?", rng) for _ in range(300)]
    assert all(q.endswith("?") and q[0].isupper() and dropped(q, "What is my pet?") for q in noisy)
    assert {len(q.split()) for q in noisy} == {5, 6} and len(set(noisy)) > 250


def test_cue_fraction_states_and_asks_facts_around_one_made_up_word():
    """data.cue_fraction: that share of the dense dialogues' facts is stated and asked around one made-up
    word; the acknowledgement and the answer stay the slot's own, so only they tell the slot."""
    import re

    def pat(template, cue="([a-z]+)"):  # "\0"/"\1" (the value) match a word, {c} the made-up word
        return "".join("[A-Za-z0-9]+" if ch in "\0\1" else re.escape(ch) for ch in template).replace(
            re.escape("{c}"), cue)
    for share in (0.0, 1.0, 0.5):
        task = make_task(load_config("chat", overrides=TINY + [f"data.cue_fraction={share}"]))
        pairs, _ = task.library
        known = set(task.words)
        rng = np.random.default_rng(0)
        cued = total = 0
        for _ in range(100):
            turns, facts = task._dense_dialogue(rng)
            for t in sorted(facts):
                (q, a), total = turns[t], total + 1
                slot = next(k for k, v in pairs.items() if any(re.fullmatch(pat(x[1]), a) for x in v))
                m = next((m for f, _ in task.CUE_FRAMES for m in [re.fullmatch(pat(f), q)] if m), None)
                # a corpus fact in the same frame ("I enjoy \0.", "I am 89."; task.words has 3+ letters)
                if m is None or m.group(1) in known or len(m.group(1)) < 3:
                    continue
                cued += 1
                # asked back once, by its word, in the frame's question; answered in the slot's own words
                ask = [(rq, ra) for i, (rq, ra) in enumerate(turns) if i not in facts and
                       any(re.fullmatch(pat(x, re.escape(m.group(1))), rq) for _, x in task.CUE_FRAMES)]
                assert len(ask) == 1, (q, turns)
                assert any(re.fullmatch(pat(x[3]), ask[0][1]) for x in pairs[slot]), (a, ask)
        assert total > 200
        # (a made-up word may by chance be a word of the corpus, then it is not counted)
        want = {0.0: (0, 0), 1.0: (0.98, 1), 0.5: (0.35, 0.65)}[share]
        assert want[0] <= cued / total <= want[1], (share, cued, total)


def test_made_up_values_keep_numbers_numeric():
    """An age stays a number in the windows with made-up values ("I am 43 years old", never "I am zuvq
    years old"), of as many digits as the corpus' ages, so ages outside the corpus' own range are
    copied too; other slots get made-up words."""
    import re
    from core.tasks.dialogue import numeric_slots
    # (no made-up words in the questions: "How zovi years old am I?" would read as an age here)
    task = make_task(load_config("chat", overrides=TINY + ["data.letter_words=1.0", "data.ask_noise=0", "data.fact_noise=0",
                                                           "data.cue_fraction=0"]))
    assert set(task.numeric) == {"age"}
    lo, hi = task.numeric["age"]
    assert (lo, hi) == (10, 99)  # the corpus' ages run 15..69
    rng = np.random.default_rng(0)
    ages, words = [], []
    for _ in range(300):
        for q, a in task._dense_dialogue(rng)[0]:
            ages += re.findall(r"(\w+) years old", q + " " + a)
    text = "".join(task._fresh_text(rng, 400) for _ in range(40))
    ages += re.findall(r"(\w+) years old", text)
    ages = [v for v in ages if v != "many"]  # "How many years old am I?"
    assert len(ages) > 20 and all(v.isdigit() and lo <= int(v) <= hi for v in ages), ages[:20]
    assert max(map(int, ages)) >= 70 and min(map(int, ages)) < 15  # beyond the corpus' own 15..69
    assert task._value(rng, "name").isalpha() and task._value(rng, "age").isdigit()
    assert numeric_slots([{"slots": [{"slot": "age", "value": "7"}, {"slot": "pet", "value": "cat"}]},
                          {"slots": [{"slot": "age", "value": "70"}, {"slot": "pet", "value": "3"}]}]) == {"age": (0, 99)}
    assert numeric_slots([{"slots": [{"slot": "n", "value": "120"}, {"slot": "n", "value": "15"}]}]) == {"n": (10, 999)}


def _chat_oracle(task, wrong=None):
    """An answer function that gives each chat turn's reference answer (or, with `wrong`, a changed one); in
    a fresh chat, a recall question gets don't-know (nothing has been told)."""
    from core.tasks.chat import DONT_KNOW
    refs, fresh = {}, {}
    for convs, recs in ((task.val_convs, task.slots), (task.test_convs, task.test_slots)):
        for turns, rec in zip(convs, recs):
            recalls = {s["turn"] for s in rec["slots"]}
            for t, (q, a) in enumerate(turns):
                refs[(tuple(turns[:t]), q)] = a
                fresh[q] = DONT_KNOW if t in recalls else a

    def answer(model, history, question):
        ref = refs.get((tuple(history), question)) if history else fresh[question]
        return wrong(ref) if wrong else ref
    return answer


def test_chat_scores_of_a_perfect_and_a_know_nothing_answerer():
    from core.tasks.chat import DONT_KNOW
    task = make_task(load_config("chat", overrides=TINY))
    assert task.test_convs is not None and all("turns" in r for r in task.slots)

    class Uniform:
        def forward(self, idx):
            return np.zeros((*idx.shape, task.tokenizer.vocab_size)), None
    task.answer = _chat_oracle(task)
    m = task.evaluate(Uniform(), full=True)
    for key in ("context_recall", "slot_correct", "ack_exact", "two_fact_recall", "dont_know_ood", "qa_mid_exact",
                "qa_fresh_exact", "dont_know_unstated", "chat_score"):
        assert m[key] == 1.0 and m["heldout_family"][key] == 1.0, key
    assert m["dont_know_false"] == 0.0 and m["arith_exact_by_op"] == {"minus": 1.0, "plus": 1.0}
    assert m["recall_n"] >= 100 and m["two_n"] >= 20 and m["ood_n"] >= 50 and m["qa_mid_n"] >= 50
    task.answer = lambda model, history, question: DONT_KNOW
    m = task.scores(None, task.val_convs, task.slots, 40)
    assert m["dont_know_ood"] == 1.0 and m["dont_know_false"] == 1.0
    assert m["context_recall"] == 0.0 and m["qa_mid_exact"] == 0.0 and m["ack_exact"] == 0.0
    assert m["dont_know_unstated"] == 1.0


def test_chat_dont_know_unstated_counts_a_made_up_value_in_a_fresh_chat():
    """A recall question asked where nothing has been told: "I don't know that yet." is right, a value
    (the one the chat would have held, here) is made up."""
    task = make_task(load_config("chat", overrides=TINY))
    oracle = _chat_oracle(task)
    answers = {}

    def inventing(model, history, question):
        out = oracle(model, history, question) if history else answers.get(question, "Your name is Tsen.")
        if history:
            answers[question] = out  # asked fresh, it repeats what it said mid-chat
        return out
    task.answer = inventing
    m = task.scores(None, task.val_convs, task.slots, 40)
    assert m["context_recall"] == 1.0 and m["dont_know_unstated"] == 0.0


def test_chat_live_recall_answers_from_the_models_own_replies():
    """live_recall (full evaluations) puts the model's own earlier replies in the prompt, as the Chat tab
    does: a fact acknowledged wrongly costs the recall after it, which context_recall (the corpus' replies
    in the prompt) does not see."""
    task = make_task(load_config("chat", overrides=TINY))
    oracle = _chat_oracle(task)
    statements = {turns[s["fact_turn"]][0] for convs, recs in ((task.val_convs, task.slots), (task.test_convs, task.test_slots))
                  for turns, r in zip(convs, recs) for s in r["slots"]}

    def misreads(model, history, question):  # right after the corpus' replies, but acknowledges facts wrongly
        if question in statements:
            return "Bruno is a nice name for a sister."
        try:
            return oracle(model, history, question) or "I don't know that yet."
        except KeyError:
            return "I don't know that yet."
    task.answer = oracle
    assert task.live_recall(None, task.val_convs, task.slots, 40) == 1.0
    task.answer = misreads

    class Uniform:  # for the losses
        def forward(self, idx):
            return np.zeros((*idx.shape, task.tokenizer.vocab_size)), None
    m = task.evaluate(Uniform(), full=True)
    assert m["context_recall"] == 1.0 and m["heldout_family"]["context_recall"] == 1.0
    assert m["live_recall"] == 0.0 and m["heldout_family"]["live_recall"] == 0.0
    assert m["ack_exact"] == 0.0 and m["heldout_family"]["ack_exact"] == 0.0  # every fact acknowledged wrongly
    assert "live_recall" not in task.evaluate(Uniform())  # the periodic evaluation leaves it out


def test_chat_recall_by_phrasing_names_the_phrasing_that_is_read_wrongly():
    """A full evaluation gives recall per question phrasing and per fact phrasing, lowest first (a split
    has two phrasings a slot, so one read wrongly moves the split's recall by points); `attnlab eval`
    prints the three lowest."""
    from tui.cli.common import format_eval
    task = make_task(load_config("chat", overrides=TINY))
    oracle = _chat_oracle(task)
    asks = {}  # question text -> its phrasing
    for convs, recs in ((task.val_convs, task.slots), (task.test_convs, task.test_slots)):
        for turns, rec in zip(convs, recs):
            for (q, _), kind in zip(turns, rec["turns"]):
                if kind["kind"] == "recall":
                    asks[q] = kind["template"]
    hard = "What dish do I like best?"
    assert hard in asks.values()
    task.answer = lambda model, history, question: (
        "You told me you like origami." if history and asks.get(question) == hard else oracle(model, history, question))
    m = task.scores(None, task.val_convs, task.slots, len(task.val_convs), phrasings=True)
    by_ask, by_fact = m["recall_by_ask"], m["recall_by_fact"]
    first = next(iter(by_ask.items()))
    assert first[0] == hard and first[1]["recall"] == 0.0 and first[1]["n"] >= 3
    assert all(r["recall"] == 1.0 for t, r in by_ask.items() if t != hard)
    assert sum(r["n"] for r in by_ask.values()) == sum(r["n"] for r in by_fact.values()) == m["recall_n"]
    assert m["context_recall"] == pytest.approx(1 - first[1]["n"] / m["recall_n"])
    assert all("{" in t or t.endswith(".") for t in by_fact)  # facts' phrasings, not questions'
    assert "recall_by_ask" not in task.scores(None, task.val_convs, task.slots, 40)
    text = format_eval({"step": 5, **m})  # only phrasings missed at least once are named
    assert text.endswith(f'\nrecalled least (val): "{hard}" 0/{first[1]["n"]}')
    task.answer = oracle
    perfect = task.scores(None, task.val_convs, task.slots, len(task.val_convs), phrasings=True)
    assert "recalled least" not in format_eval({"step": 5, **perfect})


def test_chat_recall_by_layout_shows_a_copy_that_takes_the_latest_fact():
    """A full evaluation gives recall by where the question sits among the chat's facts; an answerer that
    always copies the latest fact stated (the slot's frame, the wrong value) fails exactly the questions
    with another fact stated between theirs and them, and `attnlab eval` prints the three figures."""
    from core.tasks.chat import LAYOUTS
    from tui.cli.common import format_eval
    task = make_task(load_config("chat", overrides=TINY))
    oracle = _chat_oracle(task)
    latest = {}  # (history, question) of a recall -> (its value, the value of the latest fact before it)
    for turns, rec in zip(task.val_convs, task.slots):
        for s in rec["slots"]:
            last = max((o for o in rec["slots"] if o["fact_turn"] < s["turn"]), key=lambda o: o["fact_turn"])
            latest[(tuple(turns[:s["turn"]]), turns[s["turn"]][0])] = (s["value"], last["value"])

    def recency(model, history, question):
        ref = oracle(model, history, question)
        own, last = latest.get((tuple(history), question), (None, None))
        return ref.replace(own, last) if own else ref
    task.answer = recency
    m = task.scores(None, task.val_convs, task.slots, len(task.val_convs), phrasings=True)
    lay = m["recall_by_layout"]
    assert list(lay) == list(LAYOUTS) and all(r["n"] > 0 for r in lay.values())
    assert lay[LAYOUTS[0]]["recall"] == lay[LAYOUTS[1]]["recall"] == 1.0 and lay[LAYOUTS[2]]["recall"] == 0.0
    assert sum(r["n"] for r in lay.values()) == m["recall_n"]
    assert m["context_recall"] == pytest.approx(1 - lay[LAYOUTS[2]]["n"] / m["recall_n"])
    assert "recall_by_layout" not in task.scores(None, task.val_convs, task.slots, 40)
    n = [r["n"] for r in lay.values()]
    assert (f"\nrecall by layout (val): one fact in the chat {n[0]}/{n[0]}; others, none between {n[1]}/{n[1]}; "
            f"another fact between 0/{n[2]}\n") in format_eval({"step": 5, **m})


def test_chat_slot_correct_needs_the_asked_slot_named():
    from core.tasks.chat import named_slot
    other = {"colour", "food", "name", "brother", "sister"}
    assert named_slot("Your favourite colour is amber.", ["colour"], other)
    assert not named_slot("Your favourite food is amber.", ["colour"], other)
    assert not named_slot("Your favourite colour and food is amber.", ["colour"], other)
    assert not named_slot("Your sister is called Moritz.", ["brother"], other)
    task = make_task(load_config("chat", overrides=TINY))
    swap = lambda a: a.replace("colour", "food").replace("hobby", "name")  # noqa: E731
    task.answer = _chat_oracle(task, wrong=swap)
    m = task.scores(None, task.val_convs, task.slots, len(task.val_convs))
    assert m["context_recall"] == 1.0 and 0.5 < m["slot_correct"] < 1.0


def test_chat_training_windows_vary_the_remembered_values():
    task = make_task(load_config("chat", overrides=TINY))
    assert task.train_slots is not None and task.library is not None
    x, y, _ = task.batch("train", 8, np.random.default_rng(0))
    kept = y[:, :-1] >= 0  # the presets train on answers alone: the rest is -1
    assert x.shape == (8, 32) and kept.any() and np.array_equal(x[:, 1:][kept], y[:, :-1][kept])


def test_answer_positions_mark_what_the_stream_marks():
    from core.tasks.corpus import format_conversation
    from core.tasks.lm import StreamWriter, answer_positions
    turns = [("My pet is a Zuma.", "A zuma is a nice pet."), ("What pet do I have?", "You have a zuma.")]
    task = make_task(load_config("chat", overrides=TINY))
    w = StreamWriter(task.tokenizer, len(format_conversation(turns)), len(turns))
    w.add(turns)
    _, mask, _ = w.result()
    text = format_conversation(turns)
    assert np.array_equal(answer_positions(text), mask)
    assert "".join(c for c, m in zip(text, mask) if m) == " A zuma is a nice pet.\n You have a zuma.\n"
    assert np.array_equal(answer_positions(text[:30]), mask[:30])  # a cut window, too


def test_answers_only_puts_the_loss_on_answer_characters():
    """data.answers_only: every training target that is not an answer character (after 'A:', to its
    newline) is -1, in corpus windows and in the made-up-value windows alike; validation is untouched."""
    from core.tasks.lm import answer_positions
    for name in ("chat", "qa"):
        task = make_task(load_config(name, overrides=TINY + ["model.block_size=128", "data.answers_only=true"]))
        x, y, _ = task.batch("train", 8, np.random.default_rng(0))
        checked = 0
        for b in range(8):
            kept = y[b] != -1  # (T,)
            assert 0 < kept.sum() < len(kept)
            assert np.array_equal(y[b, :-1][kept[:-1]], x[b, 1:][kept[:-1]])  # kept targets are the next ids
            text = task.tokenizer.decode(x[b])
            start = text.find("\nQ: ") + 1  # a line start: from there on, each answer line is known
            if start:
                # the target at t predicts character t + 1: kept exactly where that lies on an answer line
                assert np.array_equal(kept[start - 1:-1], answer_positions(text[start:])), (name, text)
                checked += 1
        assert checked >= 6
        _, yv, _ = task.batch("val", 8, np.random.default_rng(0))
        assert (yv >= 0).all()
    plain = make_task(load_config("chat", overrides=TINY + ["data.answers_only=false"]))
    _, y, _ = plain.batch("train", 8, np.random.default_rng(0))
    assert (y >= 0).all()
    # the reported losses are the trained ones: answers alone, the whole stream beside them
    from core.trainer import Trainer
    model = Trainer(plain.cfg).model
    whole = plain.losses(model)
    both = make_task(load_config("chat", overrides=TINY + ["data.answers_only=true"])).losses(model)
    assert both["val_loss"] == whole["val_answer_loss"] != whole["val_loss"] == both["val_all_loss"]
    assert both["train_loss"] == whole["train_answer_loss"] and both["train_all_loss"] == whole["train_loss"]


def test_ask_swap_replaces_a_questions_own_words_but_numbers():
    """data.ask_swap: in a question that gets made-up words, each of its own words (but one holding a digit)
    is replaced by a made-up word with that chance; first-letter case and the closing mark are kept, facts
    are never swapped, and at 0 every word stays."""
    task = make_task(load_config("chat", overrides=TINY + ["data.letter_words=1.0"]))
    rng = np.random.default_rng(3)
    q = "What name did I give you?"
    kept = [task._noisy(q, rng, 0.0) for _ in range(200)]
    assert all(set(q.rstrip("?").split()) <= set(k.rstrip("?").split()) for k in kept)
    for s, numbers in (("What is 4 plus 1?", ["4", "1"]), (q, []), ("Who wrote Hamlet?", [])):
        # (a made-up word can spell a two-letter word, "is", so those are left out of the check)
        own = [w for w in s.rstrip("?").split() if not w.isdigit() and (len(w) > 2 or w == "I")]
        for out in (task._noisy(s, rng, 1.0) for _ in range(200)):
            words = out.rstrip("?").split()
            assert out.endswith("?") and out[0].isupper()
            assert not set(own) & set(words), out  # every word replaced
            assert [w for w in words if w.isdigit()] == numbers, out  # the numbers kept, in order
    half = [task._noisy(q, rng, 0.5) for _ in range(400)]
    share = np.mean([w in h.rstrip("?").split() for h in half for w in ("What", "name", "give")])
    assert 0.35 < share < 0.65, share
    # in the windows: the facts (and the answers) keep their words
    task = make_task(load_config("chat", overrides=TINY + ["data.letter_words=1.0", "data.dense_fraction=1.0",
                                                           "data.cue_fraction=0", "data.ask_noise=1.0",
                                                           "data.ask_swap=1.0", "data.fact_noise=0"]))
    text = task._fresh_text(np.random.default_rng(4), 3000)
    lines = [line for line in text.split("\n") if line][:-1]
    acks = [line[3:] for line in lines if line.startswith("A: ")]
    assert len(acks) > 20
    asks = [line[3:] for line in lines if line.startswith("Q: ")]
    assert any(a.startswith("I ") or a.startswith("My ") for a in asks)  # facts, unswapped
    assert sum(a.split()[0] in ("What", "Who", "Where", "How", "Do", "Which") for a in asks) < len(asks) / 2


def test_ood_madeup_asks_out_of_domain_questions_about_made_up_things():
    """data.ood_madeup: that share of the made-up-value dialogues' out-of-domain questions keeps its frame
    words and has every other word made up, still answered don't-know; other turns are untouched."""
    from core.tasks.chat import DONT_KNOW
    from core.tasks.dialogue import FRAME_WORDS

    def asked(share):
        task = make_task(load_config("chat", overrides=TINY + ["data.dense_fraction=0", "data.ask_noise=0",
                                                               "data.fact_noise=0", f"data.ood_madeup={share}"]))
        text = "\n".join(task._fresh_text(np.random.default_rng(5), 1500) for _ in range(20))
        lines = [line for line in text.split("\n") if line][:-1]
        pairs = [(q[3:], a[3:]) for q, a in zip(lines, lines[1:]) if q.startswith("Q: ") and a.startswith("A: ")]
        ood = {q for turns, ann in zip(task.train_convs, task.train_slots)
               for (q, _), k in zip(turns, ann["turns"]) if k["kind"] == "ood"}
        corpus = {q for turns in task.train_convs for q, _ in turns}
        return pairs, ood, corpus

    pairs, ood, corpus = asked(0.0)
    dk = [q for q, a in pairs if a == DONT_KNOW]
    assert len(dk) > 10 and set(dk) <= ood
    pairs, ood, corpus = asked(1.0)
    dk = [q for q, a in pairs if a == DONT_KNOW]
    assert len(dk) > 10 and not set(dk) & corpus
    shapes = {tuple(w if w.rstrip("?").lower() in FRAME_WORDS else "*" for w in q.split()) for q in ood}
    def fits(got, shape):  # a made-up word may by chance be a frame word ("in"): "*" matches it too
        return len(got) == len(shape) and all(s in ("*", g) for g, s in zip(got, shape))
    for q in dk:  # the frame words where they were; every other word made up
        got = tuple(w if w.rstrip("?").lower() in FRAME_WORDS else "*" for w in q.split())
        assert any(fits(got, shape) for shape in shapes), q
    others = [q for q, a in pairs if a != DONT_KNOW]
    assert sum(q in corpus for q in others) > len(others) / 2  # facts carry made-up values; the rest as written


def test_every_task_is_classed_as_chatting_or_not():
    """The Chat tab and `attnlab chat` ask `chats(task)`; a new task must be placed on one side."""
    from core.config import TASKS
    from core.tasks import CHAT_TASKS, chats
    assert set(CHAT_TASKS) | {"reversal"} == set(TASKS)
    assert not chats("reversal") and all(chats(t) for t in ("qa", "dialogue", "chat"))
