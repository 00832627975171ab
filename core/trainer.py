"""The training loop: owns model, optimizer, task data and RNG, and reports plain-data events.

`step()` and `evaluate()` do the work; `run(emit)` loops them, polling pause/stop flags that another
thread may set. Events are dicts of numbers, lists and copied arrays; the trainer knows no UI.
"""

import dataclasses
import math
import threading
import time
from collections import deque

import numpy as np

from core import checkpoint
from core.config import ConfigError, config_from_dict, config_to_dict, teacher_specs
from core.mixture import MixtureError, load_members, mean_probs
from core.model import Transformer, flat_views, param_shapes
from core.optim import AdamW, clip_grad_norm, lr_at
from core.tasks import make_task
from core.timeline import Timeline
from core.tokenizer import CharTokenizer

HISTORY = 5000  # points kept per history series (older ones are thinned, never unbounded)
PACE_SLICE = 0.05  # seconds: a speed-limited run sleeps in slices this long, polling stop and pause


class TrainingDiverged(RuntimeError):
    """Loss or gradients became NaN/inf; the weights of that step were not applied.

    weights_ok is False when the current weights themselves give a non-finite loss (they came from
    the previous, absurd update): such weights are never saved.
    """

    def __init__(self, message, weights_ok=True):
        super().__init__(message)
        self.weights_ok = weights_ok


