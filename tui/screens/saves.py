"""SavesPane: the runs in saves/ (task, step, best metric, date); load to chat, resume, delete."""

from __future__ import annotations

import time

from rich.cells import cell_len
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Button, DataTable, Static

from core.checkpoint import SaveError
from core.runs import delete_run, list_runs, saves_root
from tui.screens.modals import ConfirmScreen
from core.text import safe_text


COMPACT_BELOW = 100  # columns: a narrower screen gets the short forms below, so the table fits 80 columns


def fmt_best(best, compact=False) -> str:
    """best_metric is [metric, -val_loss] (or None); compact: the metric alone."""
    if isinstance(best, (list, tuple)) and len(best) == 2:
        try:
            return f"{float(best[0]):.3f}" + ("" if compact else f" (val {-float(best[1]):.3f})")
        except (TypeError, ValueError):
            pass
    return "—"


def fmt_date(created, compact=False) -> str:
    if not created:
        return "—"
    return time.strftime("%m-%d %H:%M" if compact else "%Y-%m-%d %H:%M", time.localtime(created))


class SavesPane(Vertical):
    BINDINGS = [
        Binding("c", "load_chat", "Load to chat"),
        Binding("r", "resume", "Resume"),
        Binding("d", "delete", "Delete"),
        Binding("t", "cycle_tag", "Switch tag"),
        Binding("u", "refresh", "Refresh"),
        Binding("m", "mark", "Mark"),
        Binding("v", "compare", "Compare marked"),
        Binding("x", "chat_marked", "Chat with marked"),
    ]

    class RunsListed(Message):
        """The listing worker read saves/ (runs, or the error that stopped it)."""

        def __init__(self, runs, error) -> None:
            super().__init__()
            self.runs, self.error = runs, error

    class Compare(Message):
        """Show these runs side by side on the Train tab."""

        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.names = names

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs = []
        self.tag_choice: dict[str, str] = {}  # run name -> the tag the user picked with t
        self.marked: list[str] = []  # runs marked with m for comparing, in marking order
        self.compact = None  # the short forms are shown (set by the first listing)

    def compose(self) -> ComposeResult:
        with Horizontal(id="saves-controls"):
            yield Button("Load to chat", id="btn-load-chat")
            yield Button("Resume", id="btn-resume")
            yield Button("Delete", id="btn-delete", variant="error")
            yield Button("Save now", id="btn-save-now")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="saves-status")

    def on_mount(self) -> None:
        self.action_refresh()

    def on_resize(self) -> None:
        if self.compact is not None and (self.app.size.width < COMPACT_BELOW) != self.compact:
            self._show_runs(self.runs, None)  # the same runs, in the forms that fit

    def action_refresh(self) -> None:
        """Re-list the runs; reading every meta.json happens in a thread, never on the UI thread."""
        root = saves_root()
        if not root.is_dir() or not any(root.iterdir()):  # nothing to read: show it at once
            self._show_runs([], None)
        else:
            self._list_runs()

    @work(thread=True, exclusive=True, group="saves-list")
    def _list_runs(self) -> None:
        try:
            runs, error = list_runs(), None
        except (SaveError, OSError) as e:
            runs, error = [], e
        self.post_message(self.RunsListed(runs, error))  # dropped if the pane is gone (the app quit meanwhile)

    def on_saves_pane_runs_listed(self, message: RunsListed) -> None:
        message.stop()
        self._show_runs(message.runs, message.error)

    def _show_runs(self, runs, error) -> None:
        try:
            table = self.query_one(DataTable)
        except NoMatches:  # the app is quitting: its widgets go first, and a listing may finish meanwhile
            return
        row = table.cursor_row
        self.compact = compact = self.app.size.width < COMPACT_BELOW
        self.runs = [] if error is not None else runs
        rows = [["✓" if r.name in self.marked else " ", safe_text(r.name),
                 safe_text(str(r.task or ("broken" if r.error else "—"))), "—" if r.step is None else str(r.step),
                 fmt_best(r.best_metric, compact), fmt_date(r.created, compact), ",".join(r.tags or [])]
                for r in self.runs]
        labels = ["✓", "name", "task", "step", "best" if compact else "best metric", "date", "tags"]
        # widths set from these cells: measured later (the table's own way), a table shown as the screen
        # resizes kept rows drawn at the old widths
        table.clear(columns=True)
        for i, label in enumerate(labels):
            table.add_column(label, width=max(cell_len(c) for c in [label, *(cells[i] for cells in rows)]))
        if error is not None:
            self.query_one("#saves-status", Static).update(f"⚠ {safe_text(str(error))}")
            return
        for r, cells in zip(self.runs, rows):
            table.add_row(*cells, key=r.name)
        self.marked = [n for n in self.marked if any(r.name == n for r in self.runs)]
        if self.runs and row:
            table.move_cursor(row=min(row, len(self.runs) - 1))
        status = f"{len(self.runs)} saved run(s)" if self.runs else "no saves yet — press w while training"
        if self.marked:
            status += f"; marked {len(self.marked)}: v compares them on the Train tab, x chats with them together"
        elif len(self.runs) > 1:
            status += "; m marks runs to compare or to chat with together"
        self.query_one("#saves-status", Static).update(safe_text(status))

    @property
    def selected(self):
        """The RunInfo under the cursor, or None."""
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def _pick(self):
        run = self.selected
        if run is None:
            self.app.notify("no save selected", severity="warning")
        elif run.error:
            self.app.notify(f"{run.name}: {run.error}", severity="error")
            return None
        return run

    def tag_for(self, run, prefer: str) -> str:
        """The tag picked with t for this run, else `prefer` if the run has it, else its first tag."""
        tags = list(run.tags or [])
        picked = self.tag_choice.get(run.name)
        if picked in tags:
            return picked
        return prefer if prefer in tags or not tags else tags[0]

    def action_cycle_tag(self) -> None:
        """Pick the next of the selected run's tags (best, last, ...) for loading and resuming."""
        run = self._pick()
        if not run or not run.tags:
            return
        tags = list(run.tags)
        current = self.tag_for(run, "best")
        self.tag_choice[run.name] = tags[(tags.index(current) + 1) % len(tags)]  # tag_for returns one of tags
        self.query_one("#saves-status", Static).update(
            f"{safe_text(run.name)}: c and r now use the '{safe_text(self.tag_choice[run.name])}' save (t switches)")

    def action_load_chat(self) -> None:
        run = self._pick()
        if run:
            self.app.load_for_chat(run.name, self.tag_for(run, "best"))

    def action_resume(self) -> None:
        run = self._pick()
        if run:
            self.app.resume_run(run.name, self.tag_for(run, "last"))

    def action_mark(self) -> None:
        """Mark or unmark the selected run for comparing."""
        run = self.selected
        if run is None:
            return
        if run.name in self.marked:
            self.marked.remove(run.name)
        else:
            self.marked.append(run.name)
        self.action_refresh()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.app.notify(f"mark at least two runs with m to compare them (marked: {len(self.marked)})",
                            severity="warning")
            return
        self.post_message(self.Compare(list(self.marked)))

    def action_chat_marked(self) -> None:
        """Chat with the marked saves together (each with its tag as c would load it)."""
        runs = [r for n in self.marked for r in self.runs if r.name == n]
        if len(runs) < 2:
            self.app.notify(f"mark at least two saves with m to chat with them together (marked: {len(runs)})",
                            severity="warning")
            return
        broken = [r for r in runs if r.error]
        if broken:
            self.app.notify(f"{broken[0].name}: {broken[0].error}", severity="error")
            return
        self.app.load_mixture_for_chat([(r.name, self.tag_for(r, "best")) for r in runs])

    def action_delete(self) -> None:
        run = self.selected
        if run is None:
            return
        app = self.app
        if app.training and app.run_name == run.name:
            app.notify(f"{run.name} is training now: stop it (S) before deleting it", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if not yes:
                return
            if self.app.guard.name == run.name:  # this app's own run: free it first, unless training
                if self.app.training:
                    self.app.notify("stop training first (S), then delete", severity="warning")
                    return
                self.app.guard.release()
            try:
                delete_run(run.name)
                self.app.notify(f"deleted {run.name}")
                self.app.forget_run(run.name)
            except (SaveError, OSError) as e:
                self.app.notify(f"could not delete {run.name}: {e}", severity="error")
            self.action_refresh()

        self.app.push_screen(ConfirmScreen(f"Delete the run {safe_text(run.name)} and all its saves?"), done)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        actions = {"btn-load-chat": self.action_load_chat, "btn-resume": self.action_resume,
                   "btn-delete": self.action_delete, "btn-save-now": self.app.action_save_now}
        actions[event.button.id]()
