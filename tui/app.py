"""The attnlab dashboard: tabs for setup, training, attention, chat and saves; starts and stops the workers.

Training runs in a thread worker (tui/worker.py) that posts tui/messages.py messages; this class turns
them into widget updates. Panes live in tui/screens/, reusable widgets in tui/widgets/.
"""

from __future__ import annotations

import asyncio
from functools import partial

from textual import work
from textual.actions import SkipAction
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import Button, Footer, Header, Input, ProgressBar, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from core.checkpoint import SaveError
from core.config import ConfigError
from core.tasks.corpus import CorpusError
from core.text import safe_text
from core.trainer import load_model
from tui import messages as msg
from tui.screens.chat import ChatSource, ChatView
from tui.screens.modals import PALETTE, TABS, HelpScreen, key_groups
from tui.screens.saves import SavesPane
from tui.screens.setup import SetupPane
from tui.screens.tabs import DashboardTabs
from tui.screens.attention import AttentionPane
from tui.screens.train import TrainPane
from tui.widgets import LossPlot, LRSpark, StatsPanel
from core.progress import StepRate
from tui.guard import RunGuard, install_signals, name_for_new_run, remove_signals
from tui.worker import EventPump, GuardedTrainer, describe, probe_model, train_job

SPEED_LIMITS = (None, 1, 5, 20)  # training steps a second the user can pick (None: unlimited)

LOAD_ERRORS = (SaveError, ConfigError, CorpusError, ValueError, OSError)


