"""The Attention tab with the real engine: live timeline while training, the speed limit, a save's own
recording replayed, head ablation measured in a worker, and the chat's next-character view (Pilot).
"""

from __future__ import annotations

import io
import time

import numpy as np
from rich.console import Console
from core.config import load_config
from core.trainer import Trainer, load_model
from tui.app import AttnLab
from tui.screens.attention import AttentionPane
from tui.screens.chat import ChatView
from tui.screens.setup import SetupPane
from tui.widgets import AttentionMap, HeadScoreChart, LossPlot, StatsPanel, TimelineBar
from tui.widgets.nextchar import NextCharView

from test_tui_app import SIZE, TINY_QA, save_tiny_qa, wait_for


def save_reversal(name="rev"):
    """A reversal model trained (headless) until it is right, saved with its recording."""
    tr = Trainer(load_config("reversal"))
    tr.run(lambda ev: None, until=lambda ev: ev.get("accuracy", 0) >= 0.99)
    tr.save(name, "best")
    return tr


def screen_text(app) -> str:
    """The screen as plain text, line by line (what a terminal would show)."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def steps_done(app) -> int:
    return app.query_one(StatsPanel).stats.get("step", 0) or 0


async def test_live_timeline_scrubs_to_step_0_and_to_the_end(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.training, timeout=60, what="reversal to finish")
        app.action_tab("attention")
        pane, bar, attn = app.query_one(AttentionPane), app.query_one(TimelineBar), app.query_one(AttentionMap)
        await wait_for(pilot, lambda: len(pane.snaps) >= 10, what="recorded snapshots")
        assert bar.live and bar.step == pane.snaps[-1].step == app.trainer.step_count
        end_map = attn.view_matrix
        attn.focus()
        await pilot.press("home")
        assert bar.step == 0 and "step 0" in str(app.query_one("#attn-info").render())
        first = pane.snaps[0]
        np.testing.assert_allclose(attn.view_matrix, first.maps[0, 0].astype(np.float64))
        await pilot.press("end")
        np.testing.assert_allclose(attn.view_matrix, end_map)
        assert "accuracy" in str(app.query_one("#attn-info").render())


async def test_speed_limit_lowers_steps_per_second_and_marks_the_loss_plot(saves):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("L")  # unlimited -> 1 step a second
        assert app.speed_limit == 1
        assert "1 step/s" in str(app.query_one("#speed-limit").render())
        app.query_one("#task-picker").focus()
        setup = app.query_one(SetupPane)
        assert setup.task_name == "reversal"
        app.query_one("#hp-train-max_steps").value = "100000"
        app.query_one("#hp-train-eval_interval").value = "100000"
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: steps_done(app) >= 1, what="the first step")
        s0, t0 = app.trainer.step_count, time.monotonic()
        await pilot.pause(1.5)
        limited, t_limited = app.trainer.step_count - s0, time.monotonic() - t0
        assert limited <= t_limited * 1 + 2  # paced: at most one step a second (plus the one under way)
        plot = app.query_one(LossPlot)
        await wait_for(pilot, lambda: plot.marks, what="the loss plot's speed mark")
        assert plot.marks[0][2] == "1 step/s"
        await pilot.press("L", "L", "L")  # 5, 20, then unlimited
        assert app.speed_limit is None
        s1 = app.trainer.step_count
        await wait_for(pilot, lambda: app.trainer.step_count - s1 > 10 * (limited + 2),
                       what="unlimited training to outrun the limited rate")
        await wait_for(pilot, lambda: len(plot.marks) >= 2, what="a mark where the limit was lifted")
        app.action_stop()
        await wait_for(pilot, lambda: not app.training, what="stop")


async def test_loading_a_save_replays_its_timeline_and_ablating_heads_changes_the_metric(saves):
    save_reversal("rev")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="the saves list")
        await pilot.press("c")
        pane, bar = app.query_one(AttentionPane), app.query_one(TimelineBar)
        await wait_for(pilot, lambda: len(pane.snaps) >= 10, what="the save's recording")
        assert app.query_one("#tabs").active == "attention"
        assert bar.source == "save rev (best)" and pane.snaps[0].step == 0
        bar.playing = False
        attn = app.query_one(AttentionMap)
        attn.focus()
        n_head = attn.shape[1]
        for _ in range(n_head):  # every head of the one layer off
            await pilot.press("o", "full_stop")
        assert pane.off == [(0, h) for h in range(n_head)]
        await pilot.press("v")
        status = app.query_one("#ablation-status")
        await wait_for(pilot, lambda: "→" in str(status.render()) and "measuring" not in str(status.render()),
                       timeout=60, what="the ablation result")
        text = str(status.render())
        assert "accuracy 100% →" in text or "accuracy 99% →" in text, text
        base, ablated = text.split("accuracy ")[1].split(" without")[0].split(" → ")
        assert int(ablated.rstrip("%")) < int(base.rstrip("%")) - 50  # reversal needs attention
        assert "zeroed" in text


async def test_chat_next_character_view_shows_the_top_5_of_each_reply_character(saves):
    save_tiny_qa(20)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.load_for_chat("tinyqa", "best")
        chat = app.query_one(ChatView)
        await wait_for(pilot, lambda: chat.source is not None, what="the loaded save")
        app.query_one("#sample-max_new_tokens").value = "12"
        chat.ask("hi")
        await wait_for(pilot, lambda: chat.history, what="a reply")
        view = app.query_one(NextCharView)
        reply = chat.pane.transcript()[-1][1]
        assert view.chars == list(reply) and len(view.candidates) == len(reply) > 0
        for cands in view.candidates:
            probs = [p for _, p in cands]
            assert len(cands) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        view.focus()
        await pilot.press("end")
        assert view.cursor == len(reply) - 1
        assert f"#{len(reply)}" in view.render_line(1).text


async def test_last_reply_with_a_newline_is_probed_with_a_newline_label_inside_the_field(saves):
    save_tiny_qa(5)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        model, tok, cfg, _ = load_model("tinyqa", "best")
        app.loaded = (model, tok, cfg)  # as the Saves tab's "load" leaves it
        app.query_one(ChatView).history.append(("how many legs?", "3 pl"))
        app.action_tab("attention")
        await wait_for(pilot, lambda: app.query_one("#probe-input").region.height > 0, what="the attention tab")
        app.query_one(AttentionPane).probe_last_reply()  # the "Last reply" button
        await pilot.pause()
        field = app.query_one("#probe-input")
        assert "\n" not in field.value and field.value == "Q: how many legs?⏎A: 3 pl⏎"
        pane = app.query_one(AttentionPane)
        assert pane.probe_text == "Q: how many legs?\nA: 3 pl" and pane.custom
        attn = app.query_one(AttentionMap)
        assert "⏎" in attn._row_labels and "\n" not in "".join(attn._row_labels)
        # the whole probe sits on the field's one line; nothing of it is drawn below the field's box
        shown = screen_text(app).splitlines()
        rows = [i for i, line in enumerate(shown) if "A: 3 pl" in line]
        assert rows == [field.region.y + 1], rows


async def test_a_causal_save_replays_previous_token_induction_and_sink_scores(saves):
    tr = Trainer(load_config("qa", overrides=TINY_QA))
    tr.run(lambda ev: None, max_steps=12)
    tr.save("tinyqa", "best")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.load_for_chat("tinyqa", "best")
        pane = app.query_one(AttentionPane)
        await wait_for(pilot, lambda: len(pane.snaps) >= 10, what="the save's recording")
        chart = app.query_one(HeadScoreChart)
        assert set(chart.kinds) == {"prev_token", "induction", "sink"}
        assert "previous-token" in str(app.query_one("#map-explain").render())
        app.action_tab("attention")
        await pilot.pause()
        app.query_one(AttentionMap).focus()
        first = chart.kind
        await pilot.press("k")
        assert chart.kind != first and chart.kind in chart.kinds
        assert pane.labels and "⏎" in [app.query_one(AttentionMap)._col_labels[i]
                                       for i in range(len(pane.labels))]  # the Q/A prompt's newline
