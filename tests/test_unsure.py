"""sample.unsure_below: a reply the model is unsure how to begin becomes "I don't know that yet.", in
`attnlab eval`, `attnlab chat` and the Chat tab (core.sample.Unsure; the stream itself: test_sample.py);
sample.unsure_reply_below: so does one it is unsure of anywhere (a made-up value)."""

import json

import pytest

from core.config import ConfigError, load_config
from core.tasks.lm import DONT_KNOW, unsure_for
from core.trainer import Trainer
from tests.test_sample import scripted
from tests.test_tui_app import wait_for
from tui.app import AttnLab
from tui.cli import main
from tui.screens.chat import ChatSource, ChatView
from tui.widgets.nextchar import NextCharView

TINY = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=64"]


def test_the_setting_is_a_probability_and_off_by_default():
    for key in ("sample.unsure_below", "sample.unsure_reply_below"):
        assert getattr(load_config("qa").sample, key.split(".")[1]) == 0.0
        for bad in ("1", "-0.1", "nan"):
            with pytest.raises(ConfigError, match=key):
                load_config("chat", overrides=[f"{key}={bad}"])


def test_only_a_question_can_be_answered_dont_know():
    assert unsure_for("Who wrote Hamlet? ", 0.3).below == 0.3
    assert unsure_for("Who wrote Hamlet?", 0.0) is None  # off
    assert unsure_for("I'm called Bruno.", 0.3) is None  # a statement is acknowledged, however unsurely
    u = unsure_for("What's my name?", 0.0, 0.2)  # the whole reply judged, the opening not
    assert (u.below, u.anywhere) == (0.0, 0.2)
    assert unsure_for("I'm called Bruno.", 0.3, 0.2) is None


def test_a_task_answers_dont_know_when_unsure_and_its_own_guess_when_not():
    tr = Trainer(load_config("qa", overrides=TINY + ["sample.unsure_below=0.99"]))  # untrained: never 99% sure
    assert tr.task.answer(tr.model, [], "What is 2 plus 2?") == DONT_KNOW
    assert tr.task.answer(tr.model, [], "I am called Bruno.") != DONT_KNOW
    tr = Trainer(load_config("qa", overrides=TINY))
    assert tr.task.answer(tr.model, [], "What is 2 plus 2?") != DONT_KNOW


def test_eval_takes_the_setting_from_the_flag_over_the_save(capsys, saves, short_answers):
    Trainer(load_config("chat", overrides=TINY + ["train.max_steps=2"])).save("c", "last")
    assert main(["eval", "c", "--tag", "last", "--json", "--unsure-below", "0.99"]) == 0
    ev = json.loads(capsys.readouterr().out)
    # an untrained model is never that sure: every question gets don't-know, out of domain and in it
    # (in domain but for the requests that end without "?": "Remind me of my favourite food.")
    assert ev["dont_know_ood"] == 1.0 and ev["dont_know_false"] > 0.9
    assert ev["heldout_family"]["dont_know_ood"] == 1.0 and ev["unsure_below"] == 0.99
    assert main(["eval", "c", "--tag", "last"]) == 0  # the save's own 0.4, said below the figures
    out = capsys.readouterr().out
    assert "dont_know_ood 1.0000" in out and "began at under 40% was answered" in out
    assert "\nrecalled least (val): \"" in out and "\nrecalled least (held-out family): \"" in out
    assert "\nrecall by layout (val): one fact in the chat " in out
    assert "\nrecall by layout (held-out family): one fact in the chat " in out
    assert main(["eval", "c", "--tag", "last", "--unsure-below", "1"]) == 2
    assert "--unsure-below 1.0: use a probability in [0, 1)" in capsys.readouterr().err
    assert main(["eval", "c", "--tag", "last", "--unsure-reply-below", "nan"]) == 2
    assert "--unsure-reply-below nan: use a probability in [0, 1)" in capsys.readouterr().err


