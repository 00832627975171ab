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
from core.config import ConfigError, config_from_dict, config_to_dict
from core.model import Transformer, flat_views
from core.optim import AdamW, clip_grad_norm, lr_at
from core.tasks import make_task
from core.tokenizer import CharTokenizer

HISTORY = 5000  # points kept per history series (older ones are thinned, never unbounded)


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
    def __init__(self, cfg, task=None, model=None):
        self.task = task if task is not None else make_task(cfg)
        model_cfg = dataclasses.replace(cfg.model, vocab_size=self.task.tokenizer.vocab_size,
                                        causal=self.task.causal)
        self.cfg = dataclasses.replace(cfg, model=model_cfg)
        seed = self.cfg.train.seed
        self.model = model if model is not None else Transformer(model_cfg, rng=np.random.default_rng(seed))
        t = self.cfg.train
        self.opt = AdamW(self.model, t.beta1, t.beta2, weight_decay=t.weight_decay)
        self.rng = np.random.default_rng(seed + 1)  # batches and dropout
        self.step_count = 0
        self.tokens_seen = 0
        self.elapsed_s = 0.0  # training time, carried across saves
        self.history = {"train": deque(maxlen=HISTORY), "val": deque(maxlen=HISTORY)}
        self.best = None  # best value of the task's metric (or val loss)
        self.best_step = None
        self.last_eval = None
        self.broken = None  # why the weights are unusable (they give a non-finite loss), else None
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
        return lr_at(self.step_count, t.lr, t.min_lr, t.warmup_steps, t.max_steps)

    def step(self):
        """One optimizer step; raises TrainingDiverged (weights untouched) on NaN/inf."""
        t0 = time.perf_counter()
        t = self.cfg.train
        lr = self.lr()
        x, y, mask = self.task.batch("train", t.batch_size, self.rng)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below, with a message
            _, loss = self.model.forward(x, y, mask, train=True, rng=self.rng)
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
        ms = (time.perf_counter() - t0) * 1000
        self.elapsed_s += ms / 1000
        n_tok = int(x.size)
        self.tokens_seen += n_tok
        self.history["train"].append((self.step_count, round(self.elapsed_s, 4), float(loss)))
        return {"event": "step", "step": self.step_count, "loss": float(loss), "lr": lr, "grad_norm": norm,
                "tokens": n_tok, "ms": ms, "tokens_per_s": n_tok / max(ms / 1000, 1e-9),
                "elapsed_s": self.elapsed_s, "max_steps": t.max_steps, "epoch": self.epoch()}

    def metric_value(self, metrics):
        """What 'best' is judged by: the task metric (higher is better), ties broken by lower val loss."""
        v = metrics.get(self.task.metric)
        return [v if v is not None else 0.0, -metrics["val_loss"]]

    def evaluate(self, full=False):
        """Task metrics on held-out data; marks whether this is the best evaluation so far."""
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are reported below
            metrics = self.task.evaluate(self.model, np.random.default_rng(0), full=full)
        if not math.isfinite(metrics["val_loss"]):  # broken weights must never become "best"
            self.broken = (f"training diverged by step {self.step_count}: the validation loss is "
                           f"{metrics['val_loss']}; the learning rate ({self.lr():.3g}) is likely too "
                           f"high — lower train.lr or raise train.warmup_steps")
            raise TrainingDiverged(self.broken, weights_ok=False)
        score = self.metric_value(metrics)
        improved = self.best is None or score > self.best
        if improved:
            self.best, self.best_step = score, self.step_count
        self.history["val"].append((self.step_count, round(self.elapsed_s, 4), float(metrics["val_loss"])))
        self.last_eval = {"event": "eval", "step": self.step_count, "best": improved, "metric": self.task.metric,
                          "eval_ms": (time.perf_counter() - t0) * 1000, **metrics}
        return self.last_eval

    def attention_probe(self, text=None):
        """Attention maps (n_layer, nh, T, T) of the model on the task's probe input (or `text`)."""
        ids, labels = self.task.probe(text)
        self.model.forward(ids)
        return {"event": "attention", "step": self.step_count, "labels": labels,
                "maps": self.model.attention_maps()[:, 0].copy()}

    def run(self, emit, max_steps=None, until=None, attention_every=None):
        """Train until max_steps, stop(), until(metrics) is true, or early stopping; returns the done event.

        emit(event) receives every step, eval and attention event. Pausing blocks between steps.
        """
        t = self.cfg.train
        max_steps = t.max_steps if max_steps is None else max_steps
        started = time.perf_counter()
        stale = 0
        reason = "max_steps"
        while self.step_count < max_steps:
            if not self._run.is_set():
                emit({"event": "paused", "step": self.step_count})
                self._run.wait()
            if self._stop.is_set():
                reason = "stopped"
                break
            emit(self.step())
            if attention_every and self.step_count % attention_every == 0:
                emit(self.attention_probe())
            if self.step_count % t.eval_interval == 0 or self.step_count == max_steps:
                ev = self.evaluate()
                emit(ev)
                stale = 0 if ev["best"] else stale + 1
                if until is not None and until(ev):
                    reason = "target reached"
                    break
                if t.patience and stale >= t.patience:
                    reason = "early stop (no improvement)"
                    break
            if t.max_seconds and time.perf_counter() - started >= t.max_seconds:
                reason = "time limit"
                break
        return {"event": "done", "reason": reason, "steps": self.step_count,
                "elapsed_s": time.perf_counter() - started, "metrics": self.last_eval or {}}

    # -- saves
    def state_meta(self):
        return {"format_version": checkpoint.FORMAT_VERSION, "task": self.cfg.task, "step": self.step_count,
                "tokens_seen": self.tokens_seen, "elapsed_s": self.elapsed_s,
                "tokenizer": self.task.tokenizer.to_dict(), "rng_state": self.rng.bit_generator.state,
                "best": self.best, "best_step": self.best_step, "metric": self.task.metric,
                "last_eval": _plain(self.last_eval), "created": time.time(),
                "history": {k: list(v) for k, v in self.history.items()}}

    def save(self, name, tag="last", saves_dir=None):
        """Write model, optimizer and training state atomically to saves/NAME/<tag>/."""
        if self.broken:
            raise checkpoint.SaveError(f"not saved: {self.broken}; the previous save is kept")
        opt = {"t": np.array(self.opt.t, dtype=np.int64)}
        m_views = flat_views(self.opt.m, self.model.shapes)
        v_views = flat_views(self.opt.v, self.model.shapes)
        for k in self.model.shapes:
            opt["m/" + k], opt["v/" + k] = m_views[k], v_views[k]
        return checkpoint.save_checkpoint(name, tag, self.model.params, opt, self.state_meta(),
                                          config_to_dict(self.cfg), saves_dir)

    @classmethod
    def from_save(cls, name, tag="last", saves_dir=None, task=None, overrides=None):
        """Rebuild a trainer exactly where the save left it (same weights, moments, RNG, step)."""
        ck = checkpoint.load_checkpoint(name, tag, saves_dir)
        cfg = _saved_config(ck)
        if overrides is not None:
            cfg = overrides(cfg)
        tr = cls(cfg, task=task)
        try:
            tr._restore(ck)
        except checkpoint.SaveError:
            raise
        except KeyError as e:  # a damaged save: report it, never a traceback
            raise checkpoint.SaveError(f"{ck.path}: the save lacks {e}; it is damaged, load another tag "
                                       "or train again") from None
        except (TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            raise checkpoint.SaveError(f"{ck.path}: {e}; the save is damaged, load another tag "
                                       "or train again") from None
        return tr

    def _restore(self, ck):
        """Weights, optimizer moments, RNG, step and history from a loaded checkpoint."""
        tr = self
        saved_tok = CharTokenizer.from_dict(ck.meta["tokenizer"])
        if saved_tok.chars != tr.task.tokenizer.chars:
            raise checkpoint.SaveError(f"{ck.path}: the save's tokenizer does not match the corpus in use; "
                                       "train with the corpus the run was made with")
        try:
            tr.model.load_params(ck.params)
        except ValueError as e:
            raise checkpoint.SaveError(f"{ck.path}: {e}") from None
        m = np.concatenate([ck.opt_state["m/" + k].ravel() for k in tr.model.shapes])
        v = np.concatenate([ck.opt_state["v/" + k].ravel() for k in tr.model.shapes])
        tr.opt.load_state_dict({"m": m, "v": v, "t": ck.opt_state["t"]})
        meta = ck.meta
        tr.step_count = int(meta.get("step", 0))
        tr.tokens_seen = int(meta.get("tokens_seen", 0))
        tr.elapsed_s = float(meta.get("elapsed_s", 0.0))
        tr.best, tr.best_step = meta.get("best"), meta.get("best_step")
        if tr.best is not None and not isinstance(tr.best, list):
            tr.best = None
        tr.last_eval = meta.get("last_eval")
        if meta.get("rng_state"):
            tr.rng.bit_generator.state = meta["rng_state"]
        for k in tr.history:
            tr.history[k].extend(tuple(p) for p in meta.get("history", {}).get(k, []))


def load_model(name, tag="last", saves_dir=None):
    """(model, tokenizer, cfg, meta) from a save, for sampling and chat; needs no corpus."""
    ck = checkpoint.load_checkpoint(name, tag, saves_dir)
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
