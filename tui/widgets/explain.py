"""Explain: a one-line note for a learner on what a view of the model's insides shows.

The texts live here so the help screen and every view read the same words. The `i` key toggles all
of them at once (the app sets the screen class -no-explain).
"""

from __future__ import annotations

from textual.widgets import Static

TEXTS = {
    "map-reversal": ("Row asks, column is read, bright = more weight: watch the anti-diagonal form "
                     "(each letter learns to read its mirror)."),
    "map-causal": ("Row = a character, column = an earlier one it reads. Just below the diagonal: a "
                   "previous-token head; a stripe offset by the repeat length: an induction (copy) head."),
    "colorbar": "Colour: weight 0 (dark) to 1 (bright); a: each map's own range.",
    "timeline": "Recorded training steps: b/f or the mouse scrub, space replays (< > speed), end follows live.",
    "scores": "Each line: one head's pattern score (0-1) over training; bright = the map's head, orange = the metric.",
    "ablation": "o switches the map's head off, v re-measures the task: a big drop = the task needs that head.",
    "nextchar": ("For each character of the last reply: the five the model thought most likely there "
                 "(raw softmax, temperature 1). left/right or the mouse pick a character."),
}
# the README section that shows each view (linked from the help screen)
README_SECTION = "README.md, section \"What am I looking at?\""


class Explain(Static):
    """A muted one-line explanation; hidden with the others when the screen has class -no-explain."""

    DEFAULT_CSS = """
    Explain { color: $text-muted; text-style: italic; height: auto; padding: 0 1; }
    """  # hidden by app.tcss while the screen has class -no-explain (DEFAULT_CSS is scoped to the widget)

    def __init__(self, key: str, *, id: str | None = None) -> None:
        super().__init__(TEXTS[key], id=id, classes="explain", markup=False)
        self.key = key

    def use(self, key: str) -> None:
        """Show the text for another view (e.g. the causal map instead of the reversal one)."""
        if key != self.key:
            self.key = key
            self.update(TEXTS[key])
