"""The attnlab dashboard: tabs for setup, training, attention, chat and saves; starts and stops the workers.

Training runs in a thread worker (tui/worker.py) that posts tui/messages.py messages; tui/app_train.py
turns them into widget updates and holds the training keys, tui/app_saves.py opens saved runs. This
file holds the layout, navigation, help and quitting. Panes live in tui/screens/, widgets in tui/widgets/.
"""

from __future__ import annotations

import asyncio
from functools import partial

from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Button, Footer, Header, Input, Static, TabbedContent, TabPane

from core.checkpoint import SaveError
from core.progress import StepRate
from core.text import safe_text
from tui.app_saves import SavedRuns
from tui.app_train import TrainingControl
from tui.guard import RunGuard, install_signals, remove_signals
from tui.screens.attention import AttentionPane
from tui.screens.chat import ChatView
from tui.screens.modals import PALETTE, TABS, HelpScreen, key_groups
from tui.screens.saves import SavesPane
from tui.screens.setup import SetupPane
from tui.screens.tabs import DashboardTabs
from tui.screens.train import TrainPane
from tui.worker import EventPump, GuardedTrainer, describe


class AttnLab(TrainingControl, SavedRuns, App):
    CSS_PATH = "app.tcss"
    TITLE = "attnlab"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]
    BINDINGS = [
        Binding("s", "start", "Start/resume"),
        Binding("p", "pause", "Pause"),
        Binding("n", "single_step", "Step"),
        Binding("S", "stop", "Stop", key_display="S"),
        Binding("w", "save_now", "Save"),
        Binding("L", "speed_limit", "Speed limit", key_display="L"),
        Binding("i", "explain", "Explain", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "leave_field", "Leave field"),
        # digits are priority bindings too, so that a digit and an F-key pressed back to back act in the
        # order they came (a plain binding waits for the focused widget first); in a text field a digit
        # is text: digit_tab passes it on
        *[Binding(str(i + 1), f"digit_tab('{t}')", t.capitalize(), show=False, priority=True)
          for i, t in enumerate(TABS)],
        # keys that switch tabs even while a text field has focus: F1-F5 reach the app through tmux and
        # xterm-likes alike (alt+digit does not: Textual reads ESC 2 as '™'; ctrl+digit is rarely sent)
        *[Binding(f"f{i + 1}", f"tab('{t}')", t.capitalize(), show=False, priority=True)
          for i, t in enumerate(TABS)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.trainer: GuardedTrainer | None = None
        self.run_name: str | None = None
        self.pump: EventPump | None = None
        self.train_worker = None
        self.setup_dirty = True
        self.best_val: float | None = None
        self.loaded = None  # (model, tokenizer, cfg) of a save loaded for chat
        self.rate = StepRate()  # smoothed ms/step and ETA (the CLI's progress line uses the same)
        self.done_text: str | None = None  # how the last run ended, until its worker has finished
        self.speed_limit: float | None = None  # steps a second; None = unlimited
        self.guard = RunGuard()  # the lock on the run this app writes
        self.starting = False  # a trainer is being built in a thread (the corpus is read there)
        self.quitting = False  # set as the app exits: what a worker finishes after that is dropped

    def compose(self) -> ComposeResult:
        yield Header()
        with DashboardTabs(initial="setup", id="tabs"):
            for tab, pane in zip(TABS, (SetupPane, TrainPane, AttentionPane, ChatView, SavesPane)):
                with TabPane(tab.capitalize(), id=tab):
                    yield pane(id=f"{tab}-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#task-picker").focus()
        install_signals(lambda: self.call_next(self.action_quit))  # SIGTERM/SIGHUP save `last` like q

    def on_unmount(self) -> None:
        remove_signals()
        self.guard.release()

    # -- state
    @property
    def training(self) -> bool:
        return self.train_worker is not None and not self.train_worker.is_finished

    def from_worker(self, callback, *args) -> None:
        """Hand a thread worker's result to the UI thread (thread-safe; the worker does not wait).
        Dropped once the app quits: its widgets may be gone, and a run built or loaded meanwhile
        must not start training in an app that is closing."""
        self.call_later(self._unless_quitting, callback, *args)

    def _unless_quitting(self, callback, *args) -> None:
        if not self.quitting and self.query(AttentionPane):
            callback(*args)

    def error(self, text: str) -> None:
        self.notify(safe_text(text), severity="error", timeout=10)

    def status(self, text: str) -> None:
        self.query_one("#train-status", Static).update(safe_text(text))

    # -- buttons, navigation, help, palette, quit
    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"btn-start": self.action_start, "btn-pause": self.action_pause,
                   "btn-step": self.action_single_step, "btn-stop": self.action_stop,
                   "btn-save": self.action_save_now}
        if event.button.id in actions:
            actions[event.button.id]()

    def on_setup_pane_edited(self, message) -> None:
        self.setup_dirty = True
        self.show_plan()

    def on_saves_pane_compare(self, message: SavesPane.Compare) -> None:
        self.query_one(TrainPane).compare(message.names)
        self.action_tab("train")

    def leaving_field(self) -> bool:
        return isinstance(self.focused, Input)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "leave_field":  # shown in the footer (and bound) only while a text field has focus
            return self.leaving_field()
        return True

    def action_leave_field(self) -> None:
        """Esc in a text field: focus the tab bar, where digits switch tabs again."""
        self.query_one(TabbedContent).query_one("Tabs").focus()

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one(DashboardTabs)
        tabs.active = tab
        tabs.focus_active()  # now: the next key, already queued, must find focus in this tab

    def action_digit_tab(self, tab: str) -> None:
        if self.leaving_field():
            raise SkipAction()  # typed into the field
        self.action_tab(tab)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tabs = self.query(DashboardTabs)
        if not tabs or event.pane.id != tabs.first().active:
            return  # a later key already chose another tab (or the app is closing)
        tabs.first().focus_active()  # action_tab focused already; a click on a tab comes only here
        if event.pane.id == "saves":
            self.query_one(SavesPane).action_refresh()

    def action_forward(self, tab: str, selector: str, name: str) -> None:
        """Run a pane's or widget's own action (from the command palette), showing its tab."""
        self.action_tab(tab)
        target = self.query_one(selector)
        (getattr(target, f"action_{name}", None) or getattr(target, name))()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(key_groups(self.BINDINGS)))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for title, keys, action in PALETTE:
            yield SystemCommand(title, f"key: {keys}", partial(self.run_action, action))

    async def action_quit(self) -> None:
        """Stop training (waiting at most a second), save 'last', and exit."""
        if await self.stop_and_save():
            self.quitting = True
            self.exit()

    async def stop_and_save(self) -> bool:
        """Stop training (waiting at most a second) and save 'last'; False when that save failed."""
        if self.training:
            self.trainer.stop()
            for _ in range(50):
                if self.train_worker.is_finished:
                    break
                await asyncio.sleep(0.02)
        if self.trainer is not None and self.run_name and self.training:
            try:  # the worker is mid-step: save under the weights lock ourselves
                await asyncio.to_thread(self.trainer.save, self.run_name, "last")
            except (SaveError, OSError) as e:
                self.notify(f"could not save on quit: {describe(e)}", severity="error")
                return False
        return True


def run_app() -> int:
    """Run the dashboard; the exit code for the `attnlab` command."""
    app = AttnLab()
    try:
        app.run()
    finally:
        app.guard.release()
    return 0