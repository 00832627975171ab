"""TrainPane: controls, loss plot, stats, lr, progress (the Attention tab is tui/screens/attention.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, ProgressBar, Static

from tui.screens.compare import CompareView
from tui.widgets import LossPlot, LRSpark, StatsPanel


class TrainPane(Vertical):
    """Buttons mirror the keys s / p / n / S / w; everything else is fed by the app from worker messages.

    With runs to compare (marked on the Saves tab), the plot overlays them and a table sits below it.
    """

    BINDINGS = [Binding("escape", "end_compare", "End compare")]

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
        yield CompareView(id="compare")

    def compare(self, names: list[str]) -> None:
        """Overlay these runs on the plot, with the table below; esc returns to the live run."""
        self.query_one(CompareView).show(names)
        self.refresh_bindings()

    def on_compare_view_updated(self, message: CompareView.Updated) -> None:
        self.query_one(LossPlot).set_overlay([(r.name, r.train, r.val) for r in message.records])

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "end_compare":
            return self.query_one(CompareView).active
        return True

    def action_end_compare(self) -> None:
        self.query_one(CompareView).end()
        self.query_one(LossPlot).set_overlay([])
        self.refresh_bindings()
