"""core.mixture: several saves answering as one (the mean of their next-character probabilities), and
`--with` on `attnlab eval`, `attnlab chat` and `attnlab sample`."""

import json
import os

import numpy as np
import pytest

from core.config import ModelConfig, load_config
from core.mixture import Mixture, MixtureError, check_mixable, mean_log_probs
from core.model import Transformer
from core.sample import stream_text
from core.tokenizer import CharTokenizer
from core.trainer import Trainer
from tui.cli import main

TINY = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=64"]


def model(seed, block_size=16, vocab=11, **kw):
    cfg = ModelConfig(vocab_size=vocab, block_size=block_size, n_layer=2, n_embd=16, n_head=2, **kw)
    m = Transformer(cfg, rng=np.random.default_rng(seed), dtype=np.float64)
    for k, p in m.params.items():  # past the near-uniform start, so the two models disagree
        p += np.random.default_rng(seed + 100).normal(0, 0.3, p.shape)
    return m


def softmax(lg):
    e = np.exp(lg - lg.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_mean_log_probs_is_the_log_of_the_mean_probability_even_for_huge_logits():
    a, b = np.array([[2.0, 0.0, -1.0]]), np.array([[-3.0, 1.0, 5.0]])
    want = np.log((softmax(a) + softmax(b)) / 2)
    np.testing.assert_allclose(mean_log_probs([a, b]), want, rtol=1e-12)
    huge = mean_log_probs([a * 1e4, b * 1e4])  # each a near one-hot; no overflow, no -inf from underflow
    assert np.all(np.isfinite(huge[0, [0, 2]])) and np.isclose(np.exp(huge).sum(), 1.0)
    np.testing.assert_allclose(np.exp(huge[0, [0, 2]]), [0.5, 0.5])


@pytest.mark.parametrize("kw", [{}, {"pos": "rope", "smear": True}])
def test_the_cached_decoding_of_a_mixture_matches_its_whole_forward(kw):
    mix = Mixture([model(1, **kw), model(2, **kw)])
    ids = np.random.default_rng(0).integers(0, 11, (1, 12))
    whole, _ = mix.forward(ids)  # (1, 12, V)
    want = np.log((softmax(mix.models[0].forward(ids)[0]) + softmax(mix.models[1].forward(ids)[0])) / 2)
    np.testing.assert_allclose(whole, want, atol=1e-10)
    kv = mix.new_kv_cache()
    np.testing.assert_allclose(mix.forward_step(ids[:, :5], kv)[0], whole[0, :5], atol=1e-10)
    assert kv["len"] == 5 and all(sub["len"] == 5 for sub in kv["members"])
    for t in range(5, 12):  # one position at a time, every member's cache advancing with the mixture's
        np.testing.assert_allclose(mix.decode_one(int(ids[0, t]), kv), whole[0, t], atol=1e-10)
    assert kv["len"] == 12


def test_a_mixture_of_a_model_with_itself_writes_what_the_model_writes_past_its_window():
    m = model(3, block_size=8)
    tok = CharTokenizer.from_text("abcdefghij\n")
    solo = "".join(stream_text(m, tok, "abc", stop=(), max_new_tokens=30, temperature=0.0))
    twice = "".join(stream_text(Mixture([m, m]), tok, "abc", stop=(), max_new_tokens=30, temperature=0.0))
    assert twice == solo and len(solo) == 30  # the window slid (8 characters) and both caches restarted


def test_a_mixture_never_predicts_worse_than_its_members_on_average():
    a, b = model(4), model(5)
    ids = np.random.default_rng(1).integers(0, 11, (3, 10))
    y = np.roll(ids, -1, axis=1)
    y[:, -1] = -1  # the last position has no target: skipped
    la, lb = a.forward(ids, y)[1], b.forward(ids, y)[1]
    _, lm = Mixture([a, b]).forward(ids, y)
    assert lm <= (la + lb) / 2 + 1e-12 and lm != pytest.approx(la)  # -log of a mean <= the mean of -logs


def test_only_saves_of_one_writing_task_characters_and_window_mix():
    tok = CharTokenizer.from_text("abcdefghij\n")
    qa, chat, rev = (load_config(t) for t in ("qa", "chat", "reversal"))
    wider = load_config("qa", overrides=["model.block_size=512"])
    with pytest.raises(MixtureError, match="at least two"):
        Mixture([model(1)])
    with pytest.raises(MixtureError, match="b is a chat save and a a qa save; mix saves of one task"):
        check_mixable([tok, tok], [qa, chat], ["a", "b"])
    with pytest.raises(MixtureError, match="a is a reversal save: it reads its whole input at once and answers alone"):
        check_mixable([tok, tok], [rev, rev], ["a", "b"])
    with pytest.raises(MixtureError, match="b was trained on other characters than a"):
        check_mixable([tok, CharTokenizer.from_text("abcdefghik\n")], [qa, qa], ["a", "b"])
    with pytest.raises(MixtureError, match="b reads 512 characters at once and a 128"):
        check_mixable([tok, tok], [qa, wider], ["a", "b"])
    check_mixable([tok, tok, tok], [qa, qa, qa], ["a", "b", "c"])


def qa_save(name, seed):
    """A 3-step qa save on a corpus of 24 short pairs (its full evaluation takes seconds, the project's minutes)."""
    corpus = os.path.join(os.path.dirname(os.environ["ATTNLAB_SAVES"]), "pairs.txt")  # beside saves/
    with open(corpus, "w") as fh:
        fh.write("".join(f"Q: What is {i} plus 1?\nA: {i} plus 1 is {i + 1}.\n\n" for i in range(24)))
    tr = Trainer(load_config("qa", overrides=TINY + ["train.max_steps=3", f"train.seed={seed}", f"data.corpus={corpus}",
                                                     "data.val_fraction=0.25", "data.level_weights="]))
    for _ in range(3):
        tr.step()
    tr.save(name, "last")


def test_eval_with_other_saves_scores_them_together(capsys, saves):
    qa_save("a", 1)
    qa_save("b", 2)
    flags = ["eval", "a", "--tag", "last", "--json"]
    assert main(flags) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(flags + ["--with", "a"]) == 0  # with itself: the same answers, the same losses
    itself = json.loads(capsys.readouterr().out)
    assert itself["mixed"] == ["a:last", "a:last"] and "mixed" not in alone
    assert itself["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-5)
    assert itself["answer_exact"] == alone["answer_exact"]
    assert main(["eval", "b", "--tag", "last", "--json"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert main(flags + ["--with", "b:last"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["mixed"] == ["a:last", "b:last"]
    assert both["val_loss"] <= (alone["val_loss"] + other["val_loss"]) / 2 + 1e-6
    assert main(["eval", "a", "--tag", "last", "--with", "b"]) == 0
    assert "answered by 2 saves together (a:last, b:last)" in capsys.readouterr().out


def test_with_refuses_what_cannot_mix(capsys, saves):
    qa_save("a", 1)
    Trainer(load_config("reversal", overrides=["train.max_steps=1"])).save("r", "last")
    cases = [(["--with", "nosuch"], "--with nosuch: no saved run named 'nosuch'"),
             (["--with", "a:"], "give a save's name, or NAME:TAG"),
             (["--with", "a:best"], "--with a:best:"),
             (["--with", "r"], "--with: r:last is a reversal save and a:last a qa save; mix saves of one task")]
    for extra, msg in cases:
        assert main(["eval", "a", "--tag", "last"] + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
    assert main(["eval", "r", "--tag", "last", "--with", "r"]) == 2
    assert "reads its whole input at once and answers alone" in capsys.readouterr().err


def test_chat_with_other_saves_says_who_answers(capsys, saves, monkeypatch):
    qa_save("a", 1)
    qa_save("b", 2)
    lines = iter(["What is 2 plus 2?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "a", "--tag", "last", "--with", "b", "--temperature", "0", "--max-new", "5"]) == 0
    out = capsys.readouterr().out
    assert "2 saves answer together: a:last, b:last" in out and "bot>" in out


def test_sample_with_other_saves_writes_together(capsys, saves):
    qa_save("a", 1)
    qa_save("b", 2)
    flags = ["sample", "a", "--tag", "last", "--prompt", "Q: What is 2 plus 2?", "--temperature", "0", "--max-new", "40"]
    assert main(flags) == 0
    alone = capsys.readouterr()
    assert main(flags + ["--with", "a"]) == 0  # a save with itself writes what it writes alone
    itself = capsys.readouterr()
    assert itself.out == alone.out and len(alone.out) > 1
    assert "2 saves write together: a:last, a:last" in itself.err and "together" not in alone.err
    assert main(flags + ["--with", "b", "--show-probs"]) == 0
    assert "2 saves write together: a:last, b:last" in capsys.readouterr().err


async def test_the_saves_tab_chats_with_the_marked_saves_together(saves):
    from tests.test_tui_app import record_notes, wait_for
    from tui.app import AttnLab
    from tui.screens.chat import ChatView
    qa_save("a", 1)
    qa_save("b", 2)
    Trainer(load_config("reversal", overrides=["train.max_steps=1"])).save("r", "last")
    app = AttnLab()
    notes = record_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        pane = app.query_one("#saves-pane")
        await wait_for(pilot, lambda: len(pane.runs) == 3, what="the saves list")

        async def mark(*names):
            for name in names:
                pane.query_one("DataTable").move_cursor(row=[r.name for r in pane.runs].index(name))
                await pilot.press("m")
                await wait_for(pilot, lambda: name in pane.marked, what=f"{name} marked")

        await mark("a")
        await pilot.press("x")  # one marked save is not a mixture
        assert "mark at least two saves with m to chat with them together (marked: 1)" in notes[-1][0]
        await mark("r")
        await pilot.press("x")
        await wait_for(pilot, lambda: notes[-1][1] == "error", what="the refusal")
        assert "cannot chat with them together: r (last) is a reversal save and a (last) a qa save" in notes[-1][0]
        await pilot.press("m")  # unmark r (the cursor is on it)
        await mark("b")
        await pilot.press("x")
        chat = app.query_one(ChatView)
        await wait_for(pilot, lambda: chat.source is not None, what="the saves loaded together")
        assert app.query_one("#tabs").active == "chat"
        assert chat.source.label == "chatting with 2 saves together: a (last, step 3), b (last, step 3)"
        assert type(chat.source.get_model()).__name__ == "Mixture" and chat.source.members == ("a", "b")
        bar = app.query_one("TimelineBar")  # the attention shown is the first save's, and says so
        await wait_for(pilot, lambda: bar.source == "save a (last), first of 2 chatting", what="the note")
        chat.ask("What is 2 plus 2?")
        await wait_for(pilot, lambda: chat.history, what="a reply")
        header = chat.export_header()
        assert "- save: a + b" in header and "- tag: last + last" in header and "- step: 3 + 3" in header
        app.forget_run("b")  # a save answering was deleted: its chat goes, as for one save
        assert chat.source is None
