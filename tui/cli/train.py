"""`attnlab train`: the trainer headless, with a progress bar or JSON events."""

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from core.checkpoint import run_dir
from core.metrics_log import MetricsLog
from core.progress import StepRate, fmt_eta
from core.config import TASKS, apply_overrides, load_config
from core.trainer import Trainer, TrainingDiverged
from tui.cli.common import UserError, format_eval, jsonable

UNTIL = re.compile(r"^\s*([a-z_]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


def register(sub):
    t = sub.add_parser("train", help="train a task headless")
    t.add_argument("task", choices=TASKS)
    t.add_argument("--config", help="YAML file of settings (sections model/train/data/sample)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.lr=3e-3")
    t.add_argument("--corpus", action="append", help="training text in Q:/A: format (repeat to join several)")
    t.add_argument("--val", help="validation text in Q:/A: format (else the corpus is split)")
    t.add_argument("--save", metavar="NAME", help="save under saves/NAME (default: task and time)")
    t.add_argument("--resume", metavar="NAME", help="continue the run saved as NAME")
    t.add_argument("--steps", type=int, help="train until this step count")
    t.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    t.add_argument("--until", metavar="'METRIC>=VALUE'", help="stop once an evaluation reaches this")
    t.set_defaults(func=cmd_train)


def parse_until(text):
    """'accuracy>=0.99' -> a predicate on eval events."""
    m = UNTIL.match(text or "")
    if not m:
        raise UserError(f"--until {text!r}: write METRIC>=VALUE or METRIC<=VALUE, e.g. 'accuracy>=0.99'")
    key, op, value = m.group(1), m.group(2), float(m.group(3))

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
    if getattr(args, "steps", None):
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


def cmd_train(args):
    for value in (args.save, args.resume):
        if value is not None:
            run_dir(value)  # a bad name is refused before any training, not at the first save
    until = parse_until(args.until) if args.until else None
    if args.resume:
        tr = Trainer.from_save(args.resume, overrides=lambda c: apply_overrides(c, resume_overrides(args)))
    else:
        tr = Trainer(build_config(args))
    name = args.save or args.resume or f"{tr.cfg.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = (lambda ev: print(json.dumps(jsonable(ev)), flush=True)) if args.json else Progress(sys.stderr.isatty())

    log = MetricsLog(name, tr)  # saves/NAME/metrics.jsonl, appended as it trains

    def emit(ev):
        log(ev)
        out(ev)
        if ev["event"] == "eval" and ev["best"]:
            tr.save(name, "best")

    prev = signal.signal(signal.SIGINT, lambda *_: tr.stop())  # first Ctrl+C: finish the step, save, exit
    try:
        done = tr.run(emit, until=until[1] if until else None)
    except TrainingDiverged as e:
        if e.weights_ok:  # only the gradients overflowed: the weights are the last good ones
            tr.save(name, "last")
        log.close()
        print(f"\nattnlab: error: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, prev)
    if tr.last_eval is None or tr.last_eval["step"] != tr.step_count:
        ev = tr.evaluate()
        emit(ev)
    done["metrics"] = jsonable(tr.last_eval)
    path = tr.save(name, "last")
    log(done)
    log.close()
    if args.json:
        print(json.dumps(jsonable(done)), flush=True)
    else:
        print(f"\n{done['reason']} after {done['steps']} steps, {done['elapsed_s']:.1f} s; "
              f"{format_eval(tr.last_eval)}\nsaved {path} (best: {path.parent / 'best'})", file=sys.stderr)
    return 0


def resume_overrides(args):
    """--set and --steps apply to a resumed run too (e.g. a lower lr after a divergence)."""
    if args.corpus or args.val or args.config:
        raise UserError("--resume keeps the run's corpus and config file; use --set to change a setting")
    return list(args.set or []) + ([f"train.max_steps={args.steps}"] if args.steps else [])
