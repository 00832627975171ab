"""Messages from the training and sampling workers to the app; plain data only, arrays already copied."""

from __future__ import annotations

from textual.message import Message


class TrainSteps(Message):
    """A batch of step events gathered over ~0.5 s (posting every step would flood the UI)."""

    def __init__(self, events: list[dict]) -> None:
        super().__init__()
        self.events = events


class TrainEval(Message):
    """One evaluation event; `saved` names the tag written because it was the best so far."""

    def __init__(self, event: dict, saved: str | None = None) -> None:
        super().__init__()
        self.event = event
        self.saved = saved


class AttentionUpdate(Message):
    """Attention maps (L, nh, T, T) on the probe input; a newer one replaces a queued older one."""

    def __init__(self, labels: list[str], maps, step: int | None = None) -> None:
        super().__init__()
        self.labels = labels
        self.maps = maps
        self.step = step

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AttentionUpdate)


class TrainPaused(Message):
    """The trainer is waiting between steps (pause or single step)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step


class TrainDone(Message):
    """The run ended (max steps, stopped, early stop); `saved` is the tag written, if any."""

    def __init__(self, event: dict, saved: str | None = None, save_error: str | None = None) -> None:
        super().__init__()
        self.event = event
        self.saved = saved
        self.save_error = save_error


class WorkerFailed(Message):
    """A worker raised; `what` is 'training' or 'chat', `cause` a one-line description."""

    def __init__(self, what: str, cause: str) -> None:
        super().__init__()
        self.what = what
        self.cause = cause


class ChatChunk(Message):
    """A few characters of the reply being streamed."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ChatDone(Message):
    """The reply ended; `note` says why when it was not the model's own end of line."""

    def __init__(self, reply: str, note: str | None = None) -> None:
        super().__init__()
        self.reply = reply
        self.note = note
