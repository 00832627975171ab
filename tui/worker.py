"""The work done off the UI thread: training (with throttled events) and streaming chat replies.

Functions here take `post` (a thread-safe message poster) and `cancelled` callables instead of touching
widgets; tui/app.py runs them in Textual thread workers.
"""

from __future__ import annotations

import threading
import time

from core.checkpoint import Autosave, SaveError
from core.metrics_log import MetricsLog
from core.sample import stream_text
from core.trainer import Trainer, TrainingDiverged
from tui.messages import (AttentionUpdate, ChatChunk, ChatDone, SpeedLimitSet, TimelineSnapshots, TrainDone,
                          TrainEval, TrainPaused, TrainSteps, WorkerFailed)

STEP_INTERVAL = 0.5  # seconds between batches of step events (stats and progress redraw this often)
ATTENTION_INTERVAL = 0.4  # seconds between attention probes during training
SNAPSHOT_INTERVAL = 0.4  # seconds between batches of recorded timeline snapshots
CHUNK_INTERVAL = 0.05  # seconds between chat chunks
TOPK = 5  # candidates kept per reply character for the next-character view


class GuardedTrainer(Trainer):
    """A Trainer whose optimizer steps and saves hold a lock, so snapshots never see half-updated weights."""

    def __init__(self, *args, **kwargs):
        self.weights_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def step(self):
        with self.weights_lock:
            return super().step()

    def save(self, *args, **kwargs):
        with self.weights_lock:
            return super().save(*args, **kwargs)

    def snapshot(self):
        """An independent copy of the model taken between optimizer steps."""
        with self.weights_lock:
            return self.averaged().snapshot()


def describe(exc: BaseException) -> str:
    """One line naming the cause of a worker failure."""
    if isinstance(exc, (TrainingDiverged, SaveError, ValueError, OSError)):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class EventPump:
    """emit() for Trainer.run: batches step events, probes attention now and then, autosaves the best (and,
    at most once a minute, `last`).

    Runs in the training thread, between optimizer steps, so it may read the model safely.
    """

    def __init__(self, trainer, post, cancelled, run_name=None, probe_text=None):
        self.trainer = trainer
        self.post = post
        self.cancelled = cancelled
        self.run_name = run_name
        self.probe_text = probe_text  # read each probe; the UI may replace it (a str is set atomically)
        self.step_once = False  # pause after the next step (single-step mode)
        # probe the typed text live; the UI clears this while the recorded timeline is on screen
        self.probe_live = True
        self._steps: list[dict] = []
        self._snaps: list = []
        self._last_post = 0.0
        self._last_probe = 0.0
        self.autosave = Autosave()  # `last` now and then, so a killed app loses at most a minute or so
        self._last_snaps = 0.0

    def __call__(self, ev):
        if self.cancelled():
            self.trainer.stop()
        kind = ev["event"]
        if kind == "step":
            self._steps.append(ev)
            now = time.monotonic()
            if self.step_once:
                self.step_once = False
                self.trainer.pause()
                self.flush()
                self.probe()
            elif now - self._last_post >= STEP_INTERVAL:
                self.flush()
            if now - self._last_probe >= ATTENTION_INTERVAL:
                self.probe()
        elif kind == "eval":
            self.flush()
            saved = None
            if ev.get("best") and self.run_name:
                saved = self.save("best")
            if self.run_name and self.autosave.due() and self.save("last"):
                self.autosave.step = ev["step"]
            self.post(TrainEval(ev, saved))
        elif kind == "paused":
            self.flush()
            self.post(TrainPaused(ev["step"]))
        elif kind == "snapshot":
            self._snaps.append(ev["snapshot"])
            if time.monotonic() - self._last_snaps >= SNAPSHOT_INTERVAL:
                self.flush_snapshots()
        elif kind == "speed_limit":
            self.flush()
            self.post(SpeedLimitSet(ev["step"], ev.get("limit"), self.trainer.elapsed_s))

    def flush(self):
        if self._steps:
            self.post(TrainSteps(self._steps))
            self._steps = []
        self._last_post = time.monotonic()
        self.flush_snapshots()

    def flush_snapshots(self):
        if self._snaps:
            tl = self.trainer.timeline
            self.post(TimelineSnapshots(self._snaps, list(tl.labels), tl.probe))
            self._snaps = []
        self._last_snaps = time.monotonic()

    def probe(self):
        self._last_probe = time.monotonic()
        if not self.probe_live and getattr(self.trainer, "timeline", None) is not None:
            return  # the recorded snapshots feed the map
        ev = self.trainer.attention_probe(self.probe_text or None)
        self.post(AttentionUpdate(ev["labels"], ev["maps"], ev["step"]))

    def save(self, tag):
        """Save the current state; a failure is reported, never raised (training goes on)."""
        try:
            self.trainer.save(self.run_name, tag)
            return tag
        except (SaveError, OSError) as e:
            self.post(WorkerFailed("save", describe(e)))
            return None


