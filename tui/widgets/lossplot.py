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
RUN_COLORS = ((0, 200, 255), (255, 150, 0), (220, 90, 255), (90, 220, 90), (255, 90, 90), (240, 230, 90))
X_TICKS = 5  # labelled ticks on the x axis


def nice_ticks(lo: float, hi: float, n: int = X_TICKS, integer: bool = True) -> list[float]:
    """About n round tick values covering [lo, hi] (whole numbers when `integer`: steps are counts)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [round(lo)] if integer and math.isfinite(lo) else ([lo] if math.isfinite(lo) else [])
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, float(round(step)))
    first = math.ceil(lo / step) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(float(round(t)) if integer else t)
        t += step
    return ticks


def tick_label(value: float, axis: str) -> str:
    """Steps as whole numbers with thousands cut to k; times as m:ss."""
    if axis == "time":
        if value < 10 and not float(value).is_integer():
            return f"{value:.1f}s"
        m, s = divmod(int(round(value)), 60)
        return f"{m}:{s:02d}" if m else f"{s}s"
    v = int(round(value))
    return f"{v // 1000}k" if v >= 10_000 and v % 1000 == 0 else str(v)


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
        self._lines: list[tuple[list[float], list[float], str, object, str, str]] = []
        self._title = title
        self.overlay: list[tuple[str, list, list]] = []  # compared runs: (name, train pts, val pts)

    def on_mount(self) -> None:
        self.set_interval(self.refresh_interval, self._tick)
        self.redraw()

    # ---- public API ------------------------------------------------------------------------

    def add_point(self, series: str, step: int, elapsed_s: float, value: float) -> None:
        """Record one point of "train" or "val"; the plot redraws on the next timer tick."""
        if series not in self.history:
            raise ValueError(f"series must be one of {SERIES}, got {series!r}")
        self.history[series].append(step, elapsed_s, value)
        self._dirty = self._dirty or not self.overlay  # hidden under a comparison: no redraw needed

    def set_overlay(self, runs: list[tuple[str, list, list]]) -> None:
        """Show these runs instead of the live curves: (name, [(step, time, loss)], [(step, time, val)]).

        One colour per run; the legend names the runs; an empty list returns to the live curves.
        """
        fresh = [r[0] for r in runs] != [r[0] for r in self.overlay]
        self.overlay = list(runs)
        if fresh:
            self._redraw_now()  # a new set of runs, chosen by a key: at once
        else:
            self._dirty = True  # new points of the same runs: at the next timer tick

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
        lines: list[tuple[list[float], list[float], str, object, str, str]] = []
        train, val = self.history["train"], self.history["val"]
        if self.overlay:
            lines = self._overlay_lines(width)
        elif len(train):
            xs = self._xs(train)
            ys = np.asarray(train.values, dtype=np.float64)  # (N,)
            if self.ema > 0.0:
                lines.append(self._prepare(xs, ys, width, "train", (110, 110, 140)))
                lines.append(self._prepare(xs, ema(ys, self.ema), width, f"train ema {self.ema:g}", "cyan"))
            else:
                lines.append(self._prepare(xs, ys, width, "train", "cyan"))
        if len(val) and not self.overlay:
            lines += self._val_lines(self._xs(val), np.asarray(val.values), width, "val", "orange")
        self._lines = [line for line in lines if line[0]]
        title = self.plot_title if not self.overlay else (
            f"compare {len(self.overlay)} runs: lines train" + (f" (ema {self.ema:g})" if self.ema else "")
            + ", dots val")
        self._title = title + (" (log)" if self.log_y else "") + (" (downsampled)" if self.downsampled else "")
        self.refresh()

    def render(self):
        # plotext's build() rescales its stored data in place (log10 applied again on every build), so
        # the prepared curves are plotted afresh for each render; they hold at most ~width points.
        plt = self.plt
        plt.clear_data()
        for xs, ys, label, color, marker, kind in self._lines:
            draw = plt.scatter if kind == "scatter" else plt.plot
            draw(xs, ys, label=label or None, color=color, marker=marker)
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
        bottom, top = self._ylim()
        plt.ylim(bottom, top)
        yticks = self._yticks(bottom, top)
        plt.yticks(yticks, [f"{t + 0.0:g}" for t in yticks])  # (+ 0.0: never "-0")
        xs_all = [x for line in self._lines for x in line[0]]
        if xs_all:
            ticks = nice_ticks(min(xs_all), max(xs_all), integer=self.x_axis == "step" or max(xs_all) >= 10)
            plt.xticks(ticks, [tick_label(t, self.x_axis) for t in ticks])
        else:
            plt.xticks([], [])
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
                 marker: str = "braille") -> tuple[list[float], list[float], str, object, str, str]:
        keep = np.isfinite(ys) & ((ys >= 0) if self.log_y else True)  # log scale cannot show < 0
        xs, ys = xs[keep], ys[keep]
        if self.log_y:
            # 0 and ever-smaller EMAs (1e-100 and on) would stretch the axis over so many decades
            # that plotext draws nothing
            ys = np.maximum(ys, LOG_FLOOR)
        if xs.size > width:
            xs, ys = bucket_downsample(xs, ys, width)
            self.downsampled = True
        return xs.tolist(), ys.tolist(), label, color, marker, "plot"

    def _overlay_lines(self, width: int) -> list:
        lines = []
        for i, (name, train, val) in enumerate(self.overlay):
            color = RUN_COLORS[i % len(RUN_COLORS)]
            if train:
                xs = np.asarray([p[0 if self.x_axis == "step" else 1] for p in train], dtype=np.float64)
                ys = ema(np.asarray([p[2] for p in train], dtype=np.float64), self.ema)
                lines.append(self._prepare(xs, ys, width, name, color))
            if val:
                xs = np.asarray([p[0 if self.x_axis == "step" else 1] for p in val], dtype=np.float64)
                lines += self._val_lines(xs, np.asarray([p[2] for p in val]), width, "" if train else name, color)
        return lines

    def _val_lines(self, xs, ys, width: int, label: str, color) -> list:
        """A thin line through the evaluations plus a dot at each one: two evaluations show as two dots."""
        line = self._prepare(xs, ys, width, label, color)
        dots = self._prepare(xs, ys, width, "", color, "dot")
        return [line, dots[:5] + ("scatter",)]

    def _ylim(self) -> tuple[float | None, float | None]:
        """Room above the curves for the legend (plotext draws it in the top-left corner, over the
        start of a falling loss curve): the y range grows by as many rows as the legend needs."""
        labelled = sum(1 for line in self._lines if line[2])
        ys = [y for line in self._lines for y in line[1]]
        if not labelled or not ys:
            return None, None
        if self.log_y:
            ys = [math.log10(max(y, LOG_FLOOR)) for y in ys]
        lo, hi = min(ys), max(ys)
        span = (hi - lo) or max(abs(hi), 1.0)
        rows = self._plot_rows()
        need = labelled + 1
        top = hi + span * need / max(1, rows - need)
        bottom = lo - span * 0.02
        return (max(0.0, bottom) if lo >= 0 and not self.log_y else bottom), top  # a loss axis never shows -0.07

    def _plot_rows(self) -> int:
        """Rows of the plotting area: the title, x ticks, x label and the frame take the rest."""
        return max(4, (self.size.height or 20) - 5)

    def _yticks(self, bottom: float | None, top: float | None) -> list[float]:
        """Round y ticks inside the axis (bottom, top; log10 of the loss on a log plot): 0, 0.5, 1, ...;
        on a log plot the powers of ten (1, 0.1, 0.01), over a narrow range 1, 2 and 5 of each, so no
        label reads 2.5417 or 19.8292."""
        if bottom is None or top is None or not top > bottom:
            return []
        most = max(2, min(8, self._plot_rows() // 2))  # a tick every other row at most
        if not self.log_y:
            return [t for t in nice_ticks(bottom, top, n=min(most, 6), integer=False) if bottom <= t <= top]
        first, last = math.ceil(bottom - 1e-9), math.floor(top + 1e-9)
        if last - first >= 2:
            decades = list(range(first, last + 1))
            return [10.0 ** k for k in decades[::math.ceil(len(decades) / most)]]
        ticks = [m * 10.0 ** k for k in range(first - 1, last + 1) for m in (1, 2, 5)
                 if bottom <= math.log10(m * 10.0 ** k) <= top]
        if len(ticks) >= 2:
            return ticks
        return [t for t in nice_ticks(10 ** bottom, 10 ** top, n=4, integer=False) if t > 0]

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
