"""LossPlot: train/val loss curves on a Plotext plot, with bounded history and throttled redraws.

add_point() only records and marks the plot dirty; a timer redraws a few times a second. History per
series is bounded: when full, the older half is averaged down by 2, so memory never grows without limit.
"""

from __future__ import annotations

import math

import numpy as np
from textual import events
from textual.binding import Binding
from textual.reactive import reactive
from textual_plotext import PlotextPlot

SERIES = ("train", "val")
EMA_CYCLE = (0.0, 0.6, 0.9, 0.98)
X_AXES = ("step", "time")
LOG_FLOOR = 1e-9  # a log plot shows smaller losses (exactly 0 once a task is solved) at this floor


def ema(values, alpha: float) -> np.ndarray:
    """Debiased exponential moving average; alpha is the smoothing weight (0 = none, 0.99 = heavy).

    Non-finite values are skipped (the average carries on from the last finite one).
    """
    x = np.asarray(values, dtype=np.float64)  # (N,)
    if alpha <= 0.0 or x.size == 0:
        return x.copy()
    out = np.empty_like(x)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(x.tolist()):
        if math.isfinite(v):
            acc = alpha * acc + (1.0 - alpha) * v
            weight = alpha * weight + (1.0 - alpha)
        out[i] = acc / weight if weight > 0.0 else np.nan
    return out


