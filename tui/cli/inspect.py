"""`attnlab eval` and `attnlab runs`: look at saves without training."""

import json
import time

from core.checkpoint import list_runs
from core.text import safe_text
from core.trainer import Trainer
from tui.cli.common import format_eval, jsonable


def register(sub):
    e = sub.add_parser("eval", help="print a save's metrics")
    e.add_argument("name")
    e.add_argument("--tag", default="best", help="best or last (default best)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)
    sub.add_parser("runs", help="list saves").set_defaults(func=cmd_runs)


def cmd_eval(args):
    tr = Trainer.from_save(args.name, tag=args.tag)
    ev = tr.evaluate(full=True)
    print(json.dumps(jsonable(ev)) if args.json else format_eval(ev))
    return 0


def cmd_runs(args):
    runs = list_runs()
    if not runs:
        print("no saves yet; train with `attnlab train reversal --save NAME`")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created)) if r.created else "—" * 16
        best = r.best_metric[0] if isinstance(r.best_metric, list) and r.best_metric else r.best_metric
        best = f"{best:.4f}" if isinstance(best, float) else "—"
        state = f"error: {r.error}" if r.error else f"{r.task or '?':9} step {r.step or 0:>6}  best {best}"
        print(safe_text(f"{r.name:24} {when}  {state}"))  # every byte from a save goes through one sanitiser
    return 0
