"""TimelineBar: a scrubber over the recorded steps of a training timeline, with playback and "live".

Takes plain data: the list of recorded steps (one per snapshot) and the steps where the speed limit
changed. Each snapshot gets an equal share of the bar (the schedule is dense early, sparse later, so a
linear step axis would crowd the early, interesting steps into one cell). Posts Seek(index) when the
user or the playback timer moves; "live" means: follow the newest snapshot as it arrives.
"""

from __future__ import annotations

from typing import Sequence

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget

PLAY_SPEEDS = (1, 2, 5, 10, 20)  # snapshots a second
DEFAULT_SPEED = 5


class TimelineBar(Widget, can_focus=True):
    """Two lines: the bar (knob at the shown snapshot, marks where the speed limit changed) and a status."""

    DEFAULT_CSS = """
    TimelineBar { height: 2; width: 1fr; }
    TimelineBar > .timeline-bar--track { color: $text-muted; }
    TimelineBar > .timeline-bar--done { color: $accent; }
    TimelineBar > .timeline-bar--knob { color: $warning; text-style: bold; }
    TimelineBar > .timeline-bar--mark { color: $error; }
    TimelineBar > .timeline-bar--status { color: $text; }
    TimelineBar:focus > .timeline-bar--status { text-style: bold; }
    """
    COMPONENT_CLASSES = {"timeline-bar--track", "timeline-bar--done", "timeline-bar--knob",
                         "timeline-bar--mark", "timeline-bar--status"}
    BINDINGS = [
        Binding("left", "step(-1)", "Back", show=False),
        Binding("right", "step(1)", "Forward", show=False),
        Binding("pageup", "jump(-0.1)", "Back 10%", show=False),
        Binding("pagedown", "jump(0.1)", "Forward 10%", show=False),
    ]

    class Seek(Message):
        """The shown snapshot changed by the user or the playback (not by live following)."""

        def __init__(self, bar: TimelineBar, index: int) -> None:
            super().__init__()
            self.bar = bar
            self.index = index

        @property
        def control(self) -> TimelineBar:
            return self.bar

    index: reactive[int] = reactive(0, init=False)
    live: reactive[bool] = reactive(True, init=False)
    playing: reactive[bool] = reactive(False, init=False)
    speed: reactive[int] = reactive(DEFAULT_SPEED, init=False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.steps: list[int] = []
        self.marks: list[int] = []
        self.source = ""  # e.g. "recording" or "save rev (best)"
        self._timer: Timer | None = None

    # ---- data ------------------------------------------------------------------------------

    def set_steps(self, steps: Sequence[int], marks: Sequence[int] = ()) -> None:
        """The recorded steps (ascending); live mode moves to the newest."""
        self.steps = [int(s) for s in steps]
        self.marks = [int(s) for s in marks]
        if self.live and self.steps:
            self.set_reactive(TimelineBar.index, len(self.steps) - 1)
        self.set_reactive(TimelineBar.index, self._clamp(self.index))
        self.refresh()

    @property
    def step(self) -> int | None:
        """The recorded step shown, or None without data."""
        return self.steps[self.index] if self.steps else None

    def _clamp(self, i: int) -> int:
        return max(0, min(int(i), len(self.steps) - 1)) if self.steps else 0

    def seek(self, index: int, *, live: bool = False) -> None:
        """Show snapshot `index` (clamped) and tell the pane."""
        self.live = live
        self.index = self._clamp(index)
        self.post_message(self.Seek(self, self.index))

    def validate_speed(self, value: int) -> int:
        return min(PLAY_SPEEDS, key=lambda s: abs(s - value))

    # index, live and speed repaint the bar by themselves (reactive's repaint); speed also re-times play
    def watch_speed(self) -> None:
        if self.playing:
            self._start_timer()

    def watch_playing(self, playing: bool) -> None:
        if playing:
            self._start_timer()
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _start_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(1 / self.speed, self._advance)

    def _advance(self) -> None:
        if not self.steps or self.index >= len(self.steps) - 1:
            self.playing = False
            self.live = True  # at the newest step: follow training from here
            return
        self.seek(self.index + 1)

    # ---- actions ---------------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        self.playing = False
        self.seek(self.index + delta)

    def action_jump(self, fraction: float) -> None:
        self.playing = False
        self.seek(self.index + round(fraction * max(1, len(self.steps))) or (1 if fraction > 0 else -1))

    def action_first(self) -> None:
        self.playing = False
        self.seek(0)

    def action_newest(self) -> None:
        """Jump to the newest snapshot and follow new ones (live)."""
        self.playing = False
        self.seek(len(self.steps) - 1, live=True)

    def action_play(self) -> None:
        """Play from the shown snapshot (from the start when at the end); pause when playing."""
        if self.playing:
            self.playing = False
            return
        if not self.steps:
            return
        if self.index >= len(self.steps) - 1:
            self.seek(0)
        self.live = False
        self.playing = True

    def action_speed(self, delta: int) -> None:
        i = PLAY_SPEEDS.index(self.speed) + delta
        self.speed = PLAY_SPEEDS[max(0, min(i, len(PLAY_SPEEDS) - 1))]

    # ---- mouse -----------------------------------------------------------------------------

    def _index_at(self, x: int) -> int:
        width = max(1, self.size.width - 1)
        return round(max(0, min(x, width)) / width * (len(self.steps) - 1))

    def on_click(self, event: events.Click) -> None:
        if self.steps and event.y == 0:
            self.playing = False
            self.seek(self._index_at(event.x))

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self.steps and event.button == 1 and event.y == 0:  # drag to scrub
            self.playing = False
            self.seek(self._index_at(event.x))

    # ---- rendering -------------------------------------------------------------------------

    def status_text(self) -> str:
        if not self.steps:
            return "no recorded steps yet — the timeline fills as training runs"
        n = len(self.steps)
        where = "live" if self.live else ("▶ playing" if self.playing else "paused")
        src = f"{self.source}: " if self.source else ""
        return (f"{src}step {self.steps[self.index]} ({self.index + 1}/{n} recorded)  {where}  "
                f"speed {self.speed}/s")

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 1:
            style = self.get_component_rich_style("timeline-bar--status")
            return Strip([Segment(self.status_text(), style)]).crop_extend(0, width, None)
        if y != 0 or width <= 0:
            return Strip.blank(width)
        if not self.steps:
            return Strip([Segment("─" * width, self.get_component_rich_style("timeline-bar--track"))])
        n = len(self.steps)
        knob = 0 if n == 1 else round(self.index / (n - 1) * (width - 1))
        mark_cols = {0 if n == 1 else round(self._nearest(s) / (n - 1) * (width - 1)) for s in self.marks}
        done = self.get_component_rich_style("timeline-bar--done")
        track = self.get_component_rich_style("timeline-bar--track")
        mark = self.get_component_rich_style("timeline-bar--mark")
        knob_style = self.get_component_rich_style("timeline-bar--knob")
        segs = []
        for x in range(width):
            if x == knob:
                segs.append(Segment("●", knob_style))
            elif x in mark_cols:
                segs.append(Segment("┃", mark))
            else:
                segs.append(Segment("━" if x < knob else "─", done if x < knob else track))
        return Strip(segs).simplify()

    def _nearest(self, step: int) -> int:
        """Index of the first recorded step at or after `step` (the last one if none)."""
        for i, s in enumerate(self.steps):
            if s >= step:
                return i
        return len(self.steps) - 1

