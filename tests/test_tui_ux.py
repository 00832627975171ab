"""The dashboard as a person uses it (issue 12): focus, Setup vs a paused run, continuing a finished run,
a smoothed ETA, prompts as trained, the small things, and runs compared side by side."""

from __future__ import annotations

import json

from textual import events
from textual.widgets import DataTable, Input, TabbedContent

from core.checkpoint import list_runs
from core.config import load_config
from core.metrics_log import FILENAME
from core.tasks.lm import build_prompt, chat_prompt
from core.trainer import Trainer
from tui.app import AttnLab
from tui.screens.chat import ChatSource, ChatView
from tui.screens.compare import CompareView
from tui.screens.modals import PALETTE, ConfirmScreen
from tui.screens.saves import SavesPane
from tui.screens.setup import SetupPane, input_id
from tui.widgets import LossPlot, StatsPanel
from tui.widgets.lossplot import nice_ticks

from tests.test_tui_app import wait_for

SIZE = (120, 40)
QUICK_REV = {"train.max_steps": "30", "train.eval_interval": "10"}


def tab(app):
    return app.query_one(TabbedContent).active


def set_hp(app, key, value):
    app.query_one("#" + input_id(key), Input).value = str(value)


def hint(app):
    return str(app.query_one("#setup-hint").render())


# -- 1. focus
async def test_escape_leaves_a_text_field_and_digits_switch_tabs_again():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        chat = app.query_one(ChatView)
        assert tab(app) == "chat" and app.focused is chat.pane.input
        await pilot.press("h", "i", "2")
        assert chat.pane.input.value == "hi2" and tab(app) == "chat"  # digits are text while typing
        bound = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled and b.binding.show}
        assert "leave_field" in bound  # the footer says how to get out
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
        await pilot.press("2")
        assert tab(app) == "train"


async def test_function_keys_switch_tabs_from_inside_a_field():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one("#" + input_id("model.n_head"), Input).focus()
        await pilot.pause()
        await pilot.press("f4")
        await pilot.pause()
        assert tab(app) == "chat"
        await pilot.press("f1")
        await pilot.pause()
        assert tab(app) == "setup"
        assert app.query_one("#" + input_id("model.n_head"), Input).value == "2"  # nothing typed into it


def burst(app, keys):
    """Keys as a terminal delivers them on a loaded machine: queued back to back, none waited for."""
    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)


def focus_in_tab(app):
    return app.focused is not None and tab(app) in {n.id for n in app.focused.ancestors_with_self}


async def test_keys_back_to_back_leave_focus_in_the_tab_shown():
    # keys act in the order they came, as if typed slowly, and focus is in the tab shown: the next q
    # quits instead of being typed into a chat field nobody sees
    cases = [(["4", "f2"], "train", ""), (["4", "f5", "4", "f2"], "train", ""), (["4", "f5", "4", "5"], "chat", "5"),  # 5 lands in the chat field
             (["f4", "f5", "f2", "f4", "f1"], "setup", ""),
             (["f4", "2"], "chat", "2")]  # as if typed slowly: F4 focuses the chat field, 2 is text there
    for keys, shown, typed in cases:
        app = AttnLab()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            burst(app, keys)
            await pilot.pause(0.3)
            assert (tab(app), focus_in_tab(app)) == (shown, True), keys
            await pilot.pause(0.3)
            assert (tab(app), focus_in_tab(app)) == (shown, True), keys  # and it stays so
            assert app.query_one(ChatView).pane.input.value == typed, keys


async def test_editing_keys_back_to_back_act_in_the_order_typed():
    # Textual's Input runs backspace and arrows after characters that came later (its issue #6605):
    # a, b, backspace, c gave "ab". Every text field of the app edits in key order.
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for tab_key, field in (("f4", lambda: app.query_one(ChatView).pane.input), ("f3", lambda: app.query_one("#probe-input"))):
            await pilot.press(tab_key)
            await pilot.pause()
            field().focus()
            field().value = ""
            await pilot.pause()
            burst(app, ["a", "b", "backspace", "c", "left", "d", "end", "e"])
            await pilot.pause(0.3)
            assert field().value == "adce", tab_key