def open_log(pump):
    """The run's metrics.jsonl writer, or None (no run name, or the file cannot be opened: reported)."""
    if not pump.run_name:
        return None
    try:
        return MetricsLog(pump.run_name, pump.trainer)
    except (SaveError, OSError) as e:
        pump.post(WorkerFailed("metrics log", describe(e)))
        return None


def train_job(pump, max_steps=None):
    """Run the trainer to the end (or stop); saves 'last' after a clean end. Posts every outcome."""
    tr = pump.trainer
    log = open_log(pump)
    try:
        done = tr.run(log.tee(pump) if log else pump, max_steps=max_steps)
    except Exception as e:  # any failure: report it, keep the app alive, keep the last good save
        pump.flush()
        pump.post(WorkerFailed("training", describe(e)))
        if log:
            log.close()
        return
    pump.flush()
    if tr.step_count:
        pump.probe()
    if not pump.run_name:
        saved = None
    else:  # unless the last evaluation's autosave already holds this state
        saved = "last" if pump.autosave.step == tr.step_count else pump.save("last")
    if log:
        log(done)
        log.close()
    pump.post(TrainDone(done, saved))


def chat_job(get_model, tokenizer, prompt, settings, post, cancelled, unsure=None):
    """Stream one reply; chunks are batched every ~50 ms. get_model() returns the weights to sample.
    unsure (core.sample.Unsure): a reply the model is unsure how to begin (or, with unsure.anywhere, unsure of
    anywhere) is replaced, and the note says so."""
    try:
        model = get_model()
        reply, buf, last, cands = [], [], time.monotonic(), []
        for ch, top in stream_text(model, tokenizer, prompt, stop=("\n",), cancel=cancelled, unknown="drop",
                                   topk=TOPK, unsure=unsure, **settings):
            reply.append(ch)
            cands.append(top)
            buf.append(ch)
            if time.monotonic() - last >= CHUNK_INTERVAL:
                post(ChatChunk("".join(buf)))
                buf, last = [], time.monotonic()
        if buf:
            post(ChatChunk("".join(buf)))
        if unsure is not None and unsure.used:  # the next-character view shows what the model began (or wrote)
            post(ChatDone("".join(reply), unsure.note() + "; the next-character view shows it", unsure.cands,
                          shown=unsure.opening))
            return
        note = "stopped" if cancelled() else ("max length" if len(reply) >= settings["max_new_tokens"] else None)
        post(ChatDone("".join(reply), note, cands))
    except Exception as e:
        post(WorkerFailed("chat", describe(e)))


def probe_model(model, tokenizer, text, block_size):
    """(labels, maps (L, nh, T, T)) of a loaded model on `text` (the last block_size characters)."""
    text = "".join(ch for ch in text if not tokenizer.unknown_chars(ch))[-block_size:]
    if not text:
        raise ValueError("the probe text has no character this model knows; type some it has seen")
    ids = tokenizer.encode(text, unknown="drop")[None, :]  # (1, T)
    model.forward(ids)
    return list(text), model.attention_maps()[:, 0].copy()
