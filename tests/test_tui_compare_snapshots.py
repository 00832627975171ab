"""SVG snapshots of the compare view (two runs from fixed metrics.jsonl files) at 120x40 and 80x24.

Update after an intended change with: pytest tests/test_tui_compare_snapshots.py --snapshot-update
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input

from core.metrics_log import FILENAME
from tui.app import AttnLab
from tui.screens.saves import SavesPane
from tui.widgets import LossPlot


def write_run(saves, name, lr, n_head, steps, evals):
    d = saves / name
    d.mkdir(parents=True)
    cfg = {"task": "reversal", "model": {"n_head": n_head, "n_layer": 1}, "train": {"lr": lr, "max_steps": 200}}
    lines = [{"event": "start", "step": 0, "time": 1000.0, "task": "reversal", "metric": "accuracy", "config": cfg}]
    lines += [{"event": "step", "step": s, "loss": 3.3 * 0.985 ** (s * (1 + lr * 20)), "elapsed_s": s * 0.05,
               "time": 1000.0 + s * 0.5} for s in range(1, steps + 1)]
    lines += [{"event": "eval", "step": s, "val_loss": v, "accuracy": a, "metric": "accuracy",
               "time": 1000.0 + s * 0.5} for s, v, a in evals]
    (d / FILENAME).write_text("".join(json.dumps(e) + "\n" for e in lines))


@pytest.fixture
def two_runs(saves):
    write_run(saves, "lr-high", 0.02, 2, 160, [(50, 1.2, 0.3), (100, 0.3, 0.9), (150, 0.1, 1.0)])
    write_run(saves, "lr-low", 0.005, 4, 120, [(50, 2.4, 0.0), (100, 1.5, 0.2)])


async def show_compare(pilot):
    await pilot.pause()
    for inp in pilot.app.query(Input):
        inp.cursor_blink = False
    pilot.app.post_message(SavesPane.Compare(["lr-high", "lr-low"]))
    plot = pilot.app.query_one(LossPlot)
    for _ in range(200):
        await pilot.pause(0.05)
        if len(plot.overlay) == 2:
            break
    # the compare table's layout may resize the plot after the overlay arrives (slowly on a loaded
    # machine): wait for its size to hold, so the curves are drawn at the width the snapshot shows
    size = None
    for _ in range(100):
        await pilot.pause(0.05)
        if plot.size == size:
            break
        size = plot.size
    plot.redraw()
    await pilot.pause()


def test_compare_view_120x40(snap_compare, two_runs):
    assert snap_compare(AttnLab(), terminal_size=(120, 40), run_before=show_compare)


def test_compare_view_80x24(snap_compare, two_runs):
    assert snap_compare(AttnLab(), terminal_size=(80, 24), run_before=show_compare)