async def test_a_click_on_a_tab_shows_it_and_focuses_its_pane():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for name, widget in (("chat", app.query_one(ChatView).pane.input), ("saves", app.query_one("#runs-table"))):
            await pilot.click(f"#--content-tab-{name}")
            await wait_for(pilot, lambda: tab(app) == name and app.focused is widget, timeout=5, what=f"{name} shown")


async def test_digits_back_to_back_end_on_the_last_one():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("escape")  # out of the task picker's list: digits switch tabs
        burst(app, ["2", "3", "5", "2", "3"])
        await pilot.pause(0.3)
        assert tab(app) == "attention" and app.focused is app.query_one("#attn-map")


# -- 2. settings edited while a run is paused
async def test_setup_says_what_s_does_after_edits_while_paused():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        set_hp(app, "train.max_steps", 100000)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.trainer and app.trainer.step_count > 2, what="training")
        await pilot.press("p")
        await wait_for(pilot, lambda: app.trainer.is_paused, what="pause")
        first = app.trainer
        app.action_tab("setup")
        set_hp(app, "model.n_head", 4)
        await pilot.pause()
        assert "settings changed" in hint(app) and "resumes the paused run" in hint(app) and "unchanged" in hint(app)
        app.action_start()
        await pilot.pause()
        assert app.trainer is first and not first.is_paused  # resumed, unchanged, as the hint said
        app.action_stop()
        await wait_for(pilot, lambda: not app.training, what="stop")
        await pilot.pause()
        assert "s starts a new run with them" in hint(app)


def test_a_longer_reversal_probe_continues_the_word_instead_of_repeating_it():
    tr = Trainer(load_config("reversal", overrides=["data.seq_len=8"]))
    assert "".join(tr.attention_probe("PYTHON")["labels"]) == "PYTHONAT"


# -- 3. s after a finished run continues it
async def test_s_after_a_finished_run_continues_the_same_run(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for k, v in QUICK_REV.items():
            set_hp(app, k, v)
        set_hp(app, "run.name" if False else "train.lr", "0.02")
        app.query_one("#run-name", Input).value = "once"
        app.query_one("#task-picker").focus()
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.training and app.trainer.step_count == 30, what="the run to end")
        await pilot.pause()
        assert "s continues once for 30 more steps" in str(app.query_one("#train-status").render())
        first = app.trainer
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.training and app.trainer.step_count == 60, what="the continuation")
        assert app.trainer is first and app.run_name == "once"
        assert [r.name for r in list_runs()] == ["once"]  # no new save folder


# -- 4. smoothed ETA
async def test_ms_per_step_and_eta_are_smoothed():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        from tui import messages as msg
        evs = [{"step": i, "max_steps": 5000, "loss": 1.0, "tokens_per_s": 1.0, "grad_norm": 1.0, "epoch": None,
                "ms": 239.0, "elapsed_s": i * 0.239, "lr": 1e-3} for i in range(1, 101)]
        evs[-1]["ms"] = 658.0
        app.on_train_steps(msg.TrainSteps(evs))
        stats = app.query_one(StatsPanel).stats
        assert stats["ms_per_step"] < 260 and 1190 < stats["eta_s"] < 1280


# -- 7. Q&A chat: prompts as the model was trained on
def test_chat_prompts_are_the_context_each_task_trained_on():
    hist = [("Hi?", "Hello."), ("What is 2 plus 2?", "4.")]
    assert chat_prompt("qa", hist, "Bye?", 200) == "Q: Bye?\nA:"  # one pair per training conversation
    assert chat_prompt("dialogue", hist, "Bye?", 200) == "Q: Hi?\nA: Hello.\nQ: What is 2 plus 2?\nA: 4.\nQ: Bye?\nA:"
    p = build_prompt(hist, "Bye?", 200, gap="\n")
    assert p == "Q: Hi?\nA: Hello.\n\nQ: What is 2 plus 2?\nA: 4.\n\nQ: Bye?\nA:"


def test_history_exact_measures_each_prompt_style():
    tr = Trainer(load_config("qa", overrides=["model.n_layer=1", "model.n_embd=32", "model.n_head=2"]))
    r = tr.task.history_exact(tr.model, turns=(0, 2), how="chat", limit=3)
    assert set(r) == {0, 2} and r[0] == r[2]  # the same prompt whatever came before
    joined = tr.task.history_exact(tr.model, turns=(0, 2), how="joined", limit=3)
    assert set(joined) == {0, 2} and all(0.0 <= v <= 1.0 for v in joined.values())