class AttnLab(App):
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

    def error(self, text: str) -> None:
        self.notify(safe_text(text), severity="error", timeout=10)

    def status(self, text: str) -> None:
        self.query_one("#train-status", Static).update(safe_text(text))

    def set_trainer(self, trainer: GuardedTrainer, run_name: str) -> None:
        """Adopt a trainer: reset the plots and show its state (and history, for a resumed run)."""
        self.trainer, self.run_name, self.best_val = trainer, run_name, None
        self.rate = StepRate()
        plot = self.query_one(LossPlot)
        plot.clear()
        for series in ("train", "val"):
            for step, elapsed, value in trainer.history[series]:
                plot.add_point(series, step, elapsed, value)
        vals = [v for _, _, v in trainer.history["val"]]
        self.best_val = min(vals) if vals else None
        self.query_one(LRSpark).clear()
        stats = self.query_one(StatsPanel)
        stats.clear_stats()
        stats.update_stats({"step": trainer.step_count, "max_steps": trainer.cfg.train.max_steps,
                            "params": trainer.model.num_params(), "metric_name": trainer.task.metric,
                            "best_val": self.best_val})
        self.query_one(ProgressBar).update(total=trainer.cfg.train.max_steps, progress=trainer.step_count)
        pane = self.query_one(AttentionPane)
        pane.use_task(trainer.cfg.task)
        tl = getattr(trainer, "timeline", None)  # a resumed run brings its recording
        if tl is not None:
            pane.reset_timeline(list(tl.snapshots), tl.labels, tl.probe, tl.marks, "recording",
                                trainer.task.metric)
            for mark in tl.marks:
                if mark.get("kind") == "speed_limit":
                    plot.add_mark(mark["step"], None, speed_label(mark.get("value")))
        else:
            pane.reset_timeline(source="recording", metric=trainer.task.metric)
        self.apply_speed_limit()
        if trainer.cfg.task != "reversal":
            self.query_one(ChatView).set_source(ChatSource(
                trainer.snapshot, trainer.task.tokenizer, trainer.cfg.model.block_size, run_name,
                f"chatting with {run_name} (training; snapshots of its weights)", trainer.cfg.task,
                lambda: {"save": run_name, "tag": "live (training)", "step": trainer.step_count}))

    # -- training control
    def action_start(self, step_once: bool = False) -> None:
        if self.training:
            if self.trainer.is_paused:
                self.trainer.resume()
                self.status("training")
            else:
                self.notify("already training; p pauses, S stops", severity="warning")
            return
        tr = self.trainer
        if tr is not None and not self.setup_dirty and tr.step_count >= tr.cfg.train.max_steps:
            tr.extend(self.query_one(SetupPane).more_steps(tr))  # same run, same folder: more steps
            self.query_one(ProgressBar).update(total=tr.cfg.train.max_steps)
        if tr is None or self.setup_dirty:
            setup = self.query_one(SetupPane)
            cfg = setup.validate()
            if cfg is None:
                self.notify(f"fix the settings first: {setup.error_text}", severity="error")
                self.action_tab("setup")
                return
            if self.starting:
                return self.notify("starting: reading the corpus", severity="warning")
            try:
                name, note = name_for_new_run(setup.run_name())
                self.guard.take(name)
            except LOAD_ERRORS as e:
                return self.error(f"cannot start: {describe(e)}")
            self.starting = True
            self.status("starting: reading the corpus")
            self._build(cfg, name, note, step_once)
            return
        tr.rearm()
        self.launch(step_once)

    @work(thread=True, group="build")
    def _build(self, cfg, name: str, note: str | None, step_once: bool) -> None:
        """Build the trainer (the corpus is read and encoded here, never on the UI thread)."""
        try:
            tr = GuardedTrainer(cfg)
        except LOAD_ERRORS as e:
            self.call_from_thread(self._build_failed, f"cannot start: {describe(e)}")
            return
        self.call_from_thread(self._adopt_new, tr, name, note, step_once)

    def _build_failed(self, text: str) -> None:
        self.starting = False
        self.status("")
        self.error(text)

    def _adopt_new(self, tr: GuardedTrainer, name: str, note: str | None, step_once: bool) -> None:
        self.starting = False
        if note:
            self.notify(safe_text(note), severity="warning", timeout=10)
        self.set_trainer(tr, name)
        self.setup_dirty = False
        self.query_one(SetupPane).warn_probe(self.query_one(AttentionPane).probe_text, tr.cfg)
        self.launch(step_once)

    def launch(self, step_once: bool = False) -> None:
        pane = self.query_one(AttentionPane)
        self.pump = EventPump(self.trainer, self.post_message, lambda: False, self.run_name, pane.probe_text)
        self.pump.probe_live = pane.custom
        self.pump.step_once = step_once
        self.status("training" if not step_once else "single step")
        if self.query_one(TabbedContent).active in ("setup", "saves"):
            self.action_tab("train")
        self.train_worker = self._train(self.pump)
        self.show_plan()

    @work(thread=True, exclusive=True, group="train")
    def _train(self, pump: EventPump) -> None:
        worker = get_current_worker()
        pump.cancelled = lambda: worker.is_cancelled
        train_job(pump)

    def action_pause(self) -> None:
        if not self.training:
            self.notify("not training", severity="warning")
        elif self.trainer.is_paused:
            self.trainer.resume()
            self.status("training")
        else:
            self.trainer.pause()

    def action_single_step(self) -> None:
        if not self.training:
            self.action_start(step_once=True)
        elif self.trainer.is_paused:
            self.pump.step_once = True
            self.trainer.resume()
        else:
            self.trainer.pause()

    def action_stop(self) -> None:
        if self.training:
            self.trainer.stop()
            self.status("stopping…")

    def action_speed_limit(self, value: float | None | str = "next") -> None:
        """Cycle the training speed limit (unlimited, 1, 5, 20 steps/s), or set one value."""
        if value == "next":
            value = SPEED_LIMITS[(SPEED_LIMITS.index(self.speed_limit) + 1) % len(SPEED_LIMITS)]
        self.speed_limit = value
        self.apply_speed_limit()
        self.query_one("#speed-limit", Static).update(f"speed: {speed_label(value)} (L)")
        self.notify(f"training speed limit: {speed_label(value)}")

    def apply_speed_limit(self) -> None:
        setter = getattr(self.trainer, "set_speed_limit", None)
        if setter is not None:
            if self.trainer.speed_limit != self.speed_limit:  # each change is marked on the plots
                setter(self.speed_limit)
        elif self.trainer is not None and self.speed_limit is not None:
            self.notify("this trainer has no speed limit", severity="warning")

    def on_speed_limit_set(self, message: msg.SpeedLimitSet) -> None:
        if not self.query(AttentionPane):  # shutting down
            return
        self.query_one(LossPlot).add_mark(message.step, message.elapsed_s, speed_label(message.limit))
        self.query_one(AttentionPane).add_mark(message.step)

    def action_explain(self) -> None:
        """Show or hide the one-line explanations under every view of the model's insides."""
        self.screen.toggle_class("-no-explain")

    def action_save_now(self) -> None:
        if self.trainer is None or not self.run_name:
            self.notify("nothing to save yet: start training or resume a run", severity="warning")
            return
        self._save(self.trainer, self.run_name)

    @work(thread=True, group="save")
    def _save(self, trainer: GuardedTrainer, name: str) -> None:
        try:
            trainer.save(name, "last")  # waits for the current step (weights lock)
            self.call_from_thread(self.notify, f"saved {name} at step {trainer.step_count}")
            self.call_from_thread(self.query_one(SavesPane).action_refresh)
        except (SaveError, OSError) as e:
            self.post_message(msg.WorkerFailed("save", describe(e)))

    # -- worker messages
    def on_train_steps(self, message: msg.TrainSteps) -> None:
        if not self.query(LRSpark):  # shutting down
            return
        plot, spark = self.query_one(LossPlot), self.query_one(LRSpark)
        for ev in message.events:
            plot.add_point("train", ev["step"], ev["elapsed_s"], ev["loss"])
        spark.extend(ev["lr"] for ev in message.events[-20:])
        ev = message.events[-1]
        for e in message.events:
            self.rate.add(e["ms"])
        self.query_one(StatsPanel).update_stats(
            {k: ev[k] for k in ("step", "max_steps", "loss", "tokens_per_s", "grad_norm", "epoch")}
            | {"ms_per_step": self.rate.ms_per_step, "eta_s": self.rate.eta_s(ev["max_steps"] - ev["step"])})
        self.query_one(ProgressBar).update(total=ev["max_steps"], progress=ev["step"])
        self.last_elapsed = ev["elapsed_s"]

    def on_train_eval(self, message: msg.TrainEval) -> None:
        ev = message.event
        val = ev["val_loss"]
        self.best_val = val if self.best_val is None else min(self.best_val, val)
        self.query_one(LossPlot).add_point("val", ev["step"], getattr(self, "last_elapsed", 0.0), val)
        self.query_one(StatsPanel).update_stats({"val_loss": val, "best_val": self.best_val,
                                                 "metric_name": ev["metric"], "metric_value": ev.get(ev["metric"])})
        if message.saved:
            self.status(f"training — best {ev['metric']} so far saved at step {ev['step']}")

    def on_attention_update(self, message: msg.AttentionUpdate) -> None:
        for pane in self.query(AttentionPane):  # none while shutting down
            pane.live_probe(message.maps, message.labels)

    def on_timeline_snapshots(self, message: msg.TimelineSnapshots) -> None:
        for pane in self.query(AttentionPane):  # none while shutting down
            pane.add_snapshots(message.snapshots, message.labels, message.probe)

    def on_train_paused(self, message: msg.TrainPaused) -> None:
        self.status(f"paused at step {message.step} — p resumes, n steps")
        self.show_plan()

    def on_train_done(self, message: msg.TrainDone) -> None:
        ev = message.event
        saved = f"; saved '{message.saved}'" if message.saved else ""
        self.done_text = f"{ev['reason']} at step {ev['steps']}{saved}"
        self.status(self.done_text)  # what s does next is added once the worker has ended
        self.query_one(SavesPane).action_refresh()

    def on_worker_state_changed(self, event) -> None:
        if event.worker is self.train_worker and self.train_worker.is_finished and self.query(SetupPane):
            self.show_plan()
            if self.done_text:
                self.status(f"{self.done_text} — {self.query_one(SetupPane).plan()}")
                self.done_text = None

    def show_plan(self) -> None:
        """Setup's line saying what s does now (skipped while the app shuts down)."""
        for setup in self.query(SetupPane):
            setup.show_plan()

    def on_worker_failed(self, message: msg.WorkerFailed) -> None:
        self.error(f"{message.what} failed: {message.cause}")
        if message.what == "training":
            self.status(f"failed: {message.cause} — s starts again (the last save is intact)")
            self.trainer = None  # its state may be half-updated; start fresh or resume a save
            self.show_plan()

    # -- saves
    @work(thread=True, exclusive=True, group="load")
    def load_for_chat(self, name: str, tag: str) -> None:
        """Read a save in a thread (a large or hostile file never freezes the UI), then show it."""
        try:
            loaded = load_model(name, tag)
        except LOAD_ERRORS as e:
            return self.call_from_thread(self.error, f"cannot load {name}: {describe(e)}")
        self.call_from_thread(self._show_loaded, name, tag, *loaded)

    def _show_loaded(self, name, tag, model, tok, cfg, meta) -> None:
        self.query_one(AttentionPane).use_task(cfg.task)  # its probe and its explanation
        if cfg.task == "reversal":
            self.notify("a reversal model does not chat; replaying its attention instead", severity="warning")
            pane = self.query_one(AttentionPane)
            labels, maps = probe_model(model, tok, pane.probe_text or "PYTHON", cfg.model.block_size)
            self.loaded = (model, tok, cfg)
            pane.set_map(maps, labels)
            pane.load_saved_timeline(name, tag)
            self.action_tab("attention")
            return
        self.query_one(AttentionPane).load_saved_timeline(name, tag)
        self.loaded = (model, tok, cfg)
        self.query_one(ChatView).set_source(ChatSource(
            model.snapshot, tok, cfg.model.block_size, name, f"chatting with {name} ({tag}, step {meta.get('step')})",
            cfg.task, lambda: {"save": name, "tag": tag, "step": meta.get("step")}))
        self.action_tab("chat")

    def resume_run(self, name: str, tag: str) -> None:
        if self.training:
            self.notify("stop the current training first (S)", severity="warning")
            return
        self._resume(name, tag)

    @work(thread=True, exclusive=True, group="load")
    def _resume(self, name: str, tag: str) -> None:
        """Lock the run (another writer is refused at once), read it in this thread, then train it."""
        try:
            self.guard.take(name)
            tr = GuardedTrainer.from_save(name, tag)
        except LOAD_ERRORS as e:
            if self.run_name and self.run_name != name:  # keep holding the run this app still has
                try:
                    self.guard.take(self.run_name)
                except LOAD_ERRORS:
                    pass
            return self.call_from_thread(self.error, f"cannot resume {name}: {describe(e)}")
        self.call_from_thread(self._adopt_resumed, tr, name)

    def _adopt_resumed(self, tr: GuardedTrainer, name: str) -> None:
        if self.training:
            return self.notify("stop the current training first (S)", severity="warning")
        self.set_trainer(tr, name)
        self.setup_dirty = False
        self.launch()

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

    def forget_run(self, name: str) -> None:
        """A deleted run: drop the idle trainer and the chat source that used it (s starts afresh)."""
        if self.run_name == name and not self.training:
            self.trainer, self.run_name, self.setup_dirty = None, None, True
            self.status(f"{name} was deleted — s starts a new run")
        chat = self.query_one(ChatView)
        if chat.source is not None and chat.source.run_name == name:
            chat.set_source(None)
            chat.pane.add_system(f"the run {name} was deleted; load another save to chat")
        self.show_plan()

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


def speed_label(limit) -> str:
    return "unlimited" if limit is None else f"{limit:g} step{'' if limit == 1 else 's'}/s"


def run_app() -> int:
    """Run the dashboard; the exit code for the `attnlab` command."""
    app = AttnLab()
    try:
        app.run()
    finally:
        app.guard.release()
    return 0
