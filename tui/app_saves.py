"""How the dashboard opens saved runs: loading one to chat with (or, for reversal, to replay its
attention), resuming one's training, and forgetting one that was deleted.

A mixin of tui/app.py's AttnLab; saves are read in thread workers, so a large or hostile file never
freezes the UI.
"""

from __future__ import annotations

from textual import work

from core.mixture import Mixture, MixtureError, check_mixable
from core.tasks import chats
from core.trainer import load_model
from tui.app_train import LOAD_ERRORS
from tui.screens.attention import AttentionPane
from tui.screens.chat import ChatSource, ChatView
from tui.worker import GuardedTrainer, describe, probe_model


class SavedRuns:
    """Load a save for chat, resume one's training, forget a deleted one."""

    @work(thread=True, exclusive=True, group="load")
    def load_for_chat(self, name: str, tag: str) -> None:
        """Read a save in a thread (a large or hostile file never freezes the UI), then show it."""
        try:
            loaded = load_model(name, tag)
        except LOAD_ERRORS as e:
            return self.from_worker(self.error, f"cannot load {name}: {describe(e)}")
        self.from_worker(self._show_loaded, name, tag, *loaded)

    def _show_loaded(self, name, tag, model, tok, cfg, meta) -> None:
        self.query_one(AttentionPane).use_task(cfg.task)  # its probe and its explanation
        if not chats(cfg.task):
            self.notify(f"a {cfg.task} model does not chat; replaying its attention instead", severity="warning")
            self.query_one(ChatView).cannot_chat(cfg.task)
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
            cfg.task, lambda: {"save": name, "tag": tag, "step": meta.get("step")},
            unsure_below=cfg.sample.unsure_below, unsure_reply_below=cfg.sample.unsure_reply_below))
        self.action_tab("chat")

    @work(thread=True, exclusive=True, group="load")
    def load_mixture_for_chat(self, picks: list[tuple[str, str]]) -> None:
        """Read several saves of one chatting task in a thread, then chat with them together (each next
        character's probability the mean of theirs)."""
        loaded = []
        for name, tag in picks:
            try:
                loaded.append(load_model(name, tag))
            except LOAD_ERRORS as e:
                return self.from_worker(self.error, f"cannot load {name}: {describe(e)}")
        labels = [f"{name} ({tag})" for name, tag in picks]
        try:
            check_mixable([t for _, t, *_ in loaded], [c for _, _, c, _ in loaded], labels)
        except MixtureError as e:
            return self.from_worker(self.error, f"cannot chat with them together: {e}")
        self.from_worker(self._show_mixture, picks, loaded)

    def _show_mixture(self, picks, loaded) -> None:
        (first, tok, cfg, _), (name, tag) = loaded[0], picks[0]
        models = [m for m, *_ in loaded]
        steps = [meta.get("step") for *_, meta in loaded]
        self.query_one(AttentionPane).use_task(cfg.task)  # the first save's attention, as for one save
        self.query_one(AttentionPane).load_saved_timeline(
            name, tag, f", first of {len(picks)} chatting")
        self.loaded = (first, tok, cfg)
        shown = ", ".join(f"{n} ({t}, step {s})" for (n, t), s in zip(picks, steps))
        self.query_one(ChatView).set_source(ChatSource(
            lambda: Mixture([m.snapshot() for m in models]), tok, cfg.model.block_size, name,
            f"chatting with {len(picks)} saves together: {shown}", cfg.task,
            lambda: {"save": " + ".join(n for n, _ in picks), "tag": " + ".join(t for _, t in picks),
                     "step": " + ".join(str(s) for s in steps)},
            unsure_below=cfg.sample.unsure_below, unsure_reply_below=cfg.sample.unsure_reply_below,
            members=tuple(n for n, _ in picks)))
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
            return self.from_worker(self.error, f"cannot resume {name}: {describe(e)}")
        self.from_worker(self._adopt_resumed, tr, name)

    def _adopt_resumed(self, tr: GuardedTrainer, name: str) -> None:
        if self.training:
            return self.notify("stop the current training first (S)", severity="warning")
        self.set_trainer(tr, name)
        self.setup_dirty = False
        self.launch()

    def forget_run(self, name: str) -> None:
        """A deleted run: drop the idle trainer and the chat source that used it (s starts afresh)."""
        if self.run_name == name and not self.training:
            self.trainer, self.run_name, self.setup_dirty = None, None, True
            self.status(f"{name} was deleted — s starts a new run")
        chat = self.query_one(ChatView)
        if chat.source is not None and name in (chat.source.run_name, *chat.source.members):
            chat.set_source(None)
            chat.pane.add_system(f"the run {name} was deleted; load another save to chat")
        self.show_plan()
