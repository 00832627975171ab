"""TrainPane: controls, loss plot, stats, lr, progress (the Attention tab is tui/screens/attention.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, Static

from tui.widgets import LossPlot, LRSpark, StatsPanel


class TrainPane(Vertical):
    """Buttons mirror the keys s / p / n / S / w; everything else is fed by the app from worker messages."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="train-controls"):
            yield Button("Start", id="btn-start", variant="success")
            yield Button("Pause", id="btn-pause")
            yield Button("Step", id="btn-step")
            yield Button("Stop", id="btn-stop", variant="error")
            yield Button("Save", id="btn-save")
        with Horizontal(id="train-status-row"):
            yield Static("idle — press s to start", id="train-status")
            yield Static("speed: unlimited (L)", id="speed-limit")
            yield ProgressBar(total=100, show_eta=False, id="train-progress")
        with Horizontal(id="train-main"):
            yield LossPlot(id="loss-plot")
            with Vertical(id="train-side"):
                yield StatsPanel(id="stats")
                yield LRSpark(id="lr-spark")
