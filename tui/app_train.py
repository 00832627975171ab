"""How the dashboard drives a training run: adopting a trainer, the start/pause/step/stop/save keys,
the speed limit, and turning the training worker's messages into widget updates.

A mixin of tui/app.py's AttnLab (it uses the app's query_one, notify and status); the worker itself
is tui/worker.py.
"""

from __future__ import annotations

from textual import work
from textual.widgets import ProgressBar, Static, TabbedContent
from textual.worker import get_current_worker

from core.checkpoint import SaveError
from core.config import ConfigError
from core.progress import StepRate
from core.tasks import chats
from core.tasks.corpus import CorpusError
from core.text import safe_text
from tui import messages as msg
from tui.guard import name_for_new_run
from tui.screens.attention import AttentionPane
from tui.screens.chat import ChatSource, ChatView
from tui.screens.saves import SavesPane
from tui.screens.setup import SetupPane
from tui.widgets import LossPlot, LRSpark, StatsPanel
from tui.worker import EventPump, GuardedTrainer, describe, train_job

SPEED_LIMITS = (None, 1, 5, 20)  # training steps a second the user can pick (None: unlimited)

TRAINING_LABEL = "training; snapshots of its weights"  # the Chat tab's label while the run trains

LOAD_ERRORS = (SaveError, ConfigError, CorpusError, ValueError, OSError)


class TrainingControl:
    """The training keys and the worker's messages; state lives on the app (trainer, pump, rate, ...)."""

    def set_trainer(self, trainer: GuardedTrainer, run_name: str) -> None:
        """Adopt a trainer: reset the plots and show its state (and history, for a resumed run)."""
        self.trainer, self.run_name, self.best_val = trainer, run_name, None
        self.rate = StepRate()
        plot = self.query_one(LossPlot)
        plot.clear()
        answers = trainer.cfg.data.answers_only  # the loss counts answer characters alone
        taught = len(getattr(trainer, "teachers", None) or ())  # train.teachers: the training loss is against theirs
        plot.plot_title = ("loss on answers" if answers else "loss") + (f", training's vs {taught} teacher{'s' * (taught != 1)}" if taught else "")
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
                            "best_val": self.best_val, "loss_on": "answers" if answers else None,
                            "weights_avg": trainer.cfg.train.ema or None, "teachers": taught or None})
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
        self.live_state = TRAINING_LABEL  # what the live run's weights are doing, for the Chat tab and its exports
        if not chats(trainer.cfg.task):
            self.query_one(ChatView).cannot_chat(trainer.cfg.task)
        else:
            self.query_one(ChatView).set_source(ChatSource(
                trainer.snapshot, trainer.task.tokenizer, trainer.cfg.model.block_size, run_name,
                self.chat_label(TRAINING_LABEL), trainer.cfg.task,
                lambda: {"save": run_name, "tag": f"live ({self.live_state})", "step": trainer.step_count},
                live=True, unsure_below=trainer.cfg.sample.unsure_below,
                unsure_reply_below=trainer.cfg.sample.unsure_reply_below))

    def chat_label(self, state: str) -> str:
        return f"chatting with {self.run_name} ({state})"

    def relabel_chat(self, state: str) -> None:
        """The Chat tab says what the weights it samples are doing (training, paused, stopped)."""
        self.live_state = state
        if self.trainer is not None and chats(self.trainer.cfg.task):
            self.query_one(ChatView).relabel(self.run_name, self.chat_label(state))

    # -- training control
    def action_start(self, step_once: bool = False) -> None:
        if self.training:
            if self.trainer.is_paused:
                self.trainer.resume()
                self.relabel_chat(TRAINING_LABEL)
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
            self.from_worker(self._build_failed, f"cannot start: {describe(e)}")
            return
        self.from_worker(self._adopt_new, tr, name, note, step_once)

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
        self.relabel_chat(TRAINING_LABEL)
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
            self.from_worker(self._saved, name, trainer.step_count)
        except (SaveError, OSError) as e:
            self.post_message(msg.WorkerFailed("save", describe(e)))

    def _saved(self, name: str, step: int) -> None:
        self.notify(f"saved {name} at step {step}")
        self.query_one(SavesPane).action_refresh()

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
        self.relabel_chat(f"paused at step {message.step}")
        self.show_plan()

    def on_train_done(self, message: msg.TrainDone) -> None:
        ev = message.event
        saved = f"; saved '{message.saved}'" if message.saved else ""
        self.done_text = f"{ev['reason']} at step {ev['steps']}{saved}"
        self.relabel_chat(f"not training: {ev['reason']} at step {ev['steps']}")
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


def speed_label(limit) -> str:
    return "unlimited" if limit is None else f"{limit:g} step{'' if limit == 1 else 's'}/s"
