"""The `attnlab` command: no arguments opens the dashboard; subcommands train, eval, sample and chat headless.

Every user mistake ends in one `attnlab: error: ...` line and exit status 2, never a traceback.
"""

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

# one BLAS thread unless the user asked otherwise (measured faster on a shared 2-core machine)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, os.environ.get("ATTNLAB_THREADS", "1"))

from core.checkpoint import SaveError, list_runs, run_dir  # noqa: E402
from core.config import TASKS, ConfigError, apply_overrides, load_config  # noqa: E402
from core.tasks.corpus import CorpusError  # noqa: E402
from core.tasks.lm import PromptTooLong, build_prompt  # noqa: E402
from core.text import safe_text  # noqa: E402
from core.tokenizer import TokenizerError  # noqa: E402
from core.trainer import Trainer, TrainingDiverged, load_model  # noqa: E402

USER_ERRORS = (ConfigError, CorpusError, SaveError, TokenizerError, PromptTooLong, ValueError, OSError)
UNTIL = re.compile(r"^\s*([a-z_]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


class UserError(Exception):
    pass


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

    def __call__(self, ev):
        if ev["event"] == "eval":
            self.val = ev
            if not self.enabled:
                print(format_eval(ev), file=sys.stderr, flush=True)
        if not self.enabled or ev["event"] != "step":
            return
        now = time.monotonic()
        if now - self.last < 0.25 and ev["step"] != ev["max_steps"]:
            return
        self.last = now
        done = ev["step"] / max(ev["max_steps"], 1)
        bar = "#" * int(done * 24)
        eta = ev["elapsed_s"] / max(ev["step"], 1) * (ev["max_steps"] - ev["step"])
        extra = f" val {self.val['val_loss']:.3f}" if self.val else ""
        sys.stderr.write(f"\rstep {ev['step']}/{ev['max_steps']} [{bar:<24}] loss {ev['loss']:.3f}{extra} "
                         f"| {ev['tokens_per_s'] / 1000:.1f}k tok/s | ETA {int(eta) // 60:02d}:{int(eta) % 60:02d} ")
        sys.stderr.flush()


def format_eval(ev):
    keys = [k for k in ("accuracy", "answer_exact", "context_recall", "topic_coherence", "val_loss",
                        "train_loss", "antidiagonal_best") if ev.get(k) is not None]
    return f"eval @ step {ev['step']}: " + ", ".join(f"{k} {ev[k]:.4f}" for k in keys)


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
    out = (lambda ev: print(json.dumps(_jsonable(ev)), flush=True)) if args.json else Progress(sys.stderr.isatty())

    def emit(ev):
        out(ev)
        if ev["event"] == "eval" and ev["best"]:
            tr.save(name, "best")

    prev = signal.signal(signal.SIGINT, lambda *_: tr.stop())  # first Ctrl+C: finish the step, save, exit
    try:
        done = tr.run(emit, until=until[1] if until else None)
    except TrainingDiverged as e:
        if e.weights_ok:  # only the gradients overflowed: the weights are the last good ones
            tr.save(name, "last")
        print(f"\nattnlab: error: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, prev)
    if tr.last_eval is None or tr.last_eval["step"] != tr.step_count:
        ev = tr.evaluate()
        emit(ev)
    done["metrics"] = _jsonable(tr.last_eval)
    path = tr.save(name, "last")
    if args.json:
        print(json.dumps(_jsonable(done)), flush=True)
    else:
        print(f"\n{done['reason']} after {done['steps']} steps, {done['elapsed_s']:.1f} s; "
              f"{format_eval(tr.last_eval)}\nsaved {path} (best: {path.parent / 'best'})", file=sys.stderr)
    return 0


def resume_overrides(args):
    """--set and --steps apply to a resumed run too (e.g. a lower lr after a divergence)."""
    if args.corpus or args.val or args.config:
        raise UserError("--resume keeps the run's corpus and config file; use --set to change a setting")
    return list(args.set or []) + ([f"train.max_steps={args.steps}"] if args.steps else [])


def cmd_eval(args):
    tr = Trainer.from_save(args.name, tag=args.tag)
    ev = tr.evaluate(full=True)
    print(json.dumps(_jsonable(ev)) if args.json else format_eval(ev))
    return 0


def sampling(args, cfg):
    s = cfg.sample
    return dict(temperature=s.temperature if args.temperature is None else args.temperature,
                top_k=s.top_k if args.top_k is None else args.top_k,
                top_p=s.top_p if args.top_p is None else args.top_p,
                max_new_tokens=s.max_new_tokens if args.max_new is None else args.max_new,
                seed=s.seed if args.seed is None else args.seed)


def cmd_sample(args):
    from core.sample import stream_text
    model, tok, cfg, _ = load_model(args.name, args.tag)
    for ch in stream_text(model, tok, args.prompt, stop=(), **sampling(args, cfg)):
        sys.stdout.write(safe_text(ch))
        sys.stdout.flush()
    print()
    return 0


def cmd_chat(args):
    from core.sample import stream_text
    model, tok, cfg, _ = load_model(args.name, args.tag)
    opts = sampling(args, cfg)
    history = []
    print("attnlab chat: type a message; /reset starts over, /quit (or Ctrl+D) leaves.")
    while True:
        try:
            msg = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if msg in ("/quit", "/exit"):
            return 0
        if msg == "/reset":
            history = []
            continue
        if not msg:
            continue
        unseen = tok.unknown_chars(msg)
        if unseen:
            print(f"(the model has never seen {', '.join(safe_text(c) for c in unseen)}; they were left out)")
            msg = "".join(c for c in msg if c not in unseen)
        try:
            prompt = build_prompt(history, msg, cfg.model.block_size)
        except PromptTooLong as e:
            print(f"(not sent: {e})")
            continue
        sys.stdout.write("bot> ")
        reply = ""
        try:
            for ch in stream_text(model, tok, prompt, stop=("\n",), **opts):
                reply += ch
                sys.stdout.write(safe_text(ch))
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        print()
        history.append((msg, reply.strip()))


def cmd_runs(args):
    runs = list_runs()
    if not runs:
        print("no saves yet; train with `attnlab train reversal --save NAME`")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        best = r.best_metric[0] if isinstance(r.best_metric, list) and r.best_metric else r.best_metric
        best = f"{best:.4f}" if isinstance(best, float) else "—"
        state = f"error: {r.error}" if r.error else f"{r.task or '?':9} step {r.step or 0:>6}  best {best}"
        print(f"{safe_text(r.name):24} {when}  {state}")
    return 0


def cmd_bench(args):
    from bench.__main__ import main as bench_main
    return bench_main(args.rest)


def make_parser():
    p = argparse.ArgumentParser(prog="attnlab", description="Train a numpy transformer and watch it learn. "
                                "Without a command, opens the dashboard.")
    sub = p.add_subparsers(dest="command")
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
    e = sub.add_parser("eval", help="print a save's metrics")
    e.add_argument("name")
    e.add_argument("--tag", default="best", help="best or last (default best)")
    e.add_argument("--json", action="store_true")
    for name, helptext in (("sample", "stream a sample from a save"), ("chat", "chat with a save in this terminal")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("name")
        s.add_argument("--tag", default="best")
        if name == "sample":
            s.add_argument("--prompt", required=True)
        s.add_argument("--temperature", type=float)
        s.add_argument("--top-k", type=int)
        s.add_argument("--top-p", type=float)
        s.add_argument("--max-new", type=int)
        s.add_argument("--seed", type=int)
    sub.add_parser("runs", help="list saves")
    b = sub.add_parser("bench", help="run benchmarks (python -m bench)")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return p


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "chat": cmd_chat, "runs": cmd_runs,
            "bench": cmd_bench}


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.command is None:
        from tui.app import run_app
        return run_app()
    try:
        return COMMANDS[args.command](args) or 0
    except (UserError, *USER_ERRORS) as e:
        print(f"attnlab: error: {safe_text(str(e))}", file=sys.stderr)
        return 2


def _jsonable(obj):
    import numpy as np
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


if __name__ == "__main__":
    sys.exit(main())
