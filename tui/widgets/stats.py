"""StatsPanel: the numbers of a run (step, losses, speed, ETA, params, metric) in a tidy two-column list."""

from __future__ import annotations

import math
from typing import Any, Mapping

from rich.text import Text
from textual.widgets import Static

from core.text import safe_text

UNKNOWN = "—"


def _num(x: Any) -> float | None:
    """x as a finite float, or None (None, NaN, inf, non-numbers)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_si(n: Any) -> str:
    """Compact count: 950, 12.3k, 0.82M, 1.20G; '—' when unknown."""
    v = _num(n)
    if v is None:
        return UNKNOWN
    a = abs(v)
    if a < 1_000:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    if a < 100_000:
        return f"{v / 1e3:.1f}k"
    if a < 100_000_000:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e9:.2f}G"


def fmt_eta(seconds: Any) -> str:
    """mm:ss, or h:mm:ss from an hour up; '—' when unknown or negative."""
    v = _num(seconds)
    if v is None or v < 0:
        return UNKNOWN
    total = int(round(v))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_float(x: Any, digits: int = 4) -> str:
    v = _num(x)
    return UNKNOWN if v is None else f"{v:.{digits}f}"


def fmt_int(x: Any) -> str:
    v = _num(x)
    return UNKNOWN if v is None else f"{int(v):,}"


def format_stats(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows from a stats dict; missing values show '—'.

    Keys: step, max_steps, epoch, loss, val_loss, best_val, tokens_per_s, ms_per_step (or ms),
    eta_s (else estimated from ms_per_step and max_steps), params, grad_norm, metric_name, metric_value,
    loss_on ("answers" when the run's loss counts answer characters alone: the loss rows say so),
    weights_avg (train.ema's decay when evaluations use the weights' running average: a row says so),
    teachers (how many saves' mean probabilities the training loss is measured against, train.teachers).
    """
    step, max_steps = _num(d.get("step")), _num(d.get("max_steps"))
    ms = _num(d.get("ms_per_step", d.get("ms")))
    eta = d.get("eta_s")
    if _num(eta) is None and None not in (step, max_steps, ms):
        eta = max(0.0, (max_steps - step) * ms / 1000.0)
    step_txt = fmt_int(step) + (f" / {fmt_int(max_steps)}" if max_steps is not None else "")
    metric_name = safe_text(str(d.get("metric_name") or "metric"))[:24]
    metric = d.get("metric_value")
    metric_txt = fmt_float(metric, 4) if not isinstance(metric, str) else safe_text(metric)[:24]
    on = " (ans)" if d.get("loss_on") == "answers" else ""
    return [
        ("step", step_txt),
        ("epoch", fmt_float(d.get("epoch"), 2)),
        ("loss" + on, fmt_float(d.get("loss"), 4)),
        ("val loss" + on, fmt_float(d.get("val_loss"), 4)),
        ("best val" + on, fmt_float(d.get("best_val"), 4)),
        ("tokens/s", fmt_si(d.get("tokens_per_s"))),
        ("ms/step", fmt_float(ms, 1)),
        ("ETA", fmt_eta(eta)),
        ("params", fmt_si(d.get("params"))),
        *([("weights", f"avg {d['weights_avg']:g}")] if _num(d.get("weights_avg")) else []),
        *([("teachers", f"{fmt_int(d['teachers'])} save{'s' * (d['teachers'] != 1)}")] if _num(d.get("teachers")) else []),
        ("grad norm", fmt_float(d.get("grad_norm"), 3)),
        (metric_name, metric_txt),
    ]


class StatsPanel(Static):
    """Shows the latest run statistics; update_stats merges partial dicts (step and eval events)."""

    DEFAULT_CSS = """
    StatsPanel {
        width: 1fr;
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        self.stats: dict[str, Any] = {}
        self.room = 0  # the width inside the padding, known once laid out (0: no limit)
        super().__init__(self._render_text(), name=name, id=id, classes=classes)

    def update_stats(self, d: Mapping[str, Any]) -> None:
        """Merge d into the shown stats (a key set to None shows '—') and redraw."""
        self.stats.update(d)
        self.update(self._render_text(), layout=False)  # always the same rows: no relayout of the screen

    def clear_stats(self) -> None:
        self.stats.clear()
        self.update(self._render_text())

    def rows(self) -> list[tuple[str, str]]:
        """The (label, value) rows as currently shown."""
        return format_stats(self.stats)

    def on_resize(self, event) -> None:
        self.room = self.content_size.width
        self.update(self._render_text(), layout=False)

    def _render_text(self) -> Text:
        rows = self.rows()
        label_w = max(len(label) for label, _ in rows)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (label, value) in enumerate(rows):
            if i:
                text.append("\n")
            # values start in one column; a row too long for a narrow panel ("step  215 / 6,000" at 80
            # columns) moves its value left instead of wrapping onto the next row
            gap = label_w - len(label) + 2
            if self.room and len(label) + gap + len(value) > self.room:
                gap = max(1, self.room - len(label) - len(value))
            text.append(label + " " * gap, style="dim")
            text.append(value, style="bold" if value != UNKNOWN else "dim")
        return text
