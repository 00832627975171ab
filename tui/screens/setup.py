"""SetupPane: pick a task, edit its key hyperparameters and corpus, with errors shown inline."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.message import Message
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, RadioButton, RadioSet, Static

from core.checkpoint import SaveError, run_dir
from core.config import ConfigError, config_to_dict, load_config
from core.tasks.corpus import CorpusError, load_conversations
from core.text import safe_text
from tui.widgets.textfield import TextField

TASK_TITLES = {"reversal": "Reversal proof", "qa": "Q&A", "dialogue": "Dialogue", "chat": "Chat"}
KEYS = ("model.n_layer", "model.n_head", "model.n_embd", "model.block_size", "train.lr",
        "train.batch_size", "train.max_steps", "train.eval_interval")
TASK_KEYS = {"reversal": ("data.seq_len",), "qa": (), "dialogue": (), "chat": ()}
ALL_KEYS = KEYS + ("data.seq_len",)


def input_id(key: str) -> str:
    return "hp-" + key.replace(".", "-")


class SetupPane(Vertical):
    """Task picker and settings; `config()` is the validated Config or None (the error is on screen)."""

    class Edited(Message):
        """The user changed a setting (the next start builds a new trainer)."""

    def __init__(self, task: str = "reversal", **kwargs) -> None:
        super().__init__(**kwargs)
        self.task_name = task
        self.error_text: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="task-column"):
                yield Label("task", classes="section")
                with RadioSet(id="task-picker"):
                    for t, title in TASK_TITLES.items():
                        yield RadioButton(title, value=t == self.task_name, name=t)
                yield Static("s starts a new run with these settings", id="setup-hint")
            with VerticalScroll(id="hp-column"):
                for key in ALL_KEYS:
                    with Horizontal(classes="hp-row", id="row-" + input_id(key)):
                        yield Label(key, classes="hp-label")
                        yield TextField(id=input_id(key), classes="hp-input")
                with Horizontal(classes="hp-row", id="row-corpus"):
                    yield Label("corpus", classes="hp-label")
                    yield TextField(placeholder="the project's own corpus", id="corpus-input")
                with Horizontal(classes="hp-row"):
                    yield Label("run name", classes="hp-label")
                    yield TextField(placeholder="automatic (task-date-time)", id="run-name")
                yield Static("", id="corpus-status")
                yield Static("", id="setup-error")

    def on_mount(self) -> None:
        self.fill_preset()

    def fill_preset(self) -> None:
        """Put the chosen task's preset values into the inputs."""
        d = config_to_dict(load_config(self.task_name))
        for key in ALL_KEYS:
            sec, name = key.split(".")
            self.query_one("#" + input_id(key), Input).value = str(d[sec][name])
        self.query_one("#row-" + input_id("data.seq_len")).display = self.task_name == "reversal"
        self.query_one("#row-corpus").display = self.task_name != "reversal"  # reversal needs no corpus
        self.validate()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.task_name = event.pressed.name or "reversal"
        self.fill_preset()
        self.post_message(self.Edited())

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.validate()
        self.post_message(self.Edited())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()

    def overrides(self) -> list[str]:
        keys = KEYS + TASK_KEYS[self.task_name]
        out = [f"{k}={self.query_one('#' + input_id(k), Input).value.strip()}" for k in keys
               if self.query_one("#" + input_id(k), Input).value.strip()]
        corpus = self.corpus_path
        if corpus and self.task_name != "reversal":
            out.append(f"data.corpus={Path(corpus).expanduser().resolve()}")
        return out

    @property
    def corpus_path(self) -> str:
        return self.query_one("#corpus-input", Input).value.strip()

    def validate(self):
        """Check every field; show the first problem inline. Returns the Config or None."""
        for inp in self.query(".hp-input, #corpus-input, #run-name"):
            inp.remove_class("-invalid")
        self.error_text, cfg = None, None
        try:
            cfg = load_config(self.task_name, overrides=self.overrides())
            if cfg.task == "reversal" and cfg.data.seq_len > cfg.model.block_size:
                raise ConfigError(f"data.seq_len={cfg.data.seq_len} is longer than model.block_size="
                                  f"{cfg.model.block_size}; raise model.block_size or shorten the sequences")
            self._check_corpus()
            if self.run_name_text:
                run_dir(self.run_name_text)
        except (ConfigError, CorpusError, SaveError, ValueError) as e:
            self.error_text = str(e).splitlines()[0]
            self._mark(self.error_text, e)
            cfg = None
        shown = f"⚠ {safe_text(self.error_text)}" if self.error_text else "settings OK"
        self.query_one("#setup-error", Static).update(shown)
        self.query_one("#setup-error").set_class(bool(self.error_text), "-error")
        return cfg

    def _mark(self, message: str, exc: Exception) -> None:
        if isinstance(exc, CorpusError):
            self.query_one("#corpus-input").add_class("-invalid")
        elif isinstance(exc, SaveError):
            self.query_one("#run-name").add_class("-invalid")
        for key in ALL_KEYS:
            if key in message:
                self.query_one("#" + input_id(key)).add_class("-invalid")

    def _check_corpus(self) -> None:
        status = self.query_one("#corpus-status", Static)
        if self.task_name == "reversal":
            status.update("corpus: none needed (random letter sequences)")
            return
        path = self.corpus_path
        shown = path or f"corpora/{self.task_name}/train.txt (own corpus)"
        if path:
            convs = load_conversations(Path(path).expanduser())
            status.update(f"corpus: {safe_text(shown)} — {len(convs)} conversations")
        else:
            status.update(f"corpus: {shown}")

    @property
    def run_name_text(self) -> str:
        return self.query_one("#run-name", Input).value.strip()

    def run_name(self) -> str:
        """The name to save under: the typed one, else task and start time."""
        return self.run_name_text or f"{self.task_name}-{time.strftime('%Y%m%d-%H%M%S')}"

    # -- what `s` will do, said where the settings are edited
    def more_steps(self, trainer) -> int:
        """How many more steps `s` gives a finished run: the max_steps field (else the run's own)."""
        try:
            n = int(self.query_one("#" + input_id("train.max_steps"), Input).value.strip())
        except ValueError:
            n = trainer.cfg.train.max_steps
        return max(1, n)

    def plan(self) -> str:
        """One line: what pressing s does now, given the app's run and whether the settings changed."""
        app = self.app
        tr, name = app.trainer, app.run_name or "the current run"
        if app.training and tr is not None and tr.is_paused:
            if app.setup_dirty:
                return (f"settings changed: s resumes the paused run {name} unchanged; "
                        "S stops it, then s starts a new run with these settings")
            return f"s resumes the paused run {name}"
        if app.training and tr is not None:
            return "training — p pauses, S stops" + ("; the changed settings apply to the next new run"
                                                    if app.setup_dirty else "")
        if tr is None or app.setup_dirty:
            return ("settings changed: s starts a new run with them" if tr is not None
                    else "s starts a new run with these settings")
        if tr.step_count >= tr.cfg.train.max_steps:
            return f"s continues {name} for {self.more_steps(tr):,} more steps (same save folder)"
        return f"s resumes {name} at step {tr.step_count:,}"

    def show_plan(self) -> None:
        self.query_one("#setup-hint", Static).update(safe_text(self.plan()))

    def warn_probe(self, probe: str, cfg) -> None:
        """A reversal probe of another length than the sequences is cut or continued: say so."""
        if cfg.task != "reversal":
            return
        letters = "".join(c for c in (probe or "").upper() if c.isalpha() and c.isascii())
        if letters and len(letters) != cfg.data.seq_len:
            self.app.notify(f"the attention probe '{safe_text(letters[:24])}' has {len(letters)} letters but this "
                            f"model reads {cfg.data.seq_len}: it is {'cut' if len(letters) > cfg.data.seq_len else 'continued'} "
                            "to fit; type a word of that length on the Attention tab", severity="warning", timeout=8)
