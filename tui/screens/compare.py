"""CompareView: marked runs side by side on the Train tab: a table (task, steps, wall time, best metric,
the config keys that differ) under the loss plot, which overlays their curves.

Each run's saves/NAME/metrics.jsonl is tailed once a second in a thread worker, so a run that is
still training (here or in a terminal) moves live; runs without one are read from their save.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from core.compare import config_diff, fmt_value, fmt_wall, from_events, from_save
from core.metrics_log import LogTail, log_path
from core.text import safe_text
from tui.widgets.lossplot import RUN_COLORS

POLL_S = 1.0  # seconds between reads of the compared runs' metrics files


class CompareView(Vertical):
    class Updated(Message):
        """New records for the compared runs (RunRecord list, in the order they were marked)."""

        def __init__(self, names: list[str], records: list) -> None:
            super().__init__()
            self.names = names
            self.records = records

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names: list[str] = []
        self.records: list = []
        self._tails: dict[str, LogTail] = {}
        self._saved: dict[str, object] = {}  # records read from saves (runs without metrics.jsonl)

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-title")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.display = False
        self.set_interval(POLL_S, self.poll)

    @property
    def active(self) -> bool:
        return bool(self.names)

    def show(self, names: list[str]) -> None:
        """Compare these runs (read now, then followed live)."""
        self.names = list(names)
        self._tails = {n: LogTail(log_path(n)) for n in self.names}
        self._saved = {}
        self.records = []
        self.display = True
        self.query_one("#compare-title", Static).update(safe_text(f"comparing {', '.join(self.names)} — reading…"))
        self.poll()

    def end(self) -> None:
        self.names, self._tails, self.records = [], {}, []
        self.display = False

    def poll(self) -> None:
        if self.names:
            self._read(list(self.names), dict(self._tails), self._saved)

    @work(thread=True, exclusive=True, group="compare")
    def _read(self, names: list[str], tails: dict, saved: dict) -> None:
        changed = not self.records
        records = []
        for n in names:
            tail = tails[n]
            if tail.poll() or not hasattr(tail, "record"):  # rebuilt only when its file grew
                tail.record = from_events(n, tail.events) if tail.events else None
                changed = True
            if tail.record is not None:
                records.append(tail.record)
                continue
            if n not in saved:  # no metrics.jsonl (yet): the save's own history
                saved[n] = from_save(n)
                changed = True
            records.append(saved[n])
        if changed:
            self.post_message(self.Updated(names, records))

    def on_compare_view_updated(self, message: Updated) -> None:
        if message.names != self.names:  # a newer set was chosen meanwhile
            message.stop()
            return
        self.records = message.records
        self.fill_table()

    def fill_table(self) -> None:
        recs = self.records
        diff = config_diff([r for r in recs if not r.error])
        table = self.query_one(DataTable)
        table.clear(columns=True)
        metric = next((r.metric for r in recs if r.metric), "metric")
        table.add_columns("run", "task", "steps", "wall", f"best {metric}", "best val",
                          *[k for k, _ in diff])
        ok = [r for r in recs if not r.error]
        for i, r in enumerate(recs):
            name = Text(safe_text(r.name), style=f"bold rgb{RUN_COLORS[i % len(RUN_COLORS)]}")
            if r.error:
                table.add_row(name, Text(safe_text(r.error)[:60], style="red"), *[""] * (4 + len(diff)))
                continue
            values = [fmt_value(vals[ok.index(r)]) for _, vals in diff]
            table.add_row(name, safe_text(str(r.task or "—")), f"{r.steps:,}", fmt_wall(r.wall_s),
                          fmt_value(r.best_metric), fmt_value(r.best_val), *[safe_text(v) for v in values])
        same = "same config" if not diff else f"{len(diff)} config key(s) differ"
        self.query_one("#compare-title", Static).update(
            safe_text(f"comparing {len(recs)} runs ({same}) — x step/time, e smoothing, esc ends"))
