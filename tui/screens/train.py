"""TrainPane (controls, loss plot, stats, lr, progress) and AttentionPane (heatmap on a probe input)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ProgressBar, Static

from core.tasks.lm import format_turn
from tui.screens.chat import ChatView
from tui.screens.compare import CompareView

from tui.widgets import AttentionMap, LossPlot, LRSpark, StatsPanel
from tui.worker import describe, probe_model


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


class AttentionPane(Vertical):
    """The heatmap plus the probe text (reversal: a word; LM tasks: a question or any text)."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="probe-row"):
            yield Label("probe", id="probe-label")
            yield Input(value="PYTHON", placeholder="text to probe (enter)", id="probe-input")
            yield Button("Last reply", id="btn-last-reply")
        yield AttentionMap(id="attn-map")

    def use_task(self, task: str) -> None:
        """Reversal probes a word (PYTHON by default); the LM tasks default to a held-out question."""
        probe = self.query_one("#probe-input", Input)
        if task == "reversal" and not probe.value:
            probe.value = "PYTHON"
        elif task != "reversal" and probe.value == "PYTHON":
            probe.value = ""

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "probe-input":
            event.stop()
            self.show(event.value.strip())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "btn-last-reply":
            event.stop()
            self.probe_last_reply()

    def probe_last_reply(self) -> None:
        history = self.app.query_one(ChatView).history
        if not history:
            self.app.notify("no chat reply yet", severity="warning")
            return
        text = format_turn(*history[-1])
        self.query_one("#probe-input", Input).value = text
        self.show(text)

    def show(self, text: str) -> None:
        """Attention on `text`: the next probe while training, now otherwise."""
        app = self.app
        if app.pump is not None:
            app.pump.probe_text = text  # read by the training thread at its next probe
        if app.training:
            return
        try:
            if app.trainer is not None:
                ev = app.trainer.attention_probe(text or None)
                labels, maps = ev["labels"], ev["maps"]
            elif app.loaded:
                model, tok, cfg = app.loaded
                labels, maps = probe_model(model.snapshot(), tok, text, cfg.model.block_size)
            else:
                self.app.notify("no model yet: start training or load a save", severity="warning")
                return
        except ValueError as e:
            self.app.notify(f"cannot probe: {describe(e)}", severity="error")
            return
        self.query_one(AttentionMap).set_data(maps, labels)
