"""`attnlab serve`, `attnlab sweep` and `attnlab export`: beyond one terminal and one machine.

Each needs an optional extra (web, sweep, export); without it the command says which to install.
"""

import importlib.util
import json
import os
import sys

from core.config import TASKS
from core.text import safe_text
from tui.cli.common import UserError, jsonable

EXTRAS = {"textual_serve": "web", "optuna": "sweep", "safetensors": "export"}


def register(sub):
    s = sub.add_parser("serve", help="serve the dashboard to web browsers (extra: web)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-sessions", type=int, default=2, metavar="N",
                   help="browser tabs served at once, each its own app process (default 2)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("sweep", help="hyperparameter sweep on Optuna (extra: sweep)")
    w.add_argument("task", nargs="?", choices=TASKS)
    w.add_argument("--trials", type=int, default=10, help="trials this command adds to the study (default 10)")
    w.add_argument("--param", action="append", default=[], metavar="KEY=SPACE",
                   help="a searched setting: train.lr=log(1e-4,1e-2), model.n_layer=int(1,4), model.pos=cat(learned,rope)")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a fixed override for every trial")
    w.add_argument("--config", help="YAML file of settings every trial starts from")
    w.add_argument("--metric", choices=("val_loss", "accuracy", "answer_exact", "context_recall"),
                   help="what to optimise (default: the task's own metric)")
    w.add_argument("--prune", action="store_true", help="stop trials whose evaluations trail the median")
    w.add_argument("--storage", help="Optuna storage URL (default: sqlite file saves/sweeps.db)")
    w.add_argument("--study", help="study name (default TASK-sweep); trials save as STUDY-trial-K")
    w.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes (default: cores)")
    w.add_argument("--json", action="store_true", help="one JSON object per finished trial, then a summary")
    w.add_argument("--show", metavar="STUDY", help="print a study's best trials and parameter importances")
    w.set_defaults(func=cmd_sweep)

    e = sub.add_parser("export", help="write a save's weights as safetensors or npz")
    e.add_argument("name")
    e.add_argument("--tag", default="best", help="best or last (default best)")
    e.add_argument("--format", default="safetensors", choices=("safetensors", "npz"))
    e.add_argument("--out", help="file to write (default NAME-TAG.FORMAT here)")
    e.set_defaults(func=cmd_export)


def need(module):
    if importlib.util.find_spec(module) is None:
        raise UserError(f"this command needs {module}: pip install 'attnlab[{EXTRAS[module]}]' "
                        f"(or pip install -e '.[{EXTRAS[module]}]' in a checkout)")


def cmd_serve(args):
    need("textual_serve")
    from core.runs import saves_root
    from tui.serve import is_loopback, make_server
    if args.max_sessions < 1:
        raise UserError(f"--max-sessions {args.max_sessions}: serve at least one session")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: pick a port between 1 and 65535")
    saves = saves_root().resolve()
    os.environ["ATTNLAB_SAVES"] = str(saves)  # every tab's process trains in this one folder
    if not is_loopback(args.host):
        print(f"attnlab: warning: --host {safe_text(args.host)} is reachable from other machines: anyone who "
              f"can reach port {args.port} can train models and delete saves in {saves}; serve on "
              f"127.0.0.1 (the default) unless the network is trusted", file=sys.stderr, flush=True)
    make_server(args.host, args.port, args.max_sessions).serve()
    return 0


def cmd_sweep(args):
    need("optuna")
    from core import sweep
    storage = args.storage or sweep.default_storage()
    if args.show:
        study = sweep.load_existing(sweep.check_study_name(args.show), storage)
        report = sweep.summary(study)
        print(json.dumps(jsonable(report)) if args.json else format_summary(report))
        return 0
    spec = make_spec(args, storage, sweep)
    out = (lambda row: print(json.dumps(jsonable(row)), flush=True)) if args.json else print_row(spec.metric)
    if not args.json:
        print(f"sweep {spec.study}: {spec.trials} trials of {spec.task} on {spec.workers} worker "
              f"process{'es' if spec.workers != 1 else ''}, by {spec.metric}; storage {storage}", file=sys.stderr)
    done = sweep.run_sweep(spec, out)
    if args.json:
        print(json.dumps(jsonable(done)), flush=True)
    else:
        best = done["best"]
        head = "interrupted: " if done["interrupted"] else ""
        tail = (f"best so far: trial {best['number']}, {spec.metric} {best['value']:.4f} (save {best['save']})"
                if best else "no trial has finished yet")
        print(f"{head}{done['trials']} trials in {done['wall_s']:.1f} s; {tail}\n"
              f"attnlab sweep --show {spec.study} ranks them and the parameters' importances", file=sys.stderr)
    return 130 if done["interrupted"] else 0


def make_spec(args, storage, sweep):
    from core.config import load_config
    from core.runs import saves_root
    if args.task is None:
        raise UserError("name a task to sweep (reversal, qa, dialogue), or --show STUDY to look at one")
    if args.trials < 1 or args.workers < 1:
        raise UserError("--trials and --workers must be at least 1")
    load_config(args.task, args.config, args.set)  # a bad --set or --config fails here, before any worker
    metric = args.metric or sweep.task_metric(args.task)
    if metric not in ("val_loss", sweep.task_metric(args.task)):
        raise UserError(f"--metric {metric}: {args.task} reports {sweep.task_metric(args.task)} and val_loss")
    params = tuple(sweep.parse_param(p, args.task, args.config, tuple(args.set)) for p in args.param)
    keys = [p.key for p in params]
    if len(set(keys)) != len(keys):
        raise UserError(f"--param names one setting twice: {', '.join(sorted({k for k in keys if keys.count(k) > 1}))}")
    study = sweep.check_study_name(args.study or f"{args.task}-sweep")
    return sweep.Spec(task=args.task, study=study, storage=storage, params=params, sets=tuple(args.set),
                      config=os.path.abspath(args.config) if args.config else None, metric=metric,
                      prune=args.prune, trials=args.trials, workers=min(args.workers, args.trials),
                      saves=str(saves_root().resolve()))


def print_row(metric):
    def show(row):
        params = "  ".join(f"{k}={_num(v)}" for k, v in row["params"].items())
        if row["state"] == "complete":
            what = f"{metric} {row['value']:.4f}"
        elif row["state"] == "pruned":
            what = f"pruned at step {row['steps']}"
        else:
            what = f"failed: {safe_text(row['reason'] or '?')}"
        print(f"trial {row['number']:>3}  {what}  {params}  -> {row['save']}", flush=True)
    return show


def _num(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_summary(r):
    counts = ", ".join(f"{n} {state}" for state, n in sorted(r["counts"].items())) or "no trials"
    lines = [f"study {r['study']}: {r['task']} by {r['metric']} ({r['direction']}); {counts}"]
    if r["best"]:
        lines.append("best trials:")
        for t in r["best"]:
            params = "  ".join(f"{k}={_num(v)}" for k, v in t["params"].items())
            lines.append(f"  trial {t['number']:>3}  {r['metric']} {t['value']:.4f}  {params}  save {t['save']}")
    if r["importances"]:
        lines.append("parameter importances (Optuna's default evaluator; they sum to 1):")
        lines += [f"  {k:<24} {v:.3f}" for k, v in r["importances"].items()]
    elif r["importances_note"]:
        lines.append(f"parameter importances: {r['importances_note']}")
    for t in r["failed"]:
        lines.append(f"  trial {t['number']:>3} failed: {safe_text(t['reason'] or '?')}")
    return "\n".join(lines)


def cmd_export(args):
    if args.format == "safetensors":
        need("safetensors")
    from core.export import export_weights
    path = export_weights(args.name, args.tag, args.format, args.out)
    print(f"wrote {path} ({args.format}, from {args.name}/{args.tag})")
    return 0
