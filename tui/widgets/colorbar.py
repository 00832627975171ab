"""ColorBar: one line showing the heatmap's colour ramp and the weights at its two ends."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from tui.widgets.heatmap import N_LEVELS, level_color


class ColorBar(Widget):
    """`low ████ high  (scale)`: the ramp drawn in as many cells as fit (at most 24)."""

    DEFAULT_CSS = """
    ColorBar { height: 1; width: 1fr; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.low, self.high, self.note = 0.0, 1.0, "absolute"

    def set_range(self, low: float, high: float, note: str) -> None:
        """The weights at the dark and bright ends, and what the range means (e.g. 'absolute')."""
        self.low, self.high, self.note = float(low), float(high), note
        self.refresh()

    @property
    def text(self) -> str:
        return self.render_line(0).text

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y != 0:
            return Strip.blank(width)
        left, right = f"{self.low:g} ", f" {self.high:.3g}  {self.note}"
        n = max(0, min(24, width - len(left) - len(right)))
        segs = [Segment(left)]
        for i in range(n):  # the map's own quantised colours, so the bar shows exactly what the cells use
            level = round(i / max(1, n - 1) * (N_LEVELS - 1))
            segs.append(Segment(" ", Style(bgcolor=level_color(level))))
        segs.append(Segment(right))
        return Strip(segs).crop_extend(0, width, None)