def set_threads(n):
    """Cap BLAS threads (one by default: on a shared 2-core machine more threads ran slower)."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:  # the environment variables set before numpy loaded still apply
        pass


class Trainer:
    def __init__(self, cfg, task=None, model=None, saves_dir=None):
        self.task = task if task is not None else make_task(cfg)
        model_cfg = dataclasses.replace(cfg.model, vocab_size=self.task.tokenizer.vocab_size,
                                        causal=self.task.causal)
        self.cfg = dataclasses.replace(cfg, model=model_cfg)
        self.teachers = self._load_teachers(saves_dir)  # models whose mean probabilities are the targets, or []
        seed = self.cfg.train.seed
        self.model = model if model is not None else Transformer(model_cfg, rng=np.random.default_rng(seed))
        t = self.cfg.train
        self.opt = AdamW(self.model, t.beta1, t.beta2, weight_decay=t.weight_decay)
        self.rng = np.random.default_rng(seed + 1)  # batches and dropout
        # train.ema: a running average of the weights (float64), what evaluations, snapshots, chat and
        # saves see; the optimizer steps the model's own weights (saved beside it, for resuming)
        self.ema = self.model.flat.astype(np.float64) if t.ema else None  # (P,)
        self._averaged = None  # a model holding the average, made on first use
        self._averaged_stale = True
        self.step_count = 0
        self.tokens_seen = 0
        self.elapsed_s = 0.0  # training time, carried across saves
        self.history = {"train": deque(maxlen=HISTORY), "val": deque(maxlen=HISTORY)}
        self.best = None  # best value of the task's metric (or val loss)
        self.best_step = None
        self.stale = 0  # evaluations since the last best (early stopping), saved with the run
        self.last_eval = None
        self.broken = None  # why the weights are unusable (they give a non-finite loss), else None
        self.timeline = Timeline.for_task(self.task)  # None switches recording off (benchmarks)
        self._eval_capture = None  # (step, capture) an evaluation made for the snapshot that follows it
        self._limit = None  # steps per second, None = unlimited
        self._limit_changed = False
        self._limit_lock = threading.Lock()
        self._stop = threading.Event()
        self._run = threading.Event()
        self._run.set()

    # -- control, safe to call from another thread
    def pause(self):
        self._run.clear()

    def resume(self):
        self._run.set()

    def stop(self):
        self._stop.set()
        self._run.set()

    def rearm(self):
        """Clear a previous stop() so run() can continue this trainer."""
        self._stop.clear()
        self._run.set()

    def extend(self, steps):
        """Continue past the end: max_steps becomes the current step plus `steps` (same run, same RNG)."""
        t = dataclasses.replace(self.cfg.train, max_steps=self.step_count + int(steps))
        self.cfg = dataclasses.replace(self.cfg, train=t)

    def set_speed_limit(self, steps_per_s):
        """Pace run() to at most steps_per_s optimizer steps a second (None: unlimited, the default)."""
        if steps_per_s is not None:
            v = steps_per_s
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"speed limit {steps_per_s!r}: give a positive number of steps per second, "
                                 "or None for unlimited")
            steps_per_s = float(v)
        with self._limit_lock:
            self._limit, self._limit_changed = steps_per_s, True

    @property
    def speed_limit(self):
        return self._limit

    @property
    def is_paused(self):
        return not self._run.is_set()

    @property
    def stopping(self):
        return self._stop.is_set()

    # -- work
    def epoch(self):
        """Passes over the training text so far (None for tasks that draw fresh data every batch)."""
        size = getattr(self.task, "train_ids", None)
        return None if size is None else self.tokens_seen / len(size)

    def lr(self):
        t = self.cfg.train
        return lr_at(self.step_count, t.lr, t.min_lr, t.warmup_steps, t.max_steps, t.restart_at, t.restart_lr, t.restart_min_lr)

    def step(self):
        """One optimizer step; raises TrainingDiverged (weights untouched) on NaN/inf."""
        t0 = time.perf_counter()
        t = self.cfg.train
        lr = self.lr()
        x, y, mask = self.task.batch("train", t.batch_size, self.rng)
        soft = mean_probs(self.teachers, x, self.model.dtype) if self.teachers else None  # (B, T, V) targets
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below, with a message
            _, loss = self.model.forward(x, y, mask, train=True, rng=self.rng, soft=soft,
                                         soft_weight=t.teacher_weight)
            self.model.backward()
            norm = clip_grad_norm(self.model.grad_flat, t.grad_clip)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            msg = (f"training diverged at step {self.step_count + 1}: the {what} is "
                   f"{loss if what == 'loss' else norm}; the learning rate ({lr:.3g}) is "
                   f"likely too high — lower train.lr or raise train.warmup_steps")
            if what == "loss":  # these weights cannot give a finite loss: never save them
                self.broken = msg
            raise TrainingDiverged(msg, weights_ok=what != "loss")
        self.opt.step(lr)
        self.step_count += 1
        if self.ema is not None:
            self._update_ema(t.ema)
        ms = (time.perf_counter() - t0) * 1000
        self.elapsed_s += ms / 1000
        n_tok = int(x.size)
        self.tokens_seen += n_tok
        self.history["train"].append((self.step_count, round(self.elapsed_s, 4), float(loss)))
        return {"event": "step", "step": self.step_count, "loss": float(loss), "lr": lr, "grad_norm": norm,
                "tokens": n_tok, "ms": ms, "tokens_per_s": n_tok / max(ms / 1000, 1e-9),
                "elapsed_s": self.elapsed_s, "max_steps": t.max_steps, "epoch": self.epoch()}

    def _load_teachers(self, saves_dir):
        """train.teachers' models (their saved weights), checked to read this run's characters and window."""
        t = self.cfg.train
        if not t.teachers:
            return []
        try:
            models, _ = load_members(teacher_specs(t.teachers), (self.task.tokenizer, self.cfg, "this run"), saves_dir)
        except checkpoint.SaveError as e:
            raise ConfigError(f"train.teachers: {e}; or train without teachers: --set train.teachers= "
                              f"(nothing after the =)") from None
        except MixtureError as e:
            raise ConfigError(f"train.teachers: {e}") from None
        return models

    def teacher_names(self):
        """The save names train.teachers reads (a run never saves over one of them)."""
        return {name for name, _ in teacher_specs(self.cfg.train.teachers)} if self.cfg.train.teachers else set()

    def _update_ema(self, decay):
        """ema <- d * ema + (1 - d) * weights; d starts low, so the first steps' weights fade quickly."""
        d = min(decay, (1 + self.step_count) / (10 + self.step_count))
        self.ema *= d
        self.ema += (1 - d) * self.model.flat.astype(np.float64)
        self._averaged_stale = True

    def averaged(self):
        """The model that evaluations, snapshots, chat and saves use: the weights' running average with
        train.ema, else the trained model itself."""
        if self.ema is None:
            return self.model
        if self._averaged is None:
            self._averaged = self.model.snapshot()
        if self._averaged_stale:
            self._averaged.flat[:] = self.ema
            self._averaged_stale = False
        return self._averaged

    def metric_value(self, metrics):
        """What 'best' is judged by: the task metric (higher is better), ties broken by lower val loss."""
        v = metrics.get(self.task.metric)
        return [v if v is not None else 0.0, -metrics["val_loss"]]

    def evaluate(self, full=False, track=True, model=None):
        """Task metrics on held-out data; marks whether this is the best evaluation so far.

        track=False (an evaluation off the schedule, e.g. after a stop) reports without moving `best`
        or the early-stopping count, so a stopped and resumed run follows the uninterrupted one.
        model: another model to score in place of the trained one (a Mixture), reported untracked.
        """
        t0 = time.perf_counter()
        track = track and model is None
        carry = self._eval_probe_batch() if model is None else None
        model = self.averaged() if model is None else model
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are reported below
            if carry is None:
                metrics = self.task.evaluate(model, np.random.default_rng(0), full=full)
            else:
                metrics = self.task.evaluate(model, np.random.default_rng(0), full=full,
                                             extra=carry[:1], keep=len(carry) - 1)
                out = metrics.pop("extra")
                self._eval_capture = (self.step_count, self.timeline.capture_from(self.task, out["logits"], out["maps"]))
        if not math.isfinite(metrics["val_loss"]):  # broken weights must never become "best"
            self.broken = (f"training diverged by step {self.step_count}: the validation loss is "
                           f"{metrics['val_loss']}; the learning rate ({self.lr():.3g}) is likely too "
                           f"high — lower train.lr or raise train.warmup_steps")
            raise TrainingDiverged(self.broken, weights_ok=False)
        score = self.metric_value(metrics)
        improved = track and (self.best is None or score > self.best)
        if improved:
            self.best, self.best_step = score, self.step_count
        if track:
            self.stale = 0 if improved else self.stale + 1
        self.history["val"].append((self.step_count, round(self.elapsed_s, 4), float(metrics["val_loss"])))
        self.last_eval = {"event": "eval", "step": self.step_count, "best": improved, "metric": self.task.metric,
                          "eval_ms": (time.perf_counter() - t0) * 1000, **metrics}
        return self.last_eval

    def _eval_probe_batch(self):
        """The timeline's probe batch (probe word, score probes) when this task's evaluation computes it
        in its own forward, else None. Reversal's score probes are its first held-out sequences, so the
        evaluation only adds the probe word: the snapshot after it costs about one row of evaluation."""
        if self.timeline is None or self.task.causal or not hasattr(self.task, "eval_x"):
            return None
        batch = self.timeline.probe_batch(self.task)  # (1 + B, L)
        held = self.task.eval_x[:len(batch) - 1]
        return batch if held.shape == batch[1:].shape and np.array_equal(held, batch[1:]) else None

    def attention_probe(self, text=None):
        """Attention maps (n_layer, nh, T, T) of the model on the task's probe input (or `text`)."""
        ids, labels = self.task.probe(text)
        model = self.averaged()
        model.forward(ids)
        return {"event": "attention", "step": self.step_count, "labels": labels,
                "maps": model.attention_maps()[:, 0].copy()}

    def record(self, step_ev=None, eval_ev=None):
        """Add a timeline snapshot of the model now; returns the "snapshot" event (None when the
        weights give non-finite attention: nothing is recorded)."""
        ev = eval_ev or {}
        captured = self._eval_capture[1] if self._eval_capture and self._eval_capture[0] == self.step_count else None
        self._eval_capture = None
        added = self.timeline.record(
            self.averaged(), self.task, step=self.step_count, elapsed_s=self.elapsed_s,
            loss=step_ev["loss"] if step_ev else None, val_loss=ev.get("val_loss"),
            metric=self.task.metric if eval_ev else None, metric_value=ev.get(self.task.metric), captured=captured)
        if added is None:
            return None
        index, snap, dropped = added
        return {"event": "snapshot", "index": index, "step": snap.step, "snapshot": snap, "dropped": dropped}

    def _record_if_new(self, emit):
        """A snapshot of the current step unless the timeline already ends with one (start/end of run)."""
        tl = self.timeline
        if tl is not None and (not tl.snapshots or tl.snapshots[-1].step != self.step_count):
            ev = self.record()
            if ev is not None:
                emit(ev)

    def _limit_event(self):
        """The "speed_limit" event (and timeline mark) if set_speed_limit() was called since the last one."""
        with self._limit_lock:
            if not self._limit_changed:
                return None
            self._limit_changed = False
            limit = self._limit
        if self.timeline is not None:
            self.timeline.mark(self.step_count, "speed_limit", limit)
        return {"event": "speed_limit", "step": self.step_count, "limit": limit}

    def _pace(self, t0):
        """Under a speed limit, wait until 1/limit s after t0; returns early on stop, pause or a new limit."""
        while not self._stop.is_set() and self._run.is_set():
            limit = self._limit
            left = (t0 + 1.0 / limit if limit else 0.0) - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, PACE_SLICE))

    def run(self, emit, max_steps=None, until=None, attention_every=None):
        """Train until max_steps, stop(), until(metrics) is true, or early stopping; returns the done event.

        emit(event) receives every step, eval, snapshot, speed_limit and attention event. Pausing blocks
        between steps. Timeline snapshots are taken on its schedule, at every evaluation, and at the
        start and end of the run (once per step).
        """
        t = self.cfg.train
        max_steps = t.max_steps if max_steps is None else max_steps
        started = time.perf_counter()
        reason = "max_steps"
        self._record_if_new(emit)
        while self.step_count < max_steps:
            if not self._run.is_set():
                emit({"event": "paused", "step": self.step_count})
                self._run.wait()
            if self._stop.is_set():
                reason = "stopped"
                break
            limit_ev = self._limit_event()
            if limit_ev:
                emit(limit_ev)
            t0 = time.monotonic()
            step_ev = self.step()
            emit(step_ev)
            if attention_every and self.step_count % attention_every == 0:
                emit(self.attention_probe())
            ev = None
            if self.step_count % t.eval_interval == 0 or self.step_count == max_steps:
                ev = self.evaluate()
            if self.timeline is not None and (ev is not None or self.timeline.due(self.step_count)):
                snap_ev = self.record(step_ev, ev)  # before the eval event, so a best save holds it
                if snap_ev is not None:
                    emit(snap_ev)
            if ev is not None:
                emit(ev)
                if until is not None and until(ev):
                    reason = "target reached"
                    break
                if t.patience and self.stale >= t.patience:
                    reason = "early stop (no improvement)"
                    break
            if t.max_seconds and time.perf_counter() - started >= t.max_seconds:
                reason = "time limit"
                break
            if self._limit:
                self._pace(t0)
        self._record_if_new(emit)
        return {"event": "done", "reason": reason, "steps": self.step_count,
                "elapsed_s": time.perf_counter() - started, "metrics": self.last_eval or {}}

    # -- saves
    def state_meta(self):
        return {"format_version": checkpoint.FORMAT_VERSION, "task": self.cfg.task, "step": self.step_count,
                "tokens_seen": self.tokens_seen, "elapsed_s": self.elapsed_s,
                "tokenizer": self.task.tokenizer.to_dict(), "rng_state": self.rng.bit_generator.state,
                "best": self.best, "best_step": self.best_step, "stale_evals": self.stale,
                "metric": self.task.metric,
                "last_eval": _plain(self.last_eval), "created": time.time(),
                "history": {k: list(v) for k, v in self.history.items()}}

    def save(self, name, tag="last", saves_dir=None):
        """Write model, optimizer and training state atomically to saves/NAME/<tag>/."""
        if self.broken:
            raise checkpoint.SaveError(f"not saved: {self.broken}; the previous save is kept")
        if name in self.teacher_names():
            raise checkpoint.SaveError(f"not saved as {name}: it is one of this run's teachers (train.teachers), "
                                       f"and a resume would learn from these weights instead; save under another name")
        opt = {"t": np.array(self.opt.t, dtype=np.int64)}
        m_views = flat_views(self.opt.m, self.model.shapes)
        v_views = flat_views(self.opt.v, self.model.shapes)
        for k in self.model.shapes:
            opt["m/" + k], opt["v/" + k] = m_views[k], v_views[k]
        if self.ema is not None:  # the weights saved are the average; these resume the run exactly
            ema_views = flat_views(self.ema, self.model.shapes)
            for k in self.model.shapes:
                opt["raw/" + k], opt["ema/" + k] = self.model.params[k], ema_views[k]
        extra = self.timeline.to_files() if self.timeline is not None else None
        return checkpoint.save_checkpoint(name, tag, self.averaged().params, opt, self.state_meta(),
                                          config_to_dict(self.cfg), saves_dir, extra_files=extra)

    @classmethod
    def from_save(cls, name, tag="last", saves_dir=None, task=None, overrides=None):
        """Rebuild a trainer exactly where the save left it (same weights, moments, RNG, step).

        An override of train.seed branches the run instead: from the save on, its batches (and dropout)
        are drawn afresh from that seed, so runs resumed from one save with different seeds diverge."""
        ck, timeline = _load_with_timeline(name, tag, saves_dir)
        cfg = saved = _saved_config(ck)
        if overrides is not None:
            cfg = overrides(cfg)
        tr = cls(cfg, task=task, saves_dir=saves_dir)
        try:
            tr._restore(ck)
            tr._restore_timeline(timeline, ck.path)
        except checkpoint.SaveError:
            raise
        except KeyError as e:  # a damaged save: report it, never a traceback
            raise checkpoint.SaveError(f"{ck.path}: the save lacks {e}; it is damaged, load another tag "
                                       "or train again") from None
        except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            raise checkpoint.SaveError(f"{ck.path}: {e}; the save is damaged, load another tag "
                                       "or train again") from None
        if cfg.train.seed != saved.train.seed:  # a branch: its batches from the new seed, as a new run's
            tr.rng = np.random.default_rng(cfg.train.seed + 1)
        return tr

    def _restore(self, ck):
        """Weights, optimizer moments, RNG, step and history from a loaded checkpoint."""
        tr = self
        saved_tok = CharTokenizer.from_dict(ck.meta["tokenizer"])
        if saved_tok.chars != tr.task.tokenizer.chars:
            raise checkpoint.SaveError(f"{ck.path}: the save's tokenizer does not match the corpus in use; "
                                       "train with the corpus the run was made with")
        raw = {k[4:]: a for k, a in ck.opt_state.items() if k.startswith("raw/")}
        try:
            tr.model.load_params(raw or ck.params)  # a save with train.ema holds the trained weights apart
        except ValueError as e:
            raise checkpoint.SaveError(f"{ck.path}: {e}") from None
        if tr.ema is not None:  # the average goes on; a save made without one starts it from its weights
            held = ck.opt_state if raw else {}
            tr.ema = np.concatenate([held.get("ema/" + k, ck.params[k]).ravel() for k in tr.model.shapes])
            tr.ema = tr.ema.astype(np.float64)  # (P,)
            tr._averaged_stale = True
        m = np.concatenate([ck.opt_state["m/" + k].ravel() for k in tr.model.shapes])
        v = np.concatenate([ck.opt_state["v/" + k].ravel() for k in tr.model.shapes])
        tr.opt.load_state_dict({"m": m, "v": v, "t": ck.opt_state["t"]})
        meta = ck.meta
        tr.step_count = int(meta.get("step", 0))
        tr.tokens_seen = int(meta.get("tokens_seen", 0))
        tr.elapsed_s = float(meta.get("elapsed_s", 0.0))
        tr.best, tr.best_step = meta.get("best"), meta.get("best_step")
        tr.stale = int(meta.get("stale_evals", 0))
        if tr.best is not None and not isinstance(tr.best, list):
            tr.best = None
        tr.last_eval = meta.get("last_eval")
        if meta.get("rng_state"):
            tr.rng.bit_generator.state = meta["rng_state"]
        for k in tr.history:
            tr.history[k].extend(tuple(p) for p in meta.get("history", {}).get(k, []))

    def _restore_timeline(self, tl, tag_dir):
        """The save's timeline, to append to (a save made before timelines keeps a fresh, empty one)."""
        if tl is None:
            return
        cfg = self.cfg.model
        for s in tl.snapshots[:1]:
            if s.maps.shape[:2] != (cfg.n_layer, cfg.n_head):
                raise checkpoint.SaveError(f"{tag_dir}/timeline.npz: maps of {s.maps.shape[0]} layers x "
                                           f"{s.maps.shape[1]} heads, but the model has {cfg.n_layer} x "
                                           f"{cfg.n_head}; the save is damaged, load another tag")
        if tl.snapshots and tl.snapshots[-1].step > self.step_count:
            raise checkpoint.SaveError(f"{tag_dir}/timeline.json: a snapshot at step {tl.snapshots[-1].step} "
                                       f"but the save is at step {self.step_count}; the save is damaged")
        self.timeline = tl


