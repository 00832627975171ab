"""`attnlab train`: the trainer headless, with a progress bar or JSON events."""

import json
import math
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

from core.checkpoint import Autosave, SaveError, run_dir
from core.metrics_log import MetricsLog
from core.progress import StepRate, fmt_eta
from core.config import TASKS, apply_overrides, load_config
from core.runs import existing_run, lock_run, refuse_existing
from core.text import safe_text
from core.trainer import Trainer, TrainingDiverged
from tui.cli import ctrl_c
from tui.cli.common import UserError, format_eval, jsonable

UNTIL = re.compile(r"^\s*([a-z_]+)\s*(>=|<=)\s*(\S+)\s*$")
# the numbers each task's evaluation reports (what --until can watch)
METRICS = {"reversal": ("accuracy", "val_loss", "antidiagonal_best"),
           "qa": ("answer_exact", "answer_similarity", "train_answer_exact", "val_loss", "val_answer_loss",
                  "train_loss", "train_answer_loss"),
           "dialogue": ("context_recall", "topic_coherence", "val_loss", "val_answer_loss", "train_loss",
                        "train_answer_loss"),
           "chat": ("chat_score", "context_recall", "slot_correct", "ack_exact", "two_fact_recall", "dont_know_ood",
                    "dont_know_false", "dont_know_unstated", "qa_mid_exact", "qa_fresh_exact", "val_loss", "val_answer_loss",
                    "train_loss", "train_answer_loss")}
STOP_MESSAGE = "stopping after this step — Ctrl+C again to skip the final evaluation"


def register(sub):
    t = sub.add_parser("train", help="train a task headless")
    t.add_argument("task", choices=TASKS)
    t.add_argument("--config", help="YAML file of settings (sections model/train/data/sample)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.lr=3e-3")
    t.add_argument("--corpus", action="append", help="training text in Q:/A: format (repeat to join several)")
    t.add_argument("--val", help="validation text in Q:/A: format (else the corpus is split)")
    t.add_argument("--save", metavar="NAME", help="save under saves/NAME (default: task and time)")
    t.add_argument("--overwrite", action="store_true", help="replace the run already saved as --save NAME")
    t.add_argument("--resume", metavar="NAME",
                   help="continue the run saved as NAME (exactly as it would have gone on; with --set train.seed=N "
                        "its batches are drawn afresh from seed N, and --save NEW keeps the branch apart)")
    t.add_argument("--tag", choices=("last", "best"),
                   help="with --resume: continue from this save of the run (default last; best is the one "
                        "left when a run was killed before it could save last)")
    t.add_argument("--steps", type=int, help="train until this step count")
    t.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    t.add_argument("--until", metavar="'METRIC>=VALUE'", help="stop once an evaluation reaches this")
    t.set_defaults(func=cmd_train)


def parse_until(text, task=None):
    """'accuracy>=0.99' -> a predicate on eval events; an unknown metric or a bad number names --until."""
    m = UNTIL.match(text or "")
    if not m:
        raise UserError(f"--until {text!r}: write METRIC>=VALUE or METRIC<=VALUE, e.g. 'accuracy>=0.99'")
    key, op = m.group(1), m.group(2)
    known = METRICS.get(task, sorted({k for ks in METRICS.values() for k in ks}))
    if key not in known:
        raise UserError(f"--until {text!r}: {task or 'this task'} reports no metric {key!r}; "
                        f"use one of {', '.join(known)}")
    try:
        value = float(m.group(3))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(f"--until {text!r}: {m.group(3)!r} is not a number; write e.g. '{key}>=0.99'")

    def reached(ev):
        v = ev.get(key)
        if v is None:
            return False
        return v >= value if op == ">=" else v <= value
    return key, reached


def build_config(args):
    overrides = list(args.set or [])
    if getattr(args, "corpus", None):
        overrides.append(f"data.corpus={os.pathsep.join(str(Path(c).resolve()) for c in args.corpus)}")
    if getattr(args, "val", None):
        overrides.append(f"data.val_corpus={Path(args.val).resolve()}")
    if getattr(args, "steps", None) is not None:
        overrides.append(f"train.max_steps={args.steps}")
    return load_config(args.task, args.config, overrides)


