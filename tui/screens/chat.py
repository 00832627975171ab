"""ChatView: the conversation with a model (the one training, via snapshots, or a loaded save).

Replies stream from a thread worker (group "chat"); the conversation is formatted by
core.tasks.lm.chat_prompt as the task trained on it (a dialogue's turns; a Q&A question alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static
from textual.worker import get_current_worker

from core.checkpoint import SaveError
from core.runs import write_into_run
from core.config import ConfigError, load_config
from core.tasks.lm import SINGLE_PAIR_TASKS, PromptTooLong, chat_prompt, unsure_for
from tui.messages import ChatChunk, ChatDone, WorkerFailed
from tui.widgets import ChatPane
from tui.widgets.explain import Explain
from tui.widgets.nextchar import NextCharView
from tui.widgets.textfield import TextField
from core.text import safe_text
from tui.worker import chat_job

SETTINGS = (("temperature", "temperature"), ("top_k", "top-k"), ("top_p", "top-p"),
            ("max_new_tokens", "max length"), ("seed", "seed"))
NO_MODEL = "no model yet"
HOW_TO_CHAT = "train a Q&A, dialogue or chat model, or load one of their saves (Saves tab)"
# Replies start greedy (the likeliest character each time), as `attnlab eval` answers: sampled at the config's
# 0.8, recall in a chat of the model's own replies fell from 51.9 to 42.2% and 46.8 to 38.3% (two chat saves).
# A temperature above 0 samples; ctrl+r then draws another reply.
CHAT_TEMPERATURE = 0.0


@dataclass
class ChatSource:
    """Where replies come from: get_model() returns weights safe to sample from in another thread."""

    get_model: Callable
    tokenizer: object
    block_size: int
    run_name: str | None
    label: str
    task: str = "dialogue"  # which context the model was trained on (core.tasks.lm.chat_prompt)
    info: Callable | None = None  # () -> {"save", "tag", "step"} for exported transcripts
    live: bool = False  # the weights of the run training in this app (its label follows its state)
    unsure_below: float = 0.0  # the model's sample.unsure_below: an unsure start is replaced by don't-know
    unsure_reply_below: float = 0.0  # its sample.unsure_reply_below: so is a reply unsure anywhere (held back)
    members: tuple = ()  # every save answering, when several answer together (the first is run_name)


class ChatView(Horizontal):
    BINDINGS = [
        Binding("escape", "stop_reply", "Stop reply"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+l", "new_chat", "New chat"),
        Binding("ctrl+o", "export", "Export"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.source: ChatSource | None = None
        self.history: list[tuple[str, str]] = []  # finished (question, answer) turns
        self.question: str | None = None  # the question being answered
        self.regens = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="chat-main"):
            yield ChatPane(id="chat-box")
            yield Explain("nextchar", id="nextchar-explain")
            yield NextCharView(id="next-char")
        with Vertical(id="chat-side"):
            yield Static(NO_MODEL, id="chat-source")
            defaults = load_config("qa").sample
            with Horizontal(id="sample-settings"):
                for key, title in SETTINGS:
                    with Vertical(classes="sample-cell"):
                        yield Label(title, classes="sample-label")
                        value = CHAT_TEMPERATURE if key == "temperature" else getattr(defaults, key)
                        yield TextField(str(value), id=f"sample-{key}", classes="sample-input")
            yield Static("", id="sample-error")

    @property
    def pane(self) -> ChatPane:
        return self.query_one(ChatPane)

    def set_source(self, source: ChatSource | None) -> None:
        self.source = source
        label = NO_MODEL
        if source:
            alone = " — each question is asked on its own, as it trained" if source.task in SINGLE_PAIR_TASKS else ""
            label = safe_text(source.label + alone)
        self.query_one("#chat-source", Static).update(label)

    def cannot_chat(self, task: str) -> None:
        """A model of a task that does not chat (reversal) was started or loaded: say so, unless a model that
        chats is still the source."""
        if self.source is None:
            self.query_one("#chat-source", Static).update(f"the {task} model does not chat; {HOW_TO_CHAT}")

    def relabel(self, run_name: str, label: str) -> None:
        """A new label for the source, if it is still the live weights of `run_name` (its training paused,
        resumed or ended); a save loaded to chat keeps its own."""
        if self.source is not None and self.source.live and self.source.run_name == run_name:
            self.set_source(replace(self.source, label=label))

    def settings(self) -> dict:
        """The sampling settings, validated like the config (raises ConfigError)."""
        over = [f"sample.{k}={self.query_one(f'#sample-{k}', Input).value.strip()}" for k, _ in SETTINGS]
        s = load_config("qa", overrides=over).sample
        return {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
                "max_new_tokens": s.max_new_tokens, "seed": s.seed + self.regens}

    def on_input_changed(self, event: Input.Changed) -> None:
        if not event.input.has_class("sample-input"):
            return
        try:
            self.settings()
            text = ""
        except ConfigError as e:
            text = f"⚠ {safe_text(str(e))}"
        self.query_one("#sample-error", Static).update(text)

    def on_chat_pane_submitted(self, event: ChatPane.Submitted) -> None:
        event.stop()
        self.ask(event.text)

    def ask(self, question: str) -> None:
        """Stream the model's reply to `question` after the turns so far."""
        pane = self.pane
        if self.question is not None:
            pane.add_system("a reply is still streaming; press Esc to stop it first")
            return
        if self.source is None:
            pane.add_system(f"no model to chat with: {HOW_TO_CHAT}")
            return
        unknown = self.source.tokenizer.unknown_chars(question)
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            pane.add_system(f"characters this model has never seen were left out: {shown}")
        try:
            settings = self.settings()
            prompt = chat_prompt(self.source.task, self.history, question, self.source.block_size)
        except (PromptTooLong, ConfigError) as e:
            pane.add_system(str(e))
            return
        self.question = question
        pane.begin_reply()
        self._stream(self.source, prompt, settings, unsure_for(question, self.source.unsure_below,
                                                                self.source.unsure_reply_below))

    @work(thread=True, exclusive=True, group="chat")
    def _stream(self, source: ChatSource, prompt: str, settings: dict, unsure) -> None:
        worker = get_current_worker()
        chat_job(source.get_model, source.tokenizer, prompt, settings, self.post_message,
                 lambda: worker.is_cancelled, unsure)

    def on_chat_chunk(self, message: ChatChunk) -> None:
        self.pane.append_reply(message.text)

    def on_chat_done(self, message: ChatDone) -> None:
        note = message.note
        if note != "stopped" and not message.reply.strip():  # a young model's likeliest characters: blanks
            note = "empty reply: the model wrote no word; train longer, or raise the temperature"
        self.pane.end_reply(note)
        if message.candidates is not None:
            view = self.query_one(NextCharView)
            view.set_data(list(message.shown), message.candidates)
            if message.shown != message.reply and message.candidates:  # a replaced reply: its least sure character
                view.cursor = min(range(len(message.candidates)), key=lambda i: message.candidates[i][0][1])
        if self.question is not None:
            self.history.append((self.question, message.reply.strip()))
        self.question = None

    def on_worker_failed(self, message: WorkerFailed) -> None:
        message.stop()
        self.pane.end_reply("failed")
        self.pane.add_system(f"sampling failed: {message.cause}")
        self.app.notify(f"sampling failed: {message.cause}", severity="error", timeout=8)
        self.question = None

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "stop_reply":  # Esc stops a streaming reply; otherwise it leaves the field (app)
            return self.question is not None
        return True

    def action_stop_reply(self) -> None:
        self.workers.cancel_group(self, "chat")

    def action_regenerate(self) -> None:
        if self.question is not None or not self.history:
            self.app.notify("nothing to regenerate yet", severity="warning")
            return
        try:
            greedy = self.settings()["temperature"] <= 0
        except ConfigError as e:
            self.app.notify(f"fix the sampling settings first: {safe_text(str(e))}", severity="error")
            return
        if greedy:
            self.app.notify("temperature 0 always gives the same reply: set a temperature above 0 (0.8 samples) "
                            "to draw another", severity="warning", timeout=8)
            return
        question, _ = self.history.pop()
        self.regens += 1  # a new seed: the same settings would give the same reply
        self.pane.drop_last_reply()  # the new reply streams in where the old one was read
        self.ask(question)

    def action_new_chat(self) -> None:
        self.action_stop_reply()
        self.pane.clear()
        self.history.clear()
        self.question = None

    def action_export(self) -> None:
        if self.source is None or not self.source.run_name:
            self.app.notify("no run to export into; train or load a save first", severity="warning")
            return
        try:  # into the existing run only: never through a link, never re-creating a deleted run
            path = write_into_run(self.source.run_name, f"chat-{time.strftime('%Y%m%d-%H%M%S')}.md",
                                  self.export_header() + self.pane.to_markdown(), numbered=True)
        except (SaveError, OSError) as e:
            self.app.notify(f"export failed: {e}", severity="error")
            return
        self.app.notify(f"transcript saved to {path}")

    def export_header(self) -> str:
        """Which save, step and sampling settings the transcript came from, as a Markdown list."""
        info = self.source.info() if self.source and self.source.info else {}
        try:
            sampling = self.settings()
            sampling["seed"] -= self.regens  # the base seed; regenerations add one each
            shown = ", ".join(f"{k} {v}" + (" (greedy)" if k == "temperature" and v <= 0 else "")
                              for k, v in sampling.items())
        except ConfigError as e:
            shown = f"invalid ({e})"
        lines = ["# attnlab chat", "",
                 f"- save: {info.get('save', self.source.run_name if self.source else '—')}",
                 f"- tag: {info.get('tag', '—')}", f"- step: {info.get('step', '—')}",
                 f"- sampling: {shown}" + (f" (regenerated {self.regens}x)" if self.regens else ""),
                 *([f"- unsure below: {self.source.unsure_below}"] if self.source and self.source.unsure_below else []),
                 *([f"- unsure reply below: {self.source.unsure_reply_below}"]
                   if self.source and self.source.unsure_reply_below else []),
                 f"- exported: {time.strftime('%Y-%m-%d %H:%M:%S')}", "", ""]
        return safe_text("\n".join(lines), keep_newlines=True)
