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

    def __init__(self, reply: str, note: str | None = None, candidates: list | None = None,
                 shown: str | None = None) -> None:
        super().__init__()
        self.reply = reply
        self.note = note
        self.candidates = candidates  # per character of `shown`: [(char, prob), ...] top 5, when known
        self.shown = reply if shown is None else shown  # the characters those belong to (a replaced reply:
                                                        # the opening the model began with, or all it wrote)


class TimelineSnapshots(Message):
    """Newly recorded timeline snapshots (core.timeline.Snapshot), batched a few times a second."""

    def __init__(self, snapshots: list, labels: list[str], probe: str) -> None:
        super().__init__()
        self.snapshots = snapshots
        self.labels = labels
        self.probe = probe


class SpeedLimitSet(Message):
    """The trainer applied a speed limit (steps a second, None = unlimited) at `step`."""

    def __init__(self, step: int, limit: float | None, elapsed_s: float) -> None:
        super().__init__()
        self.step = step
        self.limit = limit
        self.elapsed_s = elapsed_s


class TimelineLoaded(Message):
    """A save's recorded timeline, loaded in a worker (`error` says why not, when it failed)."""

    def __init__(self, timeline, source: str, error: str | None = None) -> None:
        super().__init__()
        self.timeline = timeline
        self.source = source
        self.error = error


class AblationDone(Message):
    """The task metric with and without the switched-off heads (from interp.evaluate_ablation)."""

    def __init__(self, heads: list[tuple[int, int]], mode: str, metric: str, base, ablated,
                 error: str | None = None) -> None:
        super().__init__()
        self.heads, self.mode, self.metric = heads, mode, metric
        self.base, self.ablated, self.error = base, ablated, error
