"""AttentionPane: the heatmap on a probe input, replayed over the recorded training timeline.

The map shows one recorded snapshot (its step, metric and the model's answer beside it) chosen with the
timeline bar, or live training. Beside it: the colour bar, the head-score chart and head ablation, whose
evaluation runs in a thread worker. A typed probe text shows the current model on that text instead.
"""

from __future__ import annotations

import math

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from core.tasks.lm import format_turn
from core.text import safe_text
from tui.messages import AblationDone, TimelineLoaded
from tui.screens.chat import ChatView
from tui.widgets import AttentionMap
from tui.widgets.colorbar import ColorBar
from tui.widgets.explain import Explain
from tui.widgets.scorechart import NAMES, HeadScoreChart
from tui.widgets.timelinebar import TimelineBar
from tui.widgets.textfield import TextField
from tui.worker import describe, probe_model

NEWLINE_LABEL = "⏎"  # a newline of a multi-line probe, as shown in the one-line probe field
MAX_SNAPSHOTS = 800  # the trainer keeps <= 400; a live feed is thinned past this
CHART_INTERVAL = 1.0  # seconds between redraws of the score chart from a live feed (plotting is costly)
METRIC_NAMES = {"context_recall": "recall", "answer_exact": "exact answers", "accuracy": "accuracy"}
ABLATION_MODES = ("zero", "mean")


def metric_label(name: str | None) -> str:
    return METRIC_NAMES.get(name or "", name or "metric")


def fmt_metric(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.0%}" if math.isfinite(v) else "—"


def heads_text(heads) -> str:
    return ", ".join(f"L{li + 1}H{hi + 1}" for li, hi in heads)


def probe_to_field(text: str) -> str:
    """A probe text as the one-line field shows it: newlines as ⏎."""
    return text.replace("\r\n", "\n").replace("\n", NEWLINE_LABEL)


def field_to_probe(value: str) -> str:
    """The probe text typed in the field: each ⏎ is a newline again."""
    return value.replace(NEWLINE_LABEL, "\n")


