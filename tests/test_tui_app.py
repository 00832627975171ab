"""The dashboard driven by Pilot: train reversal to >= 95%, chat with a tiny model, saves, errors, 80x24.

Every test points ATTNLAB_SAVES at a temporary folder, so nothing touches the repository's saves/.
"""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input, RadioButton

from core.checkpoint import list_runs, load_checkpoint
from core.config import load_config
from core.trainer import Trainer
from tui.app import AttnLab
from tui.screens.chat import ChatView
from tui.screens.modals import PALETTE, TABS, ConfirmScreen, HelpScreen
from tui.screens.setup import SetupPane, input_id
from tui.widgets import AttentionMap, LossPlot, LRSpark, StatsPanel

SIZE = (120, 40)
TINY_QA = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=128",
           "train.batch_size=8", "train.eval_interval=1000", "train.max_steps=5000", "model.dropout=0.0"]


async def wait_for(pilot, cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def record_notes(app):
    """Collect (message, severity) of every notification."""
    notes = []
    original = app.notify

    def notify(message, *args, **kwargs):
        notes.append((str(message), kwargs.get("severity", "information")))
        return original(message, *args, **kwargs)
    app.notify = notify
    return notes


def set_hp(app, key, value):
    app.query_one("#" + input_id(key), Input).value = str(value)


async def test_reversal_trains_live_and_reaches_95_percent(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        setup = app.query_one(SetupPane)
        assert setup.task_name == "reversal"  # the default: one key away from the attention proof
        await pilot.press("s")
        stats, plot = app.query_one(StatsPanel), app.query_one(LossPlot)
        await wait_for(pilot, lambda: len(plot.history["train"]) > 0 and stats.stats.get("step", 0) > 0,
                       what="loss points")
        await wait_for(pilot, lambda: (stats.stats.get("metric_value") or 0) >= 0.95, what="95% accuracy")
        assert stats.stats["metric_name"] == "accuracy"
        assert len(plot.history["val"]) > 0 and app.query_one(LRSpark).values
        attn = app.query_one(AttentionMap)
        await wait_for(pilot, lambda: attn.has_data, what="attention data")
        assert attn.shape[-2:] == (6, 6)
        # the Chat tab says why this model does not chat, not "no model yet"
        chat = app.query_one(ChatView)
        assert chat.source is None
        assert "the reversal model does not chat; train a Q&A, dialogue or chat model" in str(
            chat.query_one("#chat-source").render())
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="the worker to stop")
        await pilot.pause(0.1)
        assert "stopped" in str(app.query_one("#train-status").render())
        # after training, the map shows any typed word
        probe = app.query_one("#probe-input", Input)
        probe.value = "zyxwvu"
        await probe.action_submit()
        await pilot.pause()
        assert attn.highlighted.row_label == "Z" and attn.view_matrix.shape == (6, 6)
    runs = list_runs()
    assert len(runs) == 1 and {"best", "last"} <= set(runs[0].tags)
    assert runs[0].best_metric[0] >= 0.95


async def test_bad_hyperparameters_show_inline_errors():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app)
        setup = app.query_one(SetupPane)
        set_hp(app, "model.n_embd", 30)
        set_hp(app, "model.n_head", 4)
        await pilot.pause()
        error = str(app.query_one("#setup-error").render())
        assert "not divisible" in error and "n_head" in error
        assert app.query_one("#" + input_id("model.n_embd")).has_class("-invalid")
        set_hp(app, "model.n_embd", "abc")
        await pilot.pause()
        assert "must be an integer" in str(app.query_one("#setup-error").render())
        app.query_one("#task-picker").focus()
        await pilot.press("s")
        await pilot.pause()
        assert app.trainer is None and not app.training
        assert any(sev == "error" and "fix the settings" in m for m, sev in notes)
        set_hp(app, "model.n_embd", 32)
        await pilot.pause()
        assert setup.error_text is None and "settings OK" in str(app.query_one("#setup-error").render())
        # a missing corpus for Q&A is reported inline, never a crash
        app.query(RadioButton)[1].value = True
        await pilot.pause()
        assert setup.task_name == "qa"
        app.query_one("#corpus-input", Input).value = "/no/such/corpus.txt"
        await pilot.pause()
        assert "no such file" in str(app.query_one("#setup-error").render())
        assert app.query_one("#corpus-input").has_class("-invalid")