def bucket_downsample(xs, ys, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce to at most `width` points by averaging consecutive buckets of near-equal size."""
    x = np.asarray(xs, dtype=np.float64)  # (N,)
    y = np.asarray(ys, dtype=np.float64)  # (N,)
    width = max(1, int(width))
    if x.size <= width:
        return x.copy(), y.copy()
    edges = np.linspace(0, x.size, width + 1).astype(np.int64)[:-1]  # (width,) bucket starts
    counts = np.diff(np.append(edges, x.size))  # (width,)
    return np.add.reduceat(x, edges) / counts, np.add.reduceat(y, edges) / counts


class BoundedSeries:
    """Append-only (step, time, value) history holding at most max_points points."""

    def __init__(self, max_points: int = 20_000) -> None:
        if max_points < 8:
            raise ValueError(f"max_points must be >= 8, got {max_points}")
        self.max_points = max_points
        self.steps: list[float] = []
        self.times: list[float] = []
        self.values: list[float] = []
        self.compactions = 0  # how many times older points were averaged down

    def __len__(self) -> int:
        return len(self.values)

    def append(self, step: float, elapsed_s: float, value: float) -> None:
        if len(self.values) >= self.max_points:
            self._compact()
        self.steps.append(float(step))
        self.times.append(float(elapsed_s))
        self.values.append(float(value))

    def _compact(self) -> None:
        """Average the older half in pairs (its resolution halves); the newer half stays exact."""
        half = (len(self.values) // 2) & ~1  # even, so the pairs line up
        for name in ("steps", "times", "values"):
            col = getattr(self, name)
            old = np.asarray(col[:half], dtype=np.float64).reshape(-1, 2).mean(axis=1)  # (half/2,)
            setattr(self, name, old.tolist() + col[half:])
        self.compactions += 1

    def clear(self) -> None:
        self.steps, self.times, self.values = [], [], []
        self.compactions = 0


class LossPlot(PlotextPlot, can_focus=True):
    """Train (raw + EMA) and val loss against step or wall time; keys e / l / x."""

    DEFAULT_CSS = """
    LossPlot {
        width: 1fr;
        height: 1fr;
        min-height: 8;
    }
    """
    BINDINGS = [
        Binding("e", "cycle_ema", "EMA"),
        Binding("l", "toggle_log", "Log y"),
        Binding("x", "toggle_x", "Step/time"),
    ]

    ema: reactive[float] = reactive(0.9, init=False)
    log_y: reactive[bool] = reactive(False, init=False)
    x_axis: reactive[str] = reactive("step", init=False)

    def __init__(self, *, max_points: int = 20_000, refresh_interval: float = 0.5, title: str = "loss",
                 name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.history = {s: BoundedSeries(max_points) for s in SERIES}
        self.refresh_interval = refresh_interval
        self.plot_title = title
        self.downsampled = False  # whether the last redraw averaged points down to the width
        self.redraws = 0
        self.marks: list[tuple[float, float | None, str]] = []  # (step, elapsed_s, label): speed-limit changes
        self._dirty = True
        self._lines: list[tuple[list[float], list[float], str, object, str]] = []
        self._title = title

    def on_mount(self) -> None:
        self.set_interval(self.refresh_interval, self._tick)
        self.redraw()

    # ---- public API ------------------------------------------------------------------------

    def add_point(self, series: str, step: int, elapsed_s: float, value: float) -> None:
        """Record one point of "train" or "val"; the plot redraws on the next timer tick."""
        if series not in self.history:
            raise ValueError(f"series must be one of {SERIES}, got {series!r}")
        self.history[series].append(step, elapsed_s, value)
        self._dirty = True

    def add_mark(self, step: int, elapsed_s: float | None, label: str) -> None:
        """Mark a step with a vertical line and a label (e.g. where the speed limit changed)."""
        self.marks.append((float(step), None if elapsed_s is None else float(elapsed_s), label))
        self.marks = self.marks[-20:]
        self._dirty = True

    def clear(self) -> None:
        """Forget all points and marks."""
        for s in self.history.values():
            s.clear()
        self.marks = []
        self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def redraw(self) -> None:
        """Prepare the curves from the history now and repaint (the timer calls this when dirty)."""
        self._dirty = False
        self.redraws += 1
        width = max(10, self.size.width - 10 if self.size.width else 80)  # leave room for the y ticks
        self.downsampled = False
        lines: list[tuple[list[float], list[float], str, object, str]] = []
        train, val = self.history["train"], self.history["val"]
        if len(train):
            xs = self._xs(train)
            ys = np.asarray(train.values, dtype=np.float64)  # (N,)
            if self.ema > 0.0:
                lines.append(self._prepare(xs, ys, width, "train", (110, 110, 140)))
                lines.append(self._prepare(xs, ema(ys, self.ema), width, f"train ema {self.ema:g}", "cyan"))
            else:
                lines.append(self._prepare(xs, ys, width, "train", "cyan"))
        if len(val):
            lines.append(self._prepare(self._xs(val), np.asarray(val.values), width, "val", "orange", "dot"))
        self._lines = [line for line in lines if line[0]]
        self._title = (self.plot_title + (" (log)" if self.log_y else "")
                       + (" (downsampled)" if self.downsampled else ""))
        self.refresh()

    def render(self):
        # plotext's build() rescales its stored data in place (log10 applied again on every build), so
        # the prepared curves are plotted afresh for each render; they hold at most ~width points.
        plt = self.plt
        plt.clear_data()
        for xs, ys, label, color, marker in self._lines:
            plt.plot(xs, ys, label=label, color=color, marker=marker)
        if self._lines:
            marks = [(m[0] if self.x_axis == "step" else m[1], m[2]) for m in self.marks]
            marks = [(x, label) for x, label in marks if x is not None]
            x_max = max((max(xs) for xs, *_ in self._lines if xs), default=1.0) or 1.0
            for i, (x, label) in enumerate(marks):
                plt.vline(x, "red")
                later = marks[i + 1][0] if i + 1 < len(marks) else None
                if later is None or later - x > 0.15 * x_max:  # labels of close marks would overprint
                    plt.text(label, x, self._mark_y(x), color="red")
        plt.yscale("log" if self.log_y and self._lines else "linear")  # plotext fails on an empty log plot
        plt.xlabel("step" if self.x_axis == "step" else "time (s)")
        plt.title(self._title)
        return super().render()

    # ---- internals -------------------------------------------------------------------------

    def _mark_y(self, x: float) -> float:
        """Where a mark's label sits: low down early in the run (the legend is top left, and a loss
        curve starts high), high up later (the curve has come down)."""
        top = max((max(ys) for _, ys, *_ in self._lines if ys), default=1.0)
        bottom = min((min(ys) for _, ys, *_ in self._lines if ys), default=0.0)
        x_max = max((max(xs) for xs, *_ in self._lines if xs), default=1.0)
        frac = 0.1 if x < 0.3 * x_max else 0.9
        if self.log_y and bottom > 0:
            return float(10 ** (np.log10(bottom) + frac * (np.log10(top) - np.log10(bottom))))
        return bottom + frac * (top - bottom)

    def _xs(self, series: BoundedSeries) -> np.ndarray:
        return np.asarray(series.steps if self.x_axis == "step" else series.times, dtype=np.float64)

    def _prepare(self, xs: np.ndarray, ys: np.ndarray, width: int, label: str, color,
                 marker: str = "braille") -> tuple[list[float], list[float], str, object, str]:
        keep = np.isfinite(ys) & ((ys >= 0) if self.log_y else True)  # log scale cannot show < 0
        xs, ys = xs[keep], ys[keep]
        if self.log_y:
            # 0 and ever-smaller EMAs (1e-100 and on) would stretch the axis over so many decades
            # that plotext draws nothing
            ys = np.maximum(ys, LOG_FLOOR)
        if xs.size > width:
            xs, ys = bucket_downsample(xs, ys, width)
            self.downsampled = True
        return xs.tolist(), ys.tolist(), label, color, marker

    def _tick(self) -> None:
        if self._dirty:
            self.redraw()

    def on_resize(self, event: events.Resize) -> None:
        self._dirty = True

    def validate_ema(self, value: float) -> float:
        return min(max(float(value), 0.0), 0.99)

    def validate_x_axis(self, value: str) -> str:
        if value not in X_AXES:
            raise ValueError(f"x_axis must be one of {X_AXES}, got {value!r}")
        return value

    # a key press redraws at once (the timer's pace is for training updates, not for the user)
    def watch_ema(self) -> None:
        self._redraw_now()

    def watch_log_y(self) -> None:
        self._redraw_now()

    def watch_x_axis(self) -> None:
        self._redraw_now()

    def _redraw_now(self) -> None:
        if self.is_mounted:
            self.redraw()
        else:
            self._dirty = True

    def action_cycle_ema(self) -> None:
        later = [a for a in EMA_CYCLE if a > self.ema + 1e-9]
        self.ema = later[0] if later else EMA_CYCLE[0]

    def action_toggle_log(self) -> None:
        self.log_y = not self.log_y

    def action_toggle_x(self) -> None:
        self.x_axis = "time" if self.x_axis == "step" else "step"