class AttentionPane(Vertical):
    """Replay (timeline bar), colour bar, head scores and ablation around the AttentionMap."""

    BINDINGS = [
        Binding("space", "play", "Play/pause"),
        Binding("b", "scrub(-1)", "Step back", show=False),
        Binding("f", "scrub(1)", "Step fwd", show=False),
        Binding("home", "first", "First step", show=False),
        Binding("end", "newest", "Live"),
        Binding("less_than_sign", "speed(-1)", "Slower replay", key_display="<", show=False),
        Binding("greater_than_sign", "speed(1)", "Faster replay", key_display=">", show=False),
        Binding("k", "score_kind", "Score kind", show=False),
        Binding("o", "toggle_off", "Head off"),
        Binding("z", "ablation_mode", "Zero/mean ablation", show=False),
        Binding("v", "ablate", "Ablate"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.snaps: list = []  # recorded snapshots (core.timeline.Snapshot), by step
        self.labels: list[str] = []  # the recording's probe tokens
        self.recorded_probe = ""
        self.metric_name: str | None = None
        self.custom = False  # True while the map shows a typed probe, not the recording
        self.off: list[tuple[int, int]] = []  # heads selected for ablation
        self.mode = "zero"
        self.task_name: str | None = None
        self.ablation_text = ""
        self.from_save = False  # the map shows a loaded save (not the trainer's model)
        self._chart_dirty = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="probe-row"):
            yield Label("probe", id="probe-label")
            yield TextField(value="PYTHON", placeholder="text to probe (enter)", id="probe-input")
            yield Button("Last reply", id="btn-last-reply")
        yield Explain("map-reversal", id="map-explain")
        with Horizontal(id="attn-main"):
            yield AttentionMap(id="attn-map")
            with Vertical(id="attn-side"):
                yield Static("no recorded step yet", id="attn-info", markup=False)
                yield ColorBar(id="color-bar")
                yield Explain("colorbar", id="colorbar-explain")
                yield HeadScoreChart(id="score-chart")
                yield Explain("scores", id="scores-explain")
                yield Static("", id="ablation-status", markup=False)
                yield Explain("ablation", id="ablation-explain")
        yield TimelineBar(id="timeline-bar")
        yield Explain("timeline", id="timeline-explain")

    def on_mount(self) -> None:
        self._show_ablation()
        self.set_interval(CHART_INTERVAL, self._tick_chart)

    def _tick_chart(self) -> None:
        if self._chart_dirty:
            self._refresh_chart()

    # ---- the probe field ---------------------------------------------------------------------

    @property
    def probe_text(self) -> str:
        """The text in the probe field with ⏎ turned back into newlines."""
        return field_to_probe(self.query_one("#probe-input", Input).value).strip()

    def use_task(self, task: str) -> None:
        """Reversal probes a word (PYTHON by default); the LM tasks default to a held-out question."""
        self.task_name = task
        probe = self.query_one("#probe-input", Input)
        if task == "reversal" and not probe.value:
            probe.value = "PYTHON"
        elif task != "reversal" and probe.value == "PYTHON":
            probe.value = ""
        self.query_one("#map-explain", Explain).use("map-reversal" if task == "reversal" else "map-causal")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "probe-input":
            event.stop()
            self.show(self.probe_text)

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
        self.query_one("#probe-input", Input).value = probe_to_field(text)
        self.show(text)

    def show(self, text: str) -> None:
        """Attention on `text`: the next probe while training, now otherwise; the recording for its probe."""
        app = self.app
        recorded = self.snaps and (not text or text == self.recorded_probe)
        self.custom = not recorded
        if app.pump is not None:
            app.pump.probe_text = text  # read by the training thread at its next probe
            app.pump.probe_live = self.custom
        if recorded:
            self.show_index(self.bar.index)
            return
        if app.training:
            return
        try:
            if app.trainer is not None and not (self.from_save and app.loaded):
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
        self.set_map(maps, labels)
        self.query_one("#attn-info", Static).update("your probe, current weights (end: back to the recording)")

    def live_probe(self, maps, labels) -> None:
        """A live attention probe from training: shown unless the recording is on screen."""
        if self.custom or not self.snaps:
            self.set_map(maps, labels)

    # ---- the recording -----------------------------------------------------------------------

    @property
    def bar(self) -> TimelineBar:
        return self.query_one(TimelineBar)

    @property
    def map(self) -> AttentionMap:
        return self.query_one(AttentionMap)

    def set_map(self, maps, labels) -> None:
        self.map.set_data(maps, labels)
        self._sync_colorbar()

    def reset_timeline(self, snapshots=(), labels=(), probe: str = "", marks=(), source: str = "",
                       metric: str | None = None) -> None:
        """Replace the recording (a new run, a resumed one, or a loaded save's)."""
        self.from_save = source.startswith("save ")
        self.snaps = sorted(snapshots, key=lambda s: s.step)
        self.labels = list(labels)
        self.recorded_probe = probe
        self.metric_name = metric or next((s.metric for s in self.snaps if s.metric), None)
        self.custom = False
        self.bar.source = source
        self.bar.live = True
        self.bar.playing = False
        self.bar.set_steps([s.step for s in self.snaps], [m["step"] for m in marks if "step" in m])
        self._refresh_chart()
        if self.snaps:
            self.show_index(self.bar.index)
        else:
            self.query_one("#attn-info", Static).update("no recorded step yet")

    def add_snapshots(self, snapshots, labels, probe: str) -> None:
        """Append live snapshots (in step order); the map follows them while the bar is live."""
        if not snapshots:
            return
        self.labels, self.recorded_probe = list(labels), probe
        self.snaps.extend(snapshots)
        if len(self.snaps) > MAX_SNAPSHOTS:  # keep the first and every other older one
            half = len(self.snaps) // 2
            self.snaps = self.snaps[:half:2] + self.snaps[half:]
        self.metric_name = self.metric_name or next((s.metric for s in snapshots if s.metric), None)
        self.bar.set_steps([s.step for s in self.snaps], self.bar.marks)
        self._chart_dirty = True  # redrawn by the timer, at most once a second
        if self.bar.live and not self.custom:
            self.show_index(self.bar.index)

    def add_mark(self, step: int) -> None:
        self.bar.set_steps(self.bar.steps, [*self.bar.marks, step])

    def show_index(self, index: int) -> None:
        """Show recorded snapshot `index`: its map, step, metric, answer; the chart's cursor."""
        if not self.snaps:
            return
        snap = self.snaps[max(0, min(index, len(self.snaps) - 1))]
        self.custom = False
        self.set_map(snap.maps, self.labels)
        self.query_one(HeadScoreChart).cursor_step = snap.step
        self._show_info(snap)

    def _show_info(self, snap) -> None:
        parts = [f"step {snap.step}"]
        i = self.snaps.index(snap)
        measured = next((s for s in reversed(self.snaps[:i + 1]) if s.metric_value is not None), None)
        if measured is not None:  # the metric is measured at evaluations: the latest one up to here
            at = "" if measured is snap else f" (step {measured.step})"
            parts.append(f"{metric_label(measured.metric or self.metric_name)} {fmt_metric(measured.metric_value)}{at}")
        lines = ["  ".join(parts)]
        losses = [f"{name} {v:.3f}" for name, v in (("loss", snap.loss), ("val loss", snap.val_loss))
                  if v is not None and math.isfinite(v)]
        if losses:
            lines.append("  ".join(losses))
        if snap.answer is not None:
            probe = probe_to_field(self.recorded_probe)
            lines.append(f"{probe[:24]} → {probe_to_field(snap.answer)[:40]}")
        chart = self.query_one(HeadScoreChart)
        layer, head = chart.selected
        score = snap.scores.get(chart.kind) if chart.kind else None
        value = None if score is None or layer >= score.shape[0] or head >= score.shape[1] else score[layer, head]
        if value is not None:
            lines.append(f"L{layer + 1}H{head + 1} {NAMES.get(chart.kind, chart.kind)} score {value:.2f}")
        self.query_one("#attn-info", Static).update(safe_text("\n".join(lines), keep_newlines=True))

    def _refresh_chart(self) -> None:
        self._chart_dirty = False
        chart = self.query_one(HeadScoreChart)
        kinds = [k for k in (self.snaps[-1].scores if self.snaps else {})
                 if all(k in s.scores for s in self.snaps)]
        scores = {k: np.stack([np.asarray(s.scores[k], dtype=np.float32) for s in self.snaps]) for k in kinds}
        metric = [np.nan if s.metric_value is None else s.metric_value for s in self.snaps]
        chart.set_data([s.step for s in self.snaps], scores, metric_label(self.metric_name), metric)

    def _sync_colorbar(self) -> None:
        low, high = self.map.color_range
        self.query_one(ColorBar).set_range(low, high, "absolute" if self.map.scale == "absolute" else "this map")

    def on_timeline_bar_seek(self, message: TimelineBar.Seek) -> None:
        message.stop()
        if self.app.pump is not None:
            self.app.pump.probe_live = False  # the recording is on screen: no live probes needed
        self.show_index(message.index)

    def on_attention_map_view_changed(self, message: AttentionMap.ViewChanged) -> None:
        self.query_one(HeadScoreChart).selected = (message.layer, message.head)
        self._sync_colorbar()
        if self.snaps and not self.custom:
            self._show_info(self.snaps[self.bar.index])

    # ---- keys --------------------------------------------------------------------------------

    def action_play(self) -> None:
        self.bar.action_play()

    def action_scrub(self, delta: int) -> None:
        self.bar.action_step(delta)

    def action_first(self) -> None:
        self.bar.action_first()

    def action_newest(self) -> None:
        self.bar.action_newest()

    def action_speed(self, delta: int) -> None:
        self.bar.action_speed(delta)

    def action_score_kind(self) -> None:
        self.query_one(HeadScoreChart).cycle_kind()
        if self.snaps and not self.custom:
            self._show_info(self.snaps[self.bar.index])

    # ---- ablation ----------------------------------------------------------------------------

    def action_toggle_off(self) -> None:
        """Add the map's layer/head to the heads to switch off, or take it out again."""
        if not self.map.has_data:
            self.app.notify("no model yet: start training or load a save", severity="warning")
            return
        head = (self.map.map_layer, self.map.head)
        self.off = [h for h in self.off if h != head] if head in self.off else sorted([*self.off, head])
        self.ablation_text = ""
        self._show_ablation()

    def action_ablation_mode(self) -> None:
        self.mode = ABLATION_MODES[(ABLATION_MODES.index(self.mode) + 1) % len(ABLATION_MODES)]
        self.ablation_text = ""
        self._show_ablation()

    def _show_ablation(self) -> None:
        off = heads_text(self.off) if self.off else "none, o adds"
        lines = [f"heads off: {off}  [{self.mode}]"]
        if self.ablation_text:
            lines.append(self.ablation_text)
        self.query_one("#ablation-status", Static).update("\n".join(lines))

    def action_ablate(self) -> None:
        """Re-measure the task metric without the selected heads (in a worker)."""
        app = self.app
        if not self.off:
            app.notify("pick heads first: o switches the map's head off", severity="warning")
            return
        if app.trainer is None and not app.loaded:
            app.notify("no model yet: start training or load a save", severity="warning")
            return
        self.ablation_text = f"measuring {metric_label(self.metric_name)} without {heads_text(self.off)}…"
        self._show_ablation()
        trainer = None if (self.from_save and app.loaded) else app.trainer
        self._ablate(trainer, app.loaded, list(self.off), self.mode)

    @work(thread=True, exclusive=True, group="ablate")
    def _ablate(self, trainer, loaded, heads, mode) -> None:
        try:
            from core.interp import evaluate_ablation
            if trainer is not None:
                task, model = trainer.task, trainer.snapshot()
            else:
                from core.tasks import make_task
                model, _, cfg = loaded
                task, model = make_task(cfg), model.snapshot()
            out = evaluate_ablation(task, model, heads, mode=mode)
            self.post_message(AblationDone(heads, mode, task.metric, out["base"].get(task.metric),
                                           out["ablated"].get(task.metric)))
        except Exception as e:  # a failure is shown, never raised into the app
            self.post_message(AblationDone(heads, mode, "", None, None, describe(e)))

    def on_ablation_done(self, message: AblationDone) -> None:
        message.stop()
        if message.error:
            self.ablation_text = f"ablation failed: {message.error}"
        else:
            self.ablation_text = (f"{metric_label(message.metric)} {fmt_metric(message.base)} → "
                                  f"{fmt_metric(message.ablated)} without {heads_text(message.heads)}"
                                  f" ({'zeroed' if message.mode == 'zero' else 'mean-ablated'})")
        self._show_ablation()

    # ---- a save's recording ------------------------------------------------------------------

    def load_saved_timeline(self, name: str, tag: str, note: str = "") -> None:
        """Replay the save's own recorded timeline (loaded in a worker); `note` follows its name."""
        self.from_save = True
        self._load_timeline(name, tag, note)

    @work(thread=True, exclusive=True, group="timeline")
    def _load_timeline(self, name: str, tag: str, note: str) -> None:
        source = f"save {name} ({tag}){note}"
        try:
            from core.timeline import load_timeline
            self.post_message(TimelineLoaded(load_timeline(name, tag), source))
        except Exception as e:  # a missing or damaged recording is reported, the save still loads
            self.post_message(TimelineLoaded(None, source, describe(e)))

    def on_timeline_loaded(self, message: TimelineLoaded) -> None:
        message.stop()
        if message.error or message.timeline is None:
            self.app.notify(f"{message.source}: no recorded timeline to replay ({message.error})",
                            severity="warning")
            return
        tl = message.timeline
        self.reset_timeline(tl.snapshots, tl.labels, tl.probe, tl.marks, message.source)
        if self.snaps:
            self.bar.action_first()
            self.bar.action_play()