async def test_chat_sends_a_qa_model_the_prompt_it_was_trained_on(monkeypatch):
    seen = []
    monkeypatch.setattr("tui.screens.chat.chat_job", lambda gm, tok, prompt, *a: seen.append(prompt))
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        tr = Trainer(load_config("qa", overrides=["model.n_layer=1", "model.n_embd=32", "model.n_head=2"]))
        chat = app.query_one(ChatView)
        chat.set_source(ChatSource(tr.model.snapshot, tr.task.tokenizer, 128, None, "x", "qa"))
        chat.history = [("Hi?", "Hello.")]
        chat.ask("Bye?")
        await pilot.pause()
        assert seen == ["Q: Bye?\nA:"]
        assert "asked on its own" in str(chat.query_one("#chat-source").render())


# -- 8. the smaller things
def test_step_ticks_are_whole_numbers():
    ticks = nice_ticks(1, 167)
    assert ticks and all(float(t).is_integer() for t in ticks) and len(ticks) <= 6
    assert nice_ticks(3, 3) == [3]


async def test_plot_leaves_room_for_its_legend_and_draws_val_points():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        plot = app.query_one(LossPlot)
        for s in range(1, 101):
            plot.add_point("train", s, s / 10, 4.0 - s / 50)
        plot.add_point("val", 50, 5.0, 3.0)
        plot.add_point("val", 100, 10.0, 2.1)
        plot.redraw()
        lo, top = plot._ylim()
        assert top > 4.0 + 0.05 * 2.0  # headroom over the highest point for the legend rows
        val_dots = [line for line in plot._lines if line[5] == "scatter"]
        assert len(val_dots) == 1 and val_dots[0][0] == [50.0, 100.0]  # one dot per evaluation


async def test_sampling_settings_and_source_are_visible_at_80x24():
    app = AttnLab()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        for wid in ("#chat-source", "#sample-temperature", "#sample-seed"):
            w = app.query_one(wid)
            assert w.region.area > 0 and app.screen.region.contains_region(w.region), wid
        # a label longer than a row wraps onto a second one, not cut ("... or load")
        chat = app.query_one(ChatView)
        chat.cannot_chat("reversal")
        await pilot.pause()
        source = app.query_one("#chat-source")
        seed = app.query_one("#sample-seed")
        assert source.region.height == 2 and seed.region.y >= source.region.bottom
        assert app.screen.region.contains_region(seed.region)


async def test_a_loaded_reversal_save_says_it_does_not_chat(saves):
    Trainer(load_config("reversal", overrides=["train.max_steps=5"])).save("rev", "last")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.load_for_chat("rev", "last")
        await wait_for(pilot, lambda: tab(app) == "attention", what="the attention replay")
        chat = app.query_one(ChatView)
        assert chat.source is None
        assert str(chat.query_one("#chat-source").render()).startswith("the reversal model does not chat; train a Q&A")


async def test_reversal_setup_has_no_corpus_field():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.query_one(SetupPane).task_name == "reversal"
        assert not app.query_one("#row-corpus").display
        app.query("RadioButton")[1].value = True
        await pilot.pause()
        assert app.query_one("#row-corpus").display


async def test_palette_offers_last_reply():
    action = next(a for title, _, a in PALETTE if "last chat reply" in title.lower())
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one(ChatView).history.append(("Hi?", "Hello."))
        await app.run_action(action)
        await pilot.pause()
        assert tab(app) == "attention"
        from tui.screens.attention import AttentionPane
        assert app.query_one(AttentionPane).probe_text == "Q: Hi?\nA: Hello."


async def test_deleting_the_run_in_training_is_refused_and_a_finished_one_is_let_go(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        set_hp(app, "train.max_steps", 100000)
        app.query_one("#run-name", Input).value = "live"
        app.query_one("#task-picker").focus()
        await pilot.press("s")
        await wait_for(pilot, lambda: app.trainer and app.trainer.step_count > 2, what="training")
        await pilot.press("w")
        await wait_for(pilot, lambda: [r.name for r in list_runs()] == ["live"], what="a save")
        app.action_tab("saves")
        await pilot.pause()
        saves_pane = app.query_one(SavesPane)
        saves_pane.action_refresh()
        saves_pane.action_delete()
        await pilot.pause()
        assert not isinstance(app.screen, type(None)) and [r.name for r in list_runs()] == ["live"]
        assert app.screen is app.screen_stack[0]  # refused up front: no confirmation asked
        app.action_stop()
        await wait_for(pilot, lambda: not app.training, what="stop")
        saves_pane.action_delete()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not list_runs(), what="the delete")
        assert app.trainer is None and app.query_one(ChatView).source is None
        assert "starts a new run" in hint(app)


