"""SVG snapshots of each view in a fixed state: no training, a fixed attention matrix, a fixed chat.

Update after an intended change with: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import numpy as np
import pytest
from textual.widgets import Input

from tui.app import AttnLab
from tui.screens.chat import ChatView
from tui.widgets import AttentionMap

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def empty_saves(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_SAVES", str(tmp_path / "saves"))


async def still(pilot):
    """No blinking cursors, so the picture does not depend on timing."""
    for inp in pilot.app.query(Input):
        inp.cursor_blink = False
    await pilot.pause()


def reversal_maps() -> np.ndarray:
    """(1, 2, 6, 6): head 0 attends to the mirrored position (the trained pattern), head 1 uniformly."""
    anti = np.full((6, 6), 0.02)
    anti[np.arange(6), 5 - np.arange(6)] = 0.9
    return np.stack([anti, np.full((6, 6), 1 / 6)])[None]


def goto(tab):
    async def run_before(pilot):
        await pilot.pause()  # the initial tab is activated after mount
        pilot.app.action_tab(tab)
        await still(pilot)
    return run_before


def test_setup_view(snap_compare):
    assert snap_compare(AttnLab(), terminal_size=SIZE, run_before=still)


def test_setup_view_with_an_error_at_80x24(snap_compare):
    async def run_before(pilot):
        pilot.app.query_one("#hp-model-n_embd", Input).value = "30"
        pilot.app.query_one("#hp-model-n_head", Input).value = "4"
        await still(pilot)
    assert snap_compare(AttnLab(), terminal_size=(80, 24), run_before=run_before)


def test_train_view_idle(snap_compare):
    assert snap_compare(AttnLab(), terminal_size=SIZE, run_before=goto("train"))


def test_train_view_at_80x24(snap_compare):
    assert snap_compare(AttnLab(), terminal_size=(80, 24), run_before=goto("train"))


def test_attention_view_with_a_fixed_matrix(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.action_tab("attention")
        pilot.app.query_one(AttentionMap).set_data(reversal_maps(), list("PYTHON"))
        await still(pilot)
    assert snap_compare(AttnLab(), terminal_size=SIZE, run_before=run_before)


def test_chat_view_with_a_fixed_transcript(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.action_tab("chat")
        pane = pilot.app.query_one(ChatView).pane
        pane.add_user("what is the capital of france?")
        pane.begin_reply()
        pane.append_reply("paris.")
        pane.end_reply()
        pane.add_system("characters this model has never seen were left out: '€'")
        await still(pilot)
    assert snap_compare(AttnLab(), terminal_size=SIZE, run_before=run_before)


def test_saves_view_empty(snap_compare):
    assert snap_compare(AttnLab(), terminal_size=SIZE, run_before=goto("saves"))


def test_help_screen(snap_compare):
    async def run_before(pilot):
        await pilot.press("question_mark")
        await still(pilot)
    assert snap_compare(AttnLab(), terminal_size=SIZE, run_before=run_before)


def replay_at(step_index: int):
    """The Attention tab replaying a hand-made reversal recording, scrubbed to one recorded step."""
    async def run_before(pilot):
        from timeline_fakes import reversal_timeline
        from tui.screens.attention import AttentionPane
        from tui.widgets import TimelineBar

        await pilot.pause()
        pilot.app.action_tab("attention")
        tl = reversal_timeline()
        pilot.app.query_one(AttentionPane).reset_timeline(tl.snapshots, tl.labels, tl.probe, tl.marks,
                                                          "recording")
        pilot.app.query_one(AttentionMap).focus()
        pilot.app.query_one(TimelineBar).seek(step_index)
        await still(pilot)
    return run_before


def test_attention_replay_with_timeline_score_chart_and_colour_bar(snap_compare):
    assert snap_compare(AttnLab(), terminal_size=(120, 40), run_before=replay_at(7))


def test_attention_replay_at_80x24(snap_compare):
    assert snap_compare(AttnLab(), terminal_size=(80, 24), run_before=replay_at(3))
