"""LRSpark: a one-line learning-rate sparkline with its current value, over a bounded window."""

from __future__ import annotations

import math
from collections import deque

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Label, Sparkline

from core.text import safe_text


class LRSpark(Widget):
    """Label ("lr 1.00e-03") followed by a Sparkline of the last `maxlen` values."""

    DEFAULT_CSS = """
    LRSpark {
        layout: horizontal;
        height: 1;
        width: 1fr;
    }
    LRSpark > Label {
        width: auto;
        min-width: 14;
        padding: 0 1 0 0;
        color: $text-muted;
    }
    LRSpark > Sparkline {
        width: 1fr;
    }
    """

    def __init__(self, label: str = "lr", *, maxlen: int = 200, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.label = safe_text(label)
        self._values: deque[float] = deque(maxlen=maxlen)

    def compose(self) -> ComposeResult:
        yield Label(self._label_text())
        yield Sparkline([], summary_function=max)

    @property
    def values(self) -> list[float]:
        """The values in the window, oldest first."""
        return list(self._values)

    @property
    def last(self) -> float | None:
        return self._values[-1] if self._values else None

    def push(self, value: float) -> None:
        """Append one value (non-finite values are ignored) and redraw."""
        value = float(value)
        if not math.isfinite(value):
            return
        self._values.append(value)
        self._sync()

    def extend(self, values) -> None:
        """Append several values (non-finite ones ignored) and redraw once."""
        finite = [float(v) for v in values if math.isfinite(float(v))]
        if finite:
            self._values.extend(finite)
            self._sync()

    def clear(self) -> None:
        self._values.clear()
        self._sync()

    def _label_text(self) -> str:
        return f"{self.label} {self.last:.2e}" if self.last is not None else f"{self.label} —"

    def _sync(self) -> None:
        if not self.is_mounted:
            return
        label, text = self.query_one(Label), self._label_text()
        label.update(text, layout=len(text) != len(str(label.content)))  # relayout only if the width changes
        self.query_one(Sparkline).data = list(self._values)