async def test_worker_exception_is_a_notification_and_the_last_save_survives(saves, monkeypatch):
    original = Trainer.step
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] > 12:
            raise RuntimeError("injected fault")
        return original(self)
    monkeypatch.setattr(Trainer, "step", flaky)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app)
        await pilot.press("s")
        await wait_for(pilot, lambda: any(sev == "error" for _, sev in notes), what="error notification")
        msg = next(m for m, sev in notes if sev == "error")
        assert "training failed" in msg and "injected fault" in msg
        assert not app.training and app.is_running
        assert "failed" in str(app.query_one("#train-status").render())
        name = list_runs()[0].name
        ck = load_checkpoint(name, "best")  # the autosave of step 10 is intact
        assert ck.meta["step"] == 10
        monkeypatch.setattr(Trainer, "step", original)
        await pilot.press("s")  # the user can start again
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) > 5, what="a new run")
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="stop")


def save_tiny_qa(steps):
    """A tiny Q&A model trained `steps` steps and saved as tinyqa/best."""
    tr = Trainer(load_config("qa", overrides=TINY_QA))
    for _ in range(steps):
        tr.step()
    tr.save("tinyqa", "best")
    return tr


@pytest.fixture
def tiny_qa(saves):
    return save_tiny_qa(20)


async def start_training(app, pilot, task_index, settings):
    """Pick a task on the Setup tab, type the settings, press s, and wait for a few steps."""
    app.query(RadioButton)[task_index].value = True
    await pilot.pause()
    for key, value in settings:
        if app.query("#" + input_id(key)):
            set_hp(app, key, value)
    await pilot.pause()
    assert app.query_one(SetupPane).error_text is None
    app.query_one("#task-picker").focus()
    await pilot.press("s")
    await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) > 2, what="training")


async def test_chat_with_a_loaded_save_streams_a_reply(tiny_qa, saves, monkeypatch):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="the saves list")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.query_one(ChatView).source is not None, what="loaded model")
        chat = app.query_one(ChatView)
        app.query_one("#sample-max_new_tokens", Input).value = "30"
        assert app.query_one("#tabs").active == "chat"
        assert app.focused is chat.pane.input
        # replies start greedy, as `attnlab eval` answers: this tiny model's likeliest first character ends
        # the answer, and the pane says so instead of showing nothing
        temperature = app.query_one("#sample-temperature", Input)
        assert float(temperature.value) == 0
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: chat.history, what="a greedy reply")
        turn = list(chat.pane.query("ChatTurn"))[-1]
        assert chat.history[0][1] == "" and "empty reply" in turn.note, (chat.history, turn.note)
        await pilot.press("ctrl+l")
        temperature.value = "0.8"
        await pilot.press(*"what is a cat?", "enter")
        await wait_for(pilot, lambda: chat.history, what="a reply")
        roles = [r for r, _ in chat.pane.transcript()]
        assert roles == ["user", "model"]
        assert chat.history[0][0] == "what is a cat?" and chat.pane.transcript()[1][1].strip() == chat.history[0][1]
        assert chat.history[0][1]  # a non-empty reply was streamed in
        # characters the model never saw are reported, not a crash
        await pilot.press(*"h\u00e9\u20ac?", "enter")
        await wait_for(pilot, lambda: len(chat.history) == 2, what="second reply")
        assert any(r == "system" and "never seen" in t for r, t in chat.pane.transcript())
        # a message that cannot fit the context window is reported
        chat.ask("x" * 200)
        await pilot.pause()
        assert "context" in chat.pane.transcript()[-1][1]
        replies = [t for r, t in chat.pane.transcript() if r == "model"]
        # at temperature 0 ctrl+r would give the same reply, so it says so and keeps the reply
        temperature.value = "0"
        notes = []
        monkeypatch.setattr(app, "notify", lambda text, **kw: notes.append(text))
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert any("temperature 0 always gives the same reply" in n for n in notes), notes
        assert [t for r, t in chat.pane.transcript() if r == "model"] == replies and not chat.pane.busy
        temperature.value = "0.8"
        await pilot.press("ctrl+r")  # regenerate the last reply: it replaces the old one
        await wait_for(pilot, lambda: len(chat.history) == 2 and not chat.pane.busy, what="regenerated")
        after = [t for r, t in chat.pane.transcript() if r == "model"]
        assert len(after) == len(replies) and after[0] == replies[0]  # the first reply is untouched
        assert after[-1] == chat.history[-1][1] or after[-1].strip() == chat.history[-1][1]
        await pilot.press("ctrl+o")
        await pilot.pause()
        exported = list((saves / "tinyqa").glob("chat-*.md"))
        assert exported and "**you:** what is a cat?" in exported[0].read_text()
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert chat.pane.transcript() == [] and chat.history == []