class Progress:
    """A one-line progress bar on stderr, redrawn at most 4 times a second (TTY only)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.last = 0.0
        self.val = {}
        self.rate = StepRate()

    def __call__(self, ev):
        if ev["event"] == "eval":
            self.val = ev
            if not self.enabled:
                print(format_eval(ev), file=sys.stderr, flush=True)
        if not self.enabled or ev["event"] != "step":
            return
        self.rate.add(ev["ms"])
        now = time.monotonic()
        if now - self.last < 0.25 and ev["step"] != ev["max_steps"]:
            return
        self.last = now
        done = ev["step"] / max(ev["max_steps"], 1)
        bar = "#" * int(done * 24)
        eta = self.rate.eta_s(ev["max_steps"] - ev["step"])
        extra = f" val {self.val['val_loss']:.3f}" if self.val else ""
        sys.stderr.write(f"\rstep {ev['step']}/{ev['max_steps']} [{bar:<24}] loss {ev['loss']:.3f}{extra} "
                         f"| {ev['tokens_per_s'] / 1000:.1f}k tok/s | {self.rate.ms_per_step:.0f} ms/step | ETA {fmt_eta(eta)} ")
        sys.stderr.flush()


def check_args(args):
    """Flags a user typed, checked before anything is read or written."""
    for value in (args.save, args.resume):
        if value is not None:
            run_dir(value)  # a bad name is refused before any training, not at the first save
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: train at least one step (e.g. --steps 100)")
    if args.overwrite and not args.save:
        raise UserError("--overwrite needs --save NAME (the run to replace)")
    if args.tag and not args.resume:
        raise UserError(f"--tag {args.tag} picks the save --resume continues from; add --resume NAME")


class Interrupts:
    """SIGINT, SIGTERM and SIGHUP: the first stops after the current step; a second skips the final
    evaluation (the save of `last` always happens)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.signum = None
        self.count = 0
        self.in_final_eval = False

    def __call__(self, signum, frame):
        self.count += 1
        self.signum = self.signum or signum
        if self.count == 1 and not self.in_final_eval:
            try:
                sys.stderr.write(f"\n{STOP_MESSAGE}\n")
                sys.stderr.flush()
            except RuntimeError:  # the signal interrupted a write to stderr (a reentrant call): bypass it
                try:
                    os.write(2, f"\n{STOP_MESSAGE}\n".encode())
                except OSError:
                    pass
            self.trainer.stop()
        elif self.in_final_eval:
            self.in_final_eval = False
            raise KeyboardInterrupt  # only the evaluation is abandoned: it changes no training state
        # otherwise (a save in progress): ignored, `last` is being written

    def install(self):
        sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
        self.previous = {s: signal.signal(s, self) for s in sigs}
        if ctrl_c.take_pending():  # pressed while starting, and swallowed by the code it interrupted
            self(signal.SIGINT, None)

    def restore(self):
        for s, h in self.previous.items():
            signal.signal(s, h)

    @property
    def exit_code(self):
        return 128 + self.signum if self.signum else 0


