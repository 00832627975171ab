"""NextCharView: the last reply, character by character, with the model's top candidates for each.

Takes plain data: the generated characters and, for each, a list of (candidate, probability) pairs
(the model's raw softmax, highest first). The cursor (left/right, home/end, or the mouse over a
character) picks a character; the line below lists its candidates with a bar for each probability.
"""

from __future__ import annotations

from typing import Sequence

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from core.text import safe_label

BAR_CELLS = 6
HINT = "next-character view: the last reply's characters appear here with the model's top 5 for each"


class NextCharView(Widget, can_focus=True):
    """Line 0: the reply (cursor on one character); line 1: that character's candidates."""

    DEFAULT_CSS = """
    NextCharView { height: 2; width: 1fr; }
    NextCharView > .next-char--cursor { background: $accent; color: $text; text-style: bold; }
    NextCharView > .next-char--char { color: $text; }
    NextCharView > .next-char--hint { color: $text-muted; text-style: italic; }
    NextCharView > .next-char--chosen { color: $success; text-style: bold; }
    NextCharView:focus > .next-char--char { text-style: underline; }
    """
    COMPONENT_CLASSES = {"next-char--cursor", "next-char--char", "next-char--hint", "next-char--chosen"}
    BINDINGS = [
        Binding("left", "move(-1)", "Prev char", show=False),
        Binding("right", "move(1)", "Next char", show=False),
        Binding("home", "move(-1000000)", "First char", show=False),
        Binding("end", "move(1000000)", "Last char", show=False),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.chars: list[str] = []
        self.candidates: list[list[tuple[str, float]]] = []
        self._x0 = 0  # first character shown (the line scrolls to keep the cursor in view)

    def set_data(self, chars: Sequence[str], candidates: Sequence[Sequence[tuple[str, float]]]) -> None:
        """A reply and the candidates for each of its characters (same length)."""
        if len(chars) != len(candidates):
            raise ValueError(f"{len(chars)} characters but {len(candidates)} candidate lists")
        self.chars = [str(c) for c in chars]
        self.candidates = [[(str(c), float(p)) for c, p in cands] for cands in candidates]
        self._x0 = 0
        self.set_reactive(NextCharView.cursor, 0)
        self.refresh()

    def clear(self) -> None:
        self.set_data([], [])

    def validate_cursor(self, value: int) -> int:
        return max(0, min(int(value), len(self.chars) - 1)) if self.chars else 0

    def watch_cursor(self) -> None:
        self.refresh()

    def action_move(self, delta: int) -> None:
        self.cursor += delta

    def candidates_text(self) -> str:
        """The candidates of the character under the cursor, as shown on line 1."""
        if not self.chars:
            return ""
        parts = []
        for c, p in self.candidates[self.cursor]:
            bar = "█" * max(0, round(p * BAR_CELLS))
            parts.append(f"{safe_label(c)} {p:.2f} {bar}")
        return f"'{safe_label(self.chars[self.cursor])}' #{self.cursor + 1}:  " + "  ".join(parts)

    def _cells(self) -> list[str]:
        return [safe_label(c) for c in self.chars]

    def _scroll(self, width: int) -> None:
        cells = self._cells()
        used = sum(len(c) for c in cells[self._x0:self.cursor + 1])
        while self.cursor < self._x0:
            self._x0 -= 1
        while used > width and self._x0 < self.cursor:
            used -= len(cells[self._x0])
            self._x0 += 1

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if not self.chars:
            if y == 0:
                hint = self.get_component_rich_style("next-char--hint")
                return Strip([Segment(HINT, hint)]).crop_extend(0, width, None)
            return Strip.blank(width)
        if y == 1:
            return self._candidates_line(width)
        if y != 0:
            return Strip.blank(width)
        self._scroll(width)
        char = self.get_component_rich_style("next-char--char")
        cursor = self.get_component_rich_style("next-char--cursor")
        segs = [Segment(c, cursor if i == self.cursor else char)
                for i, c in enumerate(self._cells()) if i >= self._x0]
        return Strip(segs).crop_extend(0, width, None)

    def _candidates_line(self, width: int) -> Strip:
        chosen = self.get_component_rich_style("next-char--chosen")
        segs = [Segment(f"'{safe_label(self.chars[self.cursor])}' #{self.cursor + 1}: ")]
        for c, p in self.candidates[self.cursor]:
            style = chosen if c == self.chars[self.cursor] else None
            segs.append(Segment(f" {safe_label(c)} {p:.2f}", style))
            segs.append(Segment(" " + "█" * max(0, round(p * BAR_CELLS)) + " ", chosen if style else None))
        return Strip(segs).crop_extend(0, width, None)

    def _index_at(self, x: int) -> int | None:
        pos = 0
        for i, c in enumerate(self._cells()[self._x0:], start=self._x0):
            if pos <= x < pos + len(c):
                return i
            pos += len(c)
        return None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if event.y == 0 and self.chars:
            i = self._index_at(event.x)
            if i is not None:
                self.cursor = i

    def on_click(self, event: events.Click) -> None:
        self.on_mouse_move(event)  # a terminal without hover still picks with a click