async def test_chat_while_training_uses_snapshots(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await start_training(app, pilot, 1, [item.split("=") for item in TINY_QA])
        app.action_tab("chat")  # calls, not presses: Pilot waits for an idle CPU after each press
        chat = app.query_one(ChatView)
        app.query_one("#sample-max_new_tokens", Input).value = "20"
        chat.pane.input.value = "hi"
        await chat.pane.input.action_submit()
        await wait_for(pilot, lambda: chat.history, what="a reply while training")
        assert app.training, str(app.query_one("#train-status").render())  # training went on meanwhile
        # the label says what the weights it samples are doing
        label = lambda: str(chat.query_one("#chat-source").render())  # noqa: E731
        assert "(training; snapshots of its weights)" in label()
        assert "- tag: live (training; snapshots of its weights)" in chat.export_header()
        app.action_pause()
        await wait_for(pilot, lambda: "paused at step" in label(), what="the paused label")
        app.action_start()
        await wait_for(pilot, lambda: "(training;" in label(), what="the training label again")
        app.action_stop()
        await wait_for(pilot, lambda: not app.training, what="stop")
        await wait_for(pilot, lambda: "not training: stopped at step" in label(), what="the stopped label")
        assert "- tag: live (not training: stopped at step" in chat.export_header()  # an export says so too
        # a save loaded to chat keeps its own label, though it has the run's name
        app.load_for_chat(app.run_name, "last")
        await wait_for(pilot, lambda: "(last, step" in label(), what="the save's label")
        app.relabel_chat("paused at step 1")
        assert "(last, step" in label()


async def test_escape_stops_a_streaming_reply(tiny_qa, monkeypatch):
    def endless(model, tokenizer, prompt, cancel=None, topk=0, **kwargs):
        while not cancel():
            time.sleep(0.005)
            yield ("a", [("a", 1.0)] * topk) if topk else "a"
    monkeypatch.setattr("tui.worker.stream_text", endless)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.load_for_chat("tinyqa", "best")
        chat = app.query_one(ChatView)
        await wait_for(pilot, lambda: app.focused is chat.pane.input, what="chat input focus")
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: "aaa" in chat.pane.transcript()[-1][1], what="streamed characters")
        assert chat.pane.busy
        await pilot.press("escape")
        await wait_for(pilot, lambda: not chat.pane.busy, what="the reply to stop")
        assert chat.history and chat.question is None
        turn = list(chat.pane.query("ChatTurn"))[-1]
        assert turn.note == "stopped"


async def test_save_reload_and_resume(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) >= 8, what="steps")
        await pilot.press("p")
        await wait_for(pilot, lambda: "paused" in str(app.query_one("#train-status").render()), what="pause")
        step = app.trainer.step_count
        await pilot.press("n")  # single step while paused
        await wait_for(pilot, lambda: app.trainer.step_count == step + 1, what="one step")
        await pilot.press("w")
        await wait_for(pilot, lambda: list_runs() and "last" in list_runs()[0].tags, what="save")
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="stop")
        name, saved_step = app.run_name, app.trainer.step_count
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="saves list")
        assert app.query_one("#saves-pane").runs[0].name == name
        await pilot.press("r")
        await wait_for(pilot, lambda: app.trainer is not None and app.trainer.step_count > saved_step,
                       what="resumed training")
        assert app.run_name == name
        assert len(app.query_one(LossPlot).history["train"]) >= saved_step  # history replayed
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="stop")
        # delete with confirmation
        await pilot.press("5")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not list_runs(), what="delete")


async def test_quit_during_training_saves_last(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) >= 3, what="steps")
        started = time.monotonic()
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, timeout=5, what="exit")
        assert time.monotonic() - started < 3
    runs = list_runs()
    assert runs and "last" in runs[0].tags and runs[0].step >= 3


async def test_small_terminal_and_resize_mid_training():
    app = AttnLab()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) > 0, what="steps")
        assert app.screen.has_class("-narrow") and app.screen.has_class("-short")
        plot = app.query_one(LossPlot)
        assert plot.region.height >= 8 and plot.region.width >= 40
        assert app.query_one("#stats").region.height > 0
        assert not app.query_one("#train-controls").display or app.query_one("#train-controls").region.height == 0
        for tab in TABS:  # every view lays out at 80x24 (calls, not presses: training keeps the CPU busy)
            app.action_tab(tab)
            await pilot.pause()
            assert app.query_one(f"#{tab}-pane").region.height >= 15
            if tab == "chat":
                side = app.query_one("#chat-side")  # the sampling settings move above the chat, never hidden
                # (two rows of settings and the source label: one row, or two for a long one, as here
                # the reversal run's "does not chat; train a Q&A, dialogue or chat model, ...")
                label = app.query_one("#chat-source").region.height
                assert 1 <= label <= 2 and side.display and side.region.height == 3 + label
                assert side.region.width >= 70
        await pilot.resize_terminal(140, 45)
        app.action_tab("train")
        await pilot.pause(0.2)
        assert app.screen.has_class("-wide") and app.query_one("#train-controls").region.height == 3
        assert app.query_one(StatsPanel).stats["step"] > 0
        app.action_stop()
        await wait_for(pilot, lambda: not app.training, what="stop")