def cmd_train(args):
    check_args(args)
    until = parse_until(args.until, args.task) if args.until else None
    tag = args.tag or "last"  # the save a resumed run continues from
    if args.resume:
        info = existing_run(args.resume)
        if info is None:
            raise UserError(f"--resume {args.resume}: there is no run saved as {args.resume}; "
                            f"see `attnlab runs`")
        if info.task and info.task != args.task:
            raise UserError(f"--resume {args.resume}: that run trains {info.task}, but the command says "
                            f"{args.task}; write `attnlab train {info.task} --resume {args.resume}`")
        if info.tags and tag not in info.tags:
            others = " or ".join(f"--tag {t}" for t in info.tags)
            why = " (the run was stopped before it could save last, e.g. killed)" if tag == "last" else ""
            raise UserError(f"--resume {args.resume}: the run has no save '{tag}'{why}; it has "
                            f"{', '.join(info.tags)}: continue from it with {others}")
    name = args.save or args.resume or f"{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    fresh_name = name != args.resume
    if fresh_name and not args.overwrite:
        refuse_existing(name)  # nothing locked or touched
    # a new run's settings and corpus are checked before the lock; a resumed run is read under it
    tr = None if args.resume else Trainer(build_config(args))
    lock = lock_run(name)  # a second writer of this run is refused here, at once
    try:
        if fresh_name and not args.overwrite:
            refuse_existing(name)  # another process may have finished a run of that name meanwhile
        if tr is None:
            tr = Trainer.from_save(args.resume, tag, overrides=lambda c: apply_overrides(c, resume_overrides(args)))
        if name in tr.teacher_names():  # checked before --overwrite replaces anything
            raise UserError(f"{'--save' if args.save else '--resume'} {name}: that run is one of train.teachers, "
                            f"and training would save over it; save the taught run under another name (--save NEW)")
        return train_locked(tr, args, name, until, replace=fresh_name and args.overwrite)
    finally:
        lock.release()


def _clear_tags(name):
    """--overwrite: the old run's tags go before the new run saves (under the run lock)."""
    d = run_dir(name)
    for p in d.iterdir():
        if p.name != ".lock":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def train_locked(tr, args, name, until, replace):
    if replace:
        _clear_tags(name)
    out = (lambda ev: print(json.dumps(jsonable(ev)), flush=True)) if args.json else Progress(sys.stderr.isatty())

    log = MetricsLog(name, tr)  # saves/NAME/metrics.jsonl, appended as it trains

    autosave = Autosave()

    def emit(ev, final=False):
        log(ev)
        out(ev)
        if ev["event"] != "eval":
            return
        tags = (["best"] if ev["best"] else []) + (["last"] if not final and autosave.due() else [])
        for tag in tags:
            try:
                tr.save(name, tag)
                if tag == "last":
                    autosave.step = tr.step_count
            except (SaveError, OSError) as e:  # e.g. disk full: warn, keep training (like the dashboard)
                print(f"\nattnlab: warning: could not save {tag}: {safe_text(str(e))}; training goes on",
                      file=sys.stderr, flush=True)

    signals = Interrupts(tr)
    signals.install()
    try:
        try:
            done = tr.run(emit, until=until[1] if until else None)
        except TrainingDiverged as e:
            if e.weights_ok:  # only the gradients overflowed: the weights are the last good ones
                tr.save(name, "last")
            print(f"\nattnlab: error: {e}", file=sys.stderr)
            return 1
        if tr.last_eval is None or tr.last_eval["step"] != tr.step_count:
            try:  # a Ctrl+C can only interrupt what runs while in_final_eval is set, inside this try
                signals.in_final_eval = signals.count < 2
                if signals.in_final_eval:
                    emit(tr.evaluate(track=done["reason"] != "stopped"), final=True)  # `last` follows
                signals.in_final_eval = False
            except KeyboardInterrupt:
                signals.in_final_eval = False
                print("final evaluation skipped", file=sys.stderr, flush=True)
        done["metrics"] = jsonable(tr.last_eval)
        path = tr.save(name, "last") if autosave.step != tr.step_count else run_dir(name) / "last"
        log(done)
    finally:
        signals.restore()
        log.close()
    if args.json:
        print(json.dumps(jsonable(done)), flush=True)
    else:
        metrics = format_eval(tr.last_eval) if tr.last_eval else "no evaluation"
        print(f"\n{done['reason']} after {done['steps']} steps, {done['elapsed_s']:.1f} s; "
              f"{metrics}\nsaved {path} (best: {path.parent / 'best'})", file=sys.stderr)
    return signals.exit_code


def resume_overrides(args):
    """--set and --steps apply to a resumed run too (e.g. a lower lr after a divergence)."""
    if args.corpus or args.val or args.config:
        raise UserError("--resume keeps the run's corpus and config file; use --set to change a setting")
    return list(args.set or []) + ([f"train.max_steps={args.steps}"] if args.steps is not None else [])