def _load_with_timeline(name, tag, saves_dir):
    """(checkpoint, its timeline or None). They are two reads: a timeline past the checkpoint's step
    means a save was swapped in between, so both are read again (a few times, then it is an error)."""
    for _ in range(5):
        ck = checkpoint.load_checkpoint(name, tag, saves_dir, shapes_for=shapes_for)
        tl = Timeline.load(ck.path)
        step = ck.meta.get("step")
        if tl is None or not tl.snapshots or not isinstance(step, int) or tl.snapshots[-1].step <= step:
            break
    return ck, tl


def load_model(name, tag="last", saves_dir=None):
    """(model, tokenizer, cfg, meta) from a save, for sampling and chat; needs no corpus."""
    ck = checkpoint.load_checkpoint(name, tag, saves_dir, shapes_for=shapes_for)
    cfg = _saved_config(ck)
    try:
        tok = CharTokenizer.from_dict(ck.meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.SaveError(f"{ck.path}/meta.json: no usable tokenizer ({e}); the save is damaged") from None
    if tok.vocab_size != cfg.model.vocab_size:
        raise checkpoint.SaveError(f"{ck.path}: tokenizer has {tok.vocab_size} symbols but the config says "
                                   f"vocab_size={cfg.model.vocab_size}; the save is inconsistent")
    try:
        model = Transformer(cfg.model, params=ck.params)
    except ValueError as e:
        raise checkpoint.SaveError(f"{ck.path}: {e}") from None
    return model, tok, cfg, ck.meta


def shapes_for(config):
    """The parameter shapes a saved config implies (None if the config itself is unusable)."""
    try:
        return param_shapes(config_from_dict(config).model)
    except (ConfigError, TypeError, ValueError):
        return None


def _saved_config(ck):
    """The Config stored in a checkpoint; an invalid one means the save is damaged (SaveError)."""
    try:
        return config_from_dict(ck.config, where=f"{ck.path}/config.yaml")
    except ConfigError as e:
        raise checkpoint.SaveError(f"{e}; the save is damaged or from another version") from None


def _plain(d):
    """A JSON-safe copy of an event (arrays dropped)."""
    if d is None:
        return None
    return {k: v for k, v in d.items() if not isinstance(v, np.ndarray)}