def test_eval_counts_a_made_up_value_and_the_reply_rule(capsys, saves, short_answers):
    Trainer(load_config("chat", overrides=TINY + ["train.max_steps=2"])).save("c", "last")
    flags = ["eval", "c", "--tag", "last", "--json", "--unsure-below", "0"]
    assert main(flags + ["--unsure-reply-below", "0"]) == 0
    ev = json.loads(capsys.readouterr().out)
    # an untrained model answers a question about an untold fact with letters, never with don't-know
    assert ev["dont_know_unstated"] == 0.0 and ev["heldout_family"]["dont_know_unstated"] == 0.0
    assert "unsure_reply_below" not in ev
    assert main(flags + ["--unsure-reply-below", "0.99"]) == 0  # never 99% sure of every character
    ev = json.loads(capsys.readouterr().out)
    assert ev["dont_know_unstated"] == 1.0 and ev["dont_know_ood"] == 1.0 and ev["unsure_reply_below"] == 0.99
    assert main(["eval", "c", "--tag", "last", "--unsure-reply-below", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "dont_know_unstated 1.0000" in out and "anywhere under 50% sure of was answered" in out


def test_chat_in_the_terminal_says_dont_know_when_unsure(capsys, saves, monkeypatch):
    Trainer(load_config("chat", overrides=TINY + ["train.max_steps=2"])).save("c", "last")
    assert load_config("chat").sample.unsure_below == 0.4  # the preset's, kept in the save
    assert load_config("chat").sample.unsure_reply_below == 0.1
    off = ["--unsure-below", "0", "--unsure-reply-below", "0"]
    for flag, dont_know in (([], True), (off, False), (["--unsure-below", "0.99", "--unsure-reply-below", "0"], True)):
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO("Who wrote Hamlet?\n"))
        assert main(["chat", "c", "--tag", "last", "--temperature", "0", "--max-new", "30", *flag]) == 0
        out = capsys.readouterr().out  # an untrained model is never 40% sure of a character
        reply = out.split("bot>", 1)[1].split("\n")[0]
        assert (reply.split("  (")[0].strip() == DONT_KNOW) == dont_know, (flag, out)
        assert ("(unsure how to answer: its likeliest start" in reply) == dont_know
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("What is my name?\n"))
    assert main(["chat", "c", "--tag", "last", "--temperature", "0", "--max-new", "30", "--unsure-below", "0",
                 "--unsure-reply-below", "0.9"]) == 0
    reply = capsys.readouterr().out.split("bot>", 1)[1].split("\n")[0]
    assert reply.split("  (")[0].strip() == DONT_KNOW and "(unsure of its answer: its likeliest reply" in reply
    assert main(["chat", "c", "--unsure-reply-below", "2"]) == 2
    assert "--unsure-reply-below 2.0: use a probability in [0, 1)" in capsys.readouterr().err


def test_the_dont_know_reply_is_the_corpora_own():
    from tests.test_corpora import _load_generator
    assert _load_generator().DONT_KNOW == DONT_KNOW


async def test_the_chat_tab_replaces_an_unsure_start_and_shows_the_opening():
    model, tok, _ = scripted(" September comes after May.\n", [1.0, 0.17, 0.8, 0.9] + [0.99] * 24)
    app = AttnLab()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat = app.query_one(ChatView)
        chat.set_source(ChatSource(lambda: model, tok, 64, None, "scripted", "dialogue", unsure_below=0.3))
        chat.ask("x?")  # the prompt "Q: x?\nA:", as the stand-in model expects
        await wait_for(pilot, lambda: chat.history, what="a reply")
        assert chat.history == [("x?", DONT_KNOW)]
        turn = chat.pane.query("ChatTurn").last()
        assert turn.text == f" {DONT_KNOW}" and "unsure how to answer: its likeliest start 'Sep' was 17% sure" in turn.note
        view = app.query_one(NextCharView)
        assert view.chars == list(" Sep") and view.candidates[1][0] == ("S", pytest.approx(0.17))
        assert view.cursor == 1  # on the character it was least sure of
        # the same model with the setting off answers as it began
        chat.set_source(ChatSource(lambda: model, tok, 64, None, "scripted", "dialogue"))
        chat.action_new_chat()
        chat.ask("x?")
        await wait_for(pilot, lambda: chat.history, what="a second reply")
        assert chat.history == [("x?", "September comes after May.")]


async def test_the_chat_tab_replaces_a_made_up_value_and_shows_the_whole_reply():
    sure = [1.0] + [0.99] * 13 + [0.08, 0.3, 0.4, 0.5, 0.9, 0.9]
    model, tok, _ = scripted(" Your name is Tsen.\n", sure)
    app = AttnLab()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat = app.query_one(ChatView)
        chat.set_source(ChatSource(lambda: model, tok, 64, None, "scripted", "dialogue", unsure_below=0.3,
                                   unsure_reply_below=0.2))
        chat.ask("x?")
        await wait_for(pilot, lambda: chat.history, what="a reply")
        assert chat.history == [("x?", DONT_KNOW)]
        turn = chat.pane.query("ChatTurn").last()
        assert turn.text == f" {DONT_KNOW}"
        assert "unsure of its answer: its likeliest reply 'Your name is Tsen.' was 8% sure at worst" in turn.note
        view = app.query_one(NextCharView)
        assert view.chars == list(" Your name is Tsen.") and view.cursor == 14  # on the made-up "T"
        assert "- unsure reply below: 0.2" in chat.export_header()
        # an exported transcript keeps the reply's note, so the don't-know says why there too
        assert f"**model:**  {DONT_KNOW} *[unsure of its answer: its likeliest reply 'Your name is Tsen.'" in \
            chat.pane.to_markdown()
        # off, the model's own reply, streamed as it was written
        chat.set_source(ChatSource(lambda: model, tok, 64, None, "scripted", "dialogue", unsure_below=0.3))
        chat.action_new_chat()
        chat.ask("x?")
        await wait_for(pilot, lambda: chat.history, what="a second reply")
        assert chat.history == [("x?", "Your name is Tsen.")]
        assert "unsure reply below" not in chat.export_header()
