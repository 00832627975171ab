"""HeadScoreChart: one line per attention head for a head score over the recorded steps.

Takes plain data: recorded steps (N,), scores {kind: (N, L, nh) array}, and optionally the task metric
at those steps (N,), NaN where it was not measured. The selected head is drawn bright, the others dim;
the metric shares the time axis and the [0, 1] range, so a head forming and the metric jumping line up.
A vertical line marks the step shown in the attention map.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from tui.widgets.lossplot import nice_ticks, tick_label

DIM = (95, 95, 120)
SELECTED = "cyan"
METRIC = "orange"
CURSOR = (255, 64, 255)
NAMES = {"antidiagonal": "anti-diagonal", "prev_token": "previous-token", "induction": "induction",
         "sink": "first-token (sink)"}


class HeadScoreChart(PlotextPlot):
    """Scores of every head over training; `kind` picks the score, `selected` the highlighted head."""

    DEFAULT_CSS = """
    HeadScoreChart { width: 1fr; height: 1fr; min-height: 6; }
    """

    kind: reactive[str] = reactive("", init=False)
    selected: reactive[tuple[int, int]] = reactive((0, 0), init=False)
    cursor_step: reactive[float | None] = reactive(None, init=False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.steps = np.zeros(0)  # (N,)
        self.scores: dict[str, np.ndarray] = {}  # kind -> (N, L, nh)
        self.metric_name: str | None = None
        self.metric = np.zeros(0)  # (N,) NaN where not measured

    def set_data(self, steps, scores: Mapping[str, np.ndarray], metric_name: str | None = None,
                 metric=None) -> None:
        """Replace the series; each scores value is (N, L, nh) for the N recorded steps."""
        self.steps = np.asarray(steps, dtype=np.float64)  # (N,)
        self.scores = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}  # (N, L, nh) each
        for k, v in self.scores.items():
            if v.ndim != 3 or v.shape[0] != self.steps.size:
                raise ValueError(f"scores[{k!r}] must be (N, L, nh) with N = {self.steps.size}, got {v.shape}")
        self.metric_name = metric_name
        self.metric = (np.full(self.steps.size, np.nan) if metric is None
                       else np.asarray(metric, dtype=np.float64))  # (N,)
        if self.kind not in self.scores:
            self.set_reactive(HeadScoreChart.kind, next(iter(self.scores), ""))
        self.refresh()

    @property
    def kinds(self) -> list[str]:
        return list(self.scores)

    def cycle_kind(self) -> None:
        kinds = self.kinds
        if kinds:
            self.kind = kinds[(kinds.index(self.kind) + 1) % len(kinds)] if self.kind in kinds else kinds[0]

    def value(self, kind: str, layer: int, head: int, index: int) -> float | None:
        """The score of one head at recorded index `index`, or None."""
        arr = self.scores.get(kind)
        if arr is None or not (0 <= index < arr.shape[0]) or layer >= arr.shape[1] or head >= arr.shape[2]:
            return None
        return float(arr[index, layer, head])

    # kind, selected and cursor_step repaint the chart by themselves (reactive's repaint)

    def render(self):
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        arr = self.scores.get(self.kind)
        name = NAMES.get(self.kind, self.kind)
        if arr is None or self.steps.size == 0:
            plt.title("head scores: none recorded yet")
            return super().render()
        xs = self.steps.tolist()
        sel = self.selected
        n_layer, n_head = arr.shape[1:]
        for li in range(n_layer):
            for hi in range(n_head):
                if (li, hi) != sel:
                    plt.plot(xs, arr[:, li, hi].tolist(), color=DIM, marker="braille")
        if sel[0] < n_layer and sel[1] < n_head:
            plt.plot(xs, arr[:, sel[0], sel[1]].tolist(), color=SELECTED, marker="braille")
        finite = np.isfinite(self.metric)
        metric = finite.any() and self.metric_name
        if metric:
            plt.plot(self.steps[finite].tolist(), self.metric[finite].tolist(), color=METRIC, marker="dot")
        if self.cursor_step is not None:
            plt.vline(float(self.cursor_step), CURSOR)
        plt.ylim(0, 1)
        yticks = [0, 0.25, 0.5, 0.75, 1] if (self.size.height or 0) >= 14 else [0, 0.5, 1]
        plt.yticks(yticks, [f"{t:g}" for t in yticks])
        xticks = nice_ticks(float(self.steps.min()), float(self.steps.max()))  # steps: 0, 100, 200 (not 120.5)
        plt.xticks(xticks, [tick_label(t, "step") for t in xticks])
        plt.xlabel("step")
        # no legend box (it would cover the start of the curves): the explanation line names the colours
        plt.title(f"{name} score" + (f", {self.metric_name}" if metric else ""))
        return super().render()