async def test_help_lists_every_key_and_palette_has_every_action():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        for key in ("s", "p", "n", "S", "w", "?", "ctrl+r", "ctrl+l", "ctrl+o", "escape", "[", ",", "m", "g", "e"):
            assert f"  {key} " in text, key
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title, _, _ in PALETTE:
            assert title in titles
        await app.run_action("tab('attention')")
        assert app.query_one("#tabs").active == "attention"


async def test_dialogue_with_rotary_positions_trains_draws_attention_and_chats(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await start_training(app, pilot, 2, (("model.n_layer", 1), ("model.n_head", 2), ("model.n_embd", 32),
                                             ("model.block_size", 128), ("train.batch_size", 4),
                                             ("train.eval_interval", 1000)))  # Dialogue: rope preset
        assert app.trainer.cfg.task == "dialogue" and app.trainer.cfg.model.pos == "rope"
        # the preset's loss counts answer characters alone, and the plot and stats say so
        assert app.trainer.cfg.data.answers_only
        assert app.query_one(LossPlot).plot_title == "loss on answers"
        assert {"loss (ans)", "val loss (ans)", "best val (ans)"} <= dict(app.query_one(StatsPanel).rows()).keys()
        attn = app.query_one(AttentionMap)
        await wait_for(pilot, lambda: attn.has_data, what="attention data")
        app.action_tab("chat")
        chat = app.query_one(ChatView)
        app.query_one("#sample-max_new_tokens", Input).value = "20"
        chat.pane.input.value = "My name is Zed."
        await chat.pane.input.action_submit()
        await wait_for(pilot, lambda: chat.history, what="a reply from the rotary model")
        app.action_stop()
        await wait_for(pilot, lambda: not app.training, what="stop")


async def test_saves_tab_switches_the_tag_to_load(saves, monkeypatch):
    tr = Trainer(load_config("qa", overrides=TINY_QA))
    tr.step()
    tr.save("twotags", "best")
    tr.step()
    tr.save("twotags", "last")
    calls = []
    monkeypatch.setattr(AttnLab, "load_for_chat", lambda self, name, tag: calls.append(("chat", name, tag)))
    monkeypatch.setattr(AttnLab, "resume_run", lambda self, name, tag: calls.append(("resume", name, tag)))
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        pane = app.query_one("#saves-pane")
        await wait_for(pilot, lambda: pane.runs, what="the saves list")
        await pilot.press("c", "r")  # the defaults: chat with best, resume from last
        await pilot.press("t")  # best -> the next tag
        await pilot.pause()
        assert "'last'" in str(app.query_one("#saves-status").render())
        await pilot.press("c", "t", "r")
        assert calls == [("chat", "twotags", "best"), ("resume", "twotags", "last"),
                         ("chat", "twotags", "last"), ("resume", "twotags", "best")]


async def test_resuming_a_run_taught_by_saves_says_so_and_a_missing_teacher_is_an_error(saves):
    """train.teachers: the Train tab says the training loss is against the teachers'; a teacher deleted
    since is refused with the fix, and the app goes on."""
    import shutil
    teacher = Trainer(load_config("qa", overrides=TINY_QA))
    teacher.step()
    teacher.save("t1", "best")
    time.sleep(0.05)  # the taught run is the newest, first in the Saves tab
    taught = Trainer(load_config("qa", overrides=TINY_QA + ["train.teachers=t1"]))
    taught.step()
    taught.save("taught", "last")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="saves list")
        assert app.query_one("#saves-pane").runs[0].name == "taught"
        await pilot.press("r")
        await wait_for(pilot, lambda: app.trainer is not None and app.trainer.step_count > 1, what="resumed training")
        assert len(app.trainer.teachers) == 1
        assert app.query_one(LossPlot).plot_title == "loss, training's vs 1 teacher"
        assert dict(app.query_one(StatsPanel).rows())["teachers"] == "1 save"
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="stop")
    shutil.rmtree(saves / "t1")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="saves list")
        await pilot.press("r")
        await wait_for(pilot, lambda: any("train.teachers: t1:best" in str(n.message) for n in app._notifications),
                       what="the error")
        assert app.trainer is None and app.is_running
