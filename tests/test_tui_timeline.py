"""The Attention tab's replay: timeline bar, score chart, colour bar, next-character view (Pilot).

A hand-made recording (tests/timeline_fakes.py, shaped like core.timeline's) drives the widgets; the
tests that need the real trainer, interp and timeline modules are in tests/test_tui_interp.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input

from timeline_fakes import STEPS, reversal_timeline
from tui.app import AttnLab
from tui.screens.attention import AttentionPane, field_to_probe, probe_to_field
from tui.widgets import AttentionMap, ColorBar, HeadScoreChart, TimelineBar
from tui.widgets.nextchar import NextCharView
from tui.widgets.timelinebar import PLAY_SPEEDS

SIZE = (120, 40)


class OneWidgetApp(App):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget
        self.seeks: list[int] = []

    def compose(self) -> ComposeResult:
        yield self.widget

    def on_timeline_bar_seek(self, message: TimelineBar.Seek) -> None:
        self.seeks.append(message.index)


async def attention_with_recording(pilot):
    app = pilot.app
    await pilot.pause()
    app.action_tab("attention")
    tl = reversal_timeline()
    pane = app.query_one(AttentionPane)
    pane.reset_timeline(tl.snapshots, tl.labels, tl.probe, tl.marks, "recording")
    app.query_one(AttentionMap).focus()
    await pilot.pause()
    return pane


def info(app) -> str:
    return str(app.query_one("#attn-info").render())


# ---- widgets alone --------------------------------------------------------------------------


async def test_timeline_bar_keys_mouse_and_live():
    bar = TimelineBar()
    app = OneWidgetApp(bar)
    async with app.run_test(size=(60, 4)) as pilot:
        bar.set_steps(STEPS)
        await pilot.pause()
        assert bar.live and bar.index == len(STEPS) - 1 and bar.step == 50
        bar.focus()
        await pilot.press("left", "left")
        assert (bar.index, bar.live) == (len(STEPS) - 3, False)
        assert app.seeks[-1] == len(STEPS) - 3
        bar.set_steps([*STEPS, 80])  # a new snapshot while scrubbed back: stay put
        assert bar.index == len(STEPS) - 3
        await pilot.click(TimelineBar, offset=(0, 0))
        assert bar.index == 0 and bar.step == 0
        await pilot.click(TimelineBar, offset=(59, 0))
        assert bar.index == len(STEPS)
        assert "step 80" in bar.render_line(1).text
        line = bar.render_line(0).text
        assert len(line) == 60 and line[-1] == "●" and "┃" not in line
        bar.set_steps([*STEPS, 80], marks=[20])
        assert "┃" in bar.render_line(0).text  # where the speed limit changed


async def test_timeline_bar_plays_to_the_end_and_stops():
    bar = TimelineBar()
    app = OneWidgetApp(bar)
    async with app.run_test(size=(60, 4)) as pilot:
        bar.set_steps(STEPS)
        bar.speed = 20
        bar.action_play()  # at the end: starts over from the first step
        assert bar.playing and bar.index == 0
        for _ in range(200):
            if not bar.playing:
                break
            await pilot.pause(0.05)
        assert not bar.playing and bar.index == len(STEPS) - 1
        assert app.seeks[0] == 0 and app.seeks[-1] == len(STEPS) - 1
        assert sorted(app.seeks) == app.seeks  # every step in order, none skipped backwards
        assert bar.speed in PLAY_SPEEDS
        bar.action_speed(-1)
        assert bar.speed == PLAY_SPEEDS[PLAY_SPEEDS.index(20) - 1]


async def test_score_chart_highlights_the_selected_head_and_draws_the_metric():
    chart = HeadScoreChart()
    app = OneWidgetApp(chart)
    tl = reversal_timeline()
    async with app.run_test(size=(60, 16)) as pilot:
        scores = np.stack([s.scores["antidiagonal"] for s in tl.snapshots])  # (N, 1, 2)
        chart.set_data(STEPS, {"antidiagonal": scores}, "accuracy", [s.metric_value for s in tl.snapshots])
        await pilot.pause()
        assert chart.kind == "antidiagonal" and chart.kinds == ["antidiagonal"]
        assert chart.value("antidiagonal", 0, 0, 0) == pytest.approx(1 / 6, abs=1e-3)
        assert chart.value("antidiagonal", 0, 0, len(STEPS) - 1) == pytest.approx(1.0, abs=1e-3)
        text = "\n".join(chart.render_line(y).text for y in range(chart.size.height))
        assert "anti-diagonal score, accuracy" in text
        # round ticks: whole steps on x, 0 / 0.5 / 1 on y (not 120.5 or 0.67)
        import re
        xs = [int(t) for t in re.findall(r"\d+", text.splitlines()[-2])]
        assert len(xs) >= 2 and len({b - a for a, b in zip(xs, xs[1:])}) == 1, text
        assert {"0┤", "0.5┤", "1┤"} <= {m.group(0) for m in re.finditer(r"[\d.]+┤", text)}, text
        chart.selected = (0, 1)
        await pilot.pause()
        text = "\n".join(chart.render_line(y).text for y in range(chart.size.height))
        assert chart.selected == (0, 1)
        with pytest.raises(ValueError):
            chart.set_data([0, 1], {"antidiagonal": scores})  # N does not match


async def test_colour_bar_shows_its_range():
    bar = ColorBar()
    app = OneWidgetApp(bar)
    async with app.run_test(size=(40, 2)) as pilot:
        await pilot.pause()
        assert bar.text.startswith("0 ") and "1  absolute" in bar.text
        bar.set_range(0, 0.25, "this map")
        await pilot.pause()
        assert "0.25  this map" in bar.text


async def test_next_char_view_shows_candidates_under_the_cursor_and_mouse():
    view = NextCharView()
    app = OneWidgetApp(view)
    async with app.run_test(size=(60, 3)) as pilot:
        assert "next-character view" in view.render_line(0).text
        cands = [[("h", 0.7), ("H", 0.2), ("a", 0.05), ("e", 0.03), ("i", 0.02)],
                 [("i", 0.9), ("e", 0.05), ("a", 0.03), ("o", 0.01), ("\n", 0.01)]]
        view.set_data("hi", cands)
        view.focus()
        await pilot.pause()
        assert view.render_line(0).text.startswith("hi")
        assert "h 0.70" in view.render_line(1).text and "H 0.20" in view.render_line(1).text
        await pilot.press("right")
        assert view.cursor == 1 and "⏎ 0.01" in view.render_line(1).text
        await pilot.press("right")
        assert view.cursor == 1  # clamps
        await pilot.hover(NextCharView, offset=(0, 0))
        assert view.cursor == 0
        with pytest.raises(ValueError):
            view.set_data("abc", cands)


def test_probe_field_shows_newlines_as_a_label_and_reads_them_back():
    text = "Q: how many legs?\nA: 3 pl"
    shown = probe_to_field(text)
    assert "\n" not in shown and shown == "Q: how many legs?⏎A: 3 pl"
    assert field_to_probe(shown) == text


# ---- the Attention tab ----------------------------------------------------------------------


async def test_attention_tab_scrubs_to_step_0_and_to_the_end():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        pane = await attention_with_recording(pilot)
        attn, bar = app.query_one(AttentionMap), app.query_one(TimelineBar)
        assert bar.live and "step 50" in info(app) and "accuracy 100%" in info(app)
        assert "PYTHON → NOHTYP" in info(app)  # the probe answer beside the map
        assert attn.view_matrix[0, 5] == pytest.approx(1.0)
        await pilot.press("home")
        assert bar.index == 0 and not bar.live
        assert "step 0" in info(app) and "accuracy 0%" in info(app)
        np.testing.assert_allclose(attn.view_matrix, 1 / 6, atol=1e-3)  # uniform at step 0
        await pilot.press("f", "f")
        assert bar.step == 2 and "step 2" in info(app)
        await pilot.press("b")
        assert bar.step == 1
        await pilot.press("end")
        assert bar.live and bar.step == 50 and attn.view_matrix[0, 5] == pytest.approx(1.0)
        # the chart's cursor follows the step on screen
        assert app.query_one(HeadScoreChart).cursor_step == 50
        assert pane.custom is False


async def test_attention_tab_plays_the_recording():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await attention_with_recording(pilot)
        bar = app.query_one(TimelineBar)
        await pilot.press("less_than_sign", "greater_than_sign", "greater_than_sign")
        assert bar.speed == 10
        seen = []
        bar.watch_index = lambda: seen.append(bar.step)  # every step the map is moved to
        await pilot.press("space")
        for _ in range(200):
            if not bar.playing:
                break
            await pilot.pause(0.03)
        assert not bar.playing and bar.step == 50
        assert seen == STEPS  # from the first step through every recorded one, in order
        await pilot.press(*["less_than_sign"] * 4)
        assert bar.speed == 1  # one step a second: the next two keys come well within it
        await pilot.press("space", "space")  # play again from the start, then pause: it stays
        assert not bar.playing
        paused_at = bar.index
        await pilot.pause(0.3)
        assert bar.index == paused_at < len(STEPS) - 1


async def test_live_snapshots_are_followed_only_while_live():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_tab("attention")
        pane = app.query_one(AttentionPane)
        tl = reversal_timeline()
        pane.reset_timeline([], tl.labels, tl.probe)
        pane.add_snapshots(tl.snapshots[:3], tl.labels, tl.probe)
        await pilot.pause()
        assert "step 2" in info(app)
        pane.add_snapshots(tl.snapshots[3:5], tl.labels, tl.probe)
        await pilot.pause()
        assert "step 5" in info(app)
        app.query_one(AttentionMap).focus()
        await pilot.press("home")
        pane.add_snapshots(tl.snapshots[5:], tl.labels, tl.probe)
        await pilot.pause()
        assert "step 0" in info(app)  # scrubbed back: new snapshots do not move the map
        await pilot.press("end")
        assert "step 50" in info(app)


async def test_colour_scale_toggle_updates_the_colour_bar():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await attention_with_recording(pilot)
        await pilot.press("home")
        bar = app.query_one(ColorBar)
        assert "1  absolute" in bar.text
        await pilot.press("a")
        await pilot.pause()
        assert "0.167  this map" in bar.text


async def test_explanations_toggle_with_i_and_keys_do_not_fire_in_the_probe_field():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await attention_with_recording(pilot)
        explain = app.query_one("#map-explain")
        assert explain.display and "anti-diagonal" in str(explain.render())
        notes = {w.id: str(w.render()) for w in app.query(".explain")}  # every view of the insides has one
        assert "scrub" in notes["timeline-explain"] and "1 (bright)" in notes["colorbar-explain"]
        await pilot.press("i")
        assert not explain.display and not any(w.display for w in app.query(".explain"))
        await pilot.press("i")
        assert explain.display
        bar = app.query_one(TimelineBar)
        app.query_one("#probe-input", Input).focus()
        await pilot.press("home", "b", "space", "o", "i", "f", "L")
        assert bar.live and not bar.playing and app.speed_limit is None
        assert explain.display and app.query_one(AttentionPane).off == []


async def test_heads_are_picked_for_ablation_with_o_and_mode_with_z():
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        pane = await attention_with_recording(pilot)
        await pilot.press("o", "full_stop", "o", "z")
        assert pane.off == [(0, 0), (0, 1)] and pane.mode == "mean"
        status = str(app.query_one("#ablation-status").render())
        assert "L1H1, L1H2" in status and "[mean]" in status
        await pilot.press("comma", "o")
        assert pane.off == [(0, 1)]
