"""Load held (issue 5, item 7): 10,000 training steps with the UI attached keep memory flat and keys answered.

Figures (RSS at 1k and 10k steps, history sizes, wall time) go to $ATTNLAB_FAULT_FIGURES when set.
"""

import os
import time

import pytest
from textual.widgets import Input

from core.trainer import HISTORY
from tests.fault_helpers import record
from tests.test_tui_app import wait_for
from tui.app import AttnLab
from tui.screens.setup import SetupPane, input_id
from tui.widgets import LossPlot, LRSpark, StatsPanel

STEPS = 10_000
TINY = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "train.batch_size": 8,
        "train.max_steps": STEPS, "train.eval_interval": 500}  # evals (and their buffers) start before 1k
PLOT_POINTS = 4000  # below STEPS, so the plot's history must compact to stay bounded
MB = 1024 * 1024


def memory():
    """(current RSS, peak RSS) of this process in bytes, from /proc/self/status."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for RSS")
async def test_ten_thousand_steps_with_the_ui_keep_memory_flat_and_keys_answered():
    app = AttnLab()
    async with app.run_test(size=(120, 40)) as pilot:
        for key, value in TINY.items():
            app.query_one("#" + input_id(key), Input).value = str(value)
        await pilot.pause()
        assert app.query_one(SetupPane).error_text is None
        plot = app.query_one(LossPlot)
        for series in plot.history.values():
            series.max_points = PLOT_POINTS
        app.query_one("#task-picker").focus()
        started = time.monotonic()
        app.action_start()  # a call, not a press: Pilot waits up to 1 s for an idle CPU after a press
        await wait_for(pilot, lambda: app.trainer is not None and app.trainer.step_count >= 1000, 90, "1k steps")
        step_1k, (rss_1k, hwm_1k) = app.trainer.step_count, memory()
        # generous limits: ~30 s alone here, over 60 s beside two training runs on 2 cores
        await wait_for(pilot, lambda: not app.training, 240, f"{STEPS} steps")
        wall = time.monotonic() - started
        rss_10k, hwm_10k = memory()
        tr = app.trainer
        assert tr.step_count == STEPS
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step") == STEPS, 5, "the last stats")
        # every history is bounded: the trainer's, the plot's (compacted), the lr sparkline's
        assert len(tr.history["train"]) == HISTORY < STEPS and len(tr.history["val"]) <= HISTORY
        train = plot.history["train"]
        assert len(train) <= PLOT_POINTS and train.compactions > 0
        assert train.steps[-1] == STEPS and train.steps == sorted(train.steps)
        assert len(app.query_one(LRSpark).values) <= 200
        # the UI still answers keys: log scale on the plot, then another tab
        plot.focus()
        await pilot.press("l")
        assert plot.log_y and "(log)" in plot.render().plain
        await pilot.press("3")
        assert app.query_one("#tabs").active == "attention"
    growth = rss_10k - rss_1k
    record("test_tui_load", steps=STEPS, step_at_first_sample=step_1k, wall_s=round(wall, 1),
           rss_1k_mb=round(rss_1k / MB, 1), rss_10k_mb=round(rss_10k / MB, 1),
           peak_rss_1k_mb=round(hwm_1k / MB, 1), peak_rss_10k_mb=round(hwm_10k / MB, 1),
           rss_growth_mb=round(growth / MB, 2), trainer_history=len(tr.history["train"]),
           plot_points=len(train), plot_compactions=train.compactions)
    print(f"load: {STEPS} steps in {wall:.1f} s; RSS {rss_1k / MB:.1f} MB at step {step_1k}, "
          f"{rss_10k / MB:.1f} MB at {STEPS} (peak {hwm_1k / MB:.1f} -> {hwm_10k / MB:.1f} MB)")
    assert growth < 20 * MB, f"RSS grew {growth / MB:.1f} MB from 1k to {STEPS} steps"