async def test_exported_transcript_records_save_step_and_sampling(saves):
    tr = Trainer(load_config("qa", overrides=["model.n_layer=1", "model.n_embd=32", "model.n_head=2"]))
    tr.step()
    tr.save("tq", "best")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.load_for_chat("tq", "best")
        await pilot.pause()
        chat = app.query_one(ChatView)
        chat.pane.add_user("hi")
        chat.action_export()
        text = next((saves / "tq").glob("chat-*.md")).read_text()
        assert "- save: tq" in text and "- tag: best" in text and "- step: 1" in text
        assert "temperature 0.0 (greedy)" in text and "top_k" in text and "seed 0" in text
        app.query_one("#sample-temperature").value = "0.8"
        chat.action_export()
        await pilot.pause()
        assert any("temperature 0.8, top_k" in p.read_text() for p in (saves / "tq").glob("chat-*.md"))


# -- compare runs
def write_log(saves, name, lr, losses, evals, t0=1000.0, first=1):
    d = saves / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"task": "reversal", "model": {"n_head": 2}, "train": {"lr": lr, "max_steps": 100}}
    lines = [{"event": "start", "step": 0, "time": t0, "task": "reversal", "metric": "accuracy", "config": cfg}]
    lines = lines if first == 1 else []  # a continuation appends to the same session
    lines += [{"event": "step", "step": i + first, "loss": v, "elapsed_s": (i + first) * 0.1, "time": t0 + i + first}
              for i, v in enumerate(losses)]
    lines += [{"event": "eval", "step": s, "val_loss": v, "accuracy": a, "metric": "accuracy",
               "time": t0 + s} for s, v, a in evals]
    with open(d / FILENAME, "a") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in lines))


def two_logged_runs(saves):
    for name in ("alpha", "beta"):  # a save each, so the Saves tab lists them
        Trainer(load_config("reversal", overrides=["train.max_steps=5"])).save(name, "last")
    write_log(saves, "alpha", 0.02, [3.3 - 0.03 * i for i in range(100)], [(50, 1.9, 0.4), (100, 0.4, 1.0)])
    write_log(saves, "beta", 0.01, [3.3 - 0.02 * i for i in range(80)], [(50, 2.4, 0.1)])


async def test_saves_marks_runs_and_train_overlays_them_live(saves):
    two_logged_runs(saves)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        pane = app.query_one(SavesPane)
        await wait_for(pilot, lambda: len(pane.runs) == 2, what="the runs")
        await pilot.press("m", "down", "m", "v")
        assert tab(app) == "train"
        plot, view = app.query_one(LossPlot), app.query_one(CompareView)
        await wait_for(pilot, lambda: len(plot.overlay) == 2, what="the overlay")
        assert {name for name, _, _ in plot.overlay} == {"alpha", "beta"}
        labels = [line[2] for line in plot._lines if line[2]]
        assert sorted(labels) == ["alpha", "beta"]  # the legend names the runs
        table = view.query_one(DataTable)
        header = [str(c.label) for c in table.columns.values()]
        assert "train.lr" in header and "model.n_head" not in header and "best accuracy" in header
        assert table.row_count == 2
        # live: the run goes on training elsewhere; its new lines appear without any key press
        write_log(saves, "beta", 0.01, [1.0] * 10, [(90, 0.9, 0.8)], first=81)
        await wait_for(pilot, lambda: any(name == "beta" and len(train) == 90 for name, train, _ in plot.overlay),
                       what="the live update")
        await pilot.press("x")
        assert plot.x_axis == "time"
        await pilot.press("escape")
        assert plot.overlay == [] and not view.display


async def test_compare_needs_two_marked_runs(saves):
    two_logged_runs(saves)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: len(app.query_one(SavesPane).runs) == 2, what="runs")
        await pilot.press("m", "v")
        assert tab(app) == "saves" and not app.query_one(CompareView).active
