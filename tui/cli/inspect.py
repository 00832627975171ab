"""`attnlab eval` and `attnlab runs`: look at saves without training."""

import json
import time

from core.checkpoint import list_runs
from core.config import apply_overrides
from core.metrics_log import log_path
from core.text import safe_text
from core.trainer import Trainer
from tui.cli.common import UserError, format_eval, jsonable
from tui.cli.generate import UNSURE_HELP, UNSURE_REPLY_HELP, check_unsure
from tui.cli.mix import add_with, mixed


def register(sub):
    e = sub.add_parser("eval", help="print a save's metrics")
    e.add_argument("name")
    e.add_argument("--tag", default="best", help="best or last (default best)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--unsure-below", type=float, metavar="P", help=UNSURE_HELP)
    e.add_argument("--unsure-reply-below", type=float, metavar="P", help=UNSURE_REPLY_HELP)
    e.add_argument("--history", action="store_true",
                   help="Q&A: held-out exact-match after 0, 4 and 8 earlier chat turns (as chat sends them, "
                        "and with the turns in the prompt)")
    add_with(e)
    e.set_defaults(func=cmd_eval)
    r = sub.add_parser("runs", help="list saves")
    r.add_argument("--json", action="store_true", help="one JSON list of runs (name, task, step, best, tags, ...)")
    r.set_defaults(func=cmd_runs)


def cmd_eval(args):
    check_unsure(args.unsure_below)
    check_unsure(args.unsure_reply_below, "--unsure-reply-below")
    given = {k: v for k, v in (("sample.unsure_below", args.unsure_below),
                               ("sample.unsure_reply_below", args.unsure_reply_below)) if v is not None}
    over = (lambda c: apply_overrides(c, given)) if given else None
    tr = Trainer.from_save(args.name, tag=args.tag, overrides=over)
    model, labels = mixed(tr.averaged(), tr.task.tokenizer, tr.cfg, f"{args.name}:{args.tag}", args.mix, args.tag)
    if args.history:
        return eval_history(tr, model, args.json)
    ev = tr.evaluate(full=True, model=model if args.mix else None)
    if args.mix:  # every figure is the saves' together
        ev["mixed"] = labels
    below, anywhere = tr.cfg.sample.unsure_below, tr.cfg.sample.unsure_reply_below
    if below > 0:  # the figures count its don't-know answers: say so, and how to see them without
        ev["unsure_below"] = below
    if anywhere > 0:
        ev["unsure_reply_below"] = anywhere
    print(json.dumps(jsonable(ev)) if args.json else format_eval(ev))
    if below > 0 and not args.json:
        print(f"a question the model began at under {below:.0%} was answered \"I don't know that yet.\" "
              f"(sample.unsure_below; --unsure-below 0 scores without)")
    if args.mix and not args.json:
        print(f"answered by {len(labels)} saves together ({', '.join(labels)}): each next character's "
              f"probability the mean of theirs")
    if anywhere > 0 and not args.json:
        print(f"a question whose reply the model was anywhere under {anywhere:.0%} sure of was answered "
              f"\"I don't know that yet.\" (sample.unsure_reply_below; --unsure-reply-below 0 scores without)")
    return 0


def cmd_runs(args):
    runs = list_runs()
    if getattr(args, "json", False):
        print(json.dumps([run_json(r) for r in runs]))
        return 0
    if not runs:
        print("no saves yet; train with `attnlab train reversal --save NAME`")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)) if r.created else "—" * 16
        best = r.best_metric[0] if isinstance(r.best_metric, list) and r.best_metric else r.best_metric
        best = f"{best:.4f}" if isinstance(best, float) else "—"
        state = f"error: {r.error}" if r.error else f"{r.task or '?':9} step {r.step or 0:>6}  best {best}"
        print(safe_text(f"{r.name:24} {when}  {state}"))  # every byte from a save goes through one sanitiser
    return 0


def eval_history(tr, model, as_json):
    """Exact-match on held-out questions after earlier turns, for each way of building the prompt."""
    if not hasattr(tr.task, "history_exact"):
        raise UserError(f"--history measures Q&A chat; this is a {tr.cfg.task} save")
    out = {}
    for how in ("chat", "joined", "separated"):
        out[how] = tr.task.history_exact(model, how=how)
        if not as_json:
            shown = ", ".join(f"{k} turns {v * 100:.1f}%" for k, v in out[how].items())
            print(f"answer exact-match, prompt {how:9}: {shown}", flush=True)
    if as_json:
        print(json.dumps({how: {str(k): v for k, v in r.items()} for how, r in out.items()}))
    return 0


def run_json(r):
    """A RunInfo as plain JSON, with where its metrics history is (if it has one)."""
    log = log_path(r.name)
    return jsonable({"name": r.name, "task": r.task, "step": r.step, "best_metric": r.best_metric,
                     "created": r.created, "tags": list(r.tags or []), "error": r.error,
                     "metrics_jsonl": str(log) if log.is_file() else None})

