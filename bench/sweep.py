"""`python -m bench sweep [TASK] [--trials 8] [--workers 1,2] [--steps 40] [--json]`

Wall time of the same `attnlab sweep` (core/sweep.py, on Optuna; needs the `sweep` extra) run with
each number of local worker processes in turn, in a fresh temporary saves folder and study each time.
Every trial trains --steps steps and is evaluated once at the end. Figures, not pass/fail.
"""

import argparse
import json
import shutil
import sys
import tempfile


def measure(task, trials, workers, steps):
    """{workers, wall_s, trials, states} of one sweep run on `workers` local processes."""
    from core import sweep
    saves = tempfile.mkdtemp(prefix="attnlab-bench-sweep-")
    try:
        sets = (f"train.max_steps={steps}", f"train.eval_interval={steps}", f"train.warmup_steps={max(1, steps // 4)}")
        spec = sweep.Spec(task=task, study=f"bench-{workers}", storage=sweep.default_storage(saves),
                          params=(sweep.parse_param("train.lr=log(1e-3,1e-2)", task, None, sets),), sets=sets,
                          metric=sweep.task_metric(task), trials=trials, workers=workers, saves=saves)
        states = []
        done = sweep.run_sweep(spec, lambda row: states.append(row["state"]))
    finally:
        shutil.rmtree(saves, ignore_errors=True)
    return {"workers": workers, "wall_s": done["wall_s"], "trials": done["trials"],
            "states": {s: states.count(s) for s in sorted(set(states))}}


def main(argv, threads=1):
    ap = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("task", nargs="?", default="qa", choices=("reversal", "qa", "dialogue"))
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to time (default 1,2)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per trial (default 40)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        import optuna  # noqa: F401
    except ImportError:
        sys.exit("bench sweep: needs Optuna; pip install -e '.[sweep]'")
    counts = [int(k) for k in args.workers.split(",") if k.strip()]
    rows = [measure(args.task, args.trials, k, args.steps) for k in counts]
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = round(base / r["wall_s"], 2)
    out = {"task": args.task, "trials": args.trials, "steps": args.steps, "runs": rows}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.task}: {args.trials} trials of {args.steps} steps (+ one evaluation each)")
        for r in rows:
            print(f"  {r['workers']} worker{'s' if r['workers'] != 1 else ' '}  {r['wall_s']:7.1f} s  "
                  f"{r['speedup']:.2f}x  {r['states']}")
    return 0
