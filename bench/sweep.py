"""`python -m bench sweep TASK --variant 'NAME k=v ...' ... [--budget-s S | --steps N] [--jobs J]`

Trains one task under several sets of `--set` overrides at once, one process (and one BLAS thread)
per variant, then evaluates each run's best save in full and prints one table (or, with --json, one
JSON object). Meant for machines with many cores, where a dozen variants cost the time of one.

With --budget-s, every variant first trains a few steps together with the others (the machine as
loaded as it will be), and the step count is then chosen so that the slowest finishes in about that
many seconds of training; the cosine schedule still runs to its end.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALIBRATION_STEPS = 30


def _train_cmd(task, sets, save, steps, extra=()):
    cmd = [sys.executable, "-c", "from tui.cli import main; raise SystemExit(main())", "train", task,
           "--json", "--save", save, "--steps", str(steps)]
    for s in sets:
        cmd += ["--set", s]
    return cmd + list(extra)


def _run_all(cmds, jobs, env, logs):
    """Run the commands, at most `jobs` at a time; returns {index: (returncode, seconds)}."""
    pending, running, done = list(enumerate(cmds)), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            i, cmd = pending.pop(0)
            log = open(logs[i], "w")
            running[i] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time(), log)
        for i, (proc, t0, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                done[i] = (proc.returncode, time.time() - t0)
                del running[i]
        time.sleep(0.2)
    return done


def _last_json(path, event):
    rows = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("event") == event:
                rows.append(row)
    return rows[-1] if rows else None


def main(argv, threads=1):
    ap = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("task")
    ap.add_argument("--variant", action="append", required=True,
                    help="'NAME key=value ...': one run with these --set overrides (repeatable)")
    ap.add_argument("--common", default="", help="overrides every variant shares, 'key=value ...'")
    ap.add_argument("--budget-s", type=float, default=0.0, help="seconds of training for the slowest variant")
    ap.add_argument("--steps", type=int, default=0, help="a fixed step count instead of --budget-s")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--saves", default="", help="where the runs are saved (default: a temporary folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if bool(args.budget_s) == bool(args.steps):
        ap.error("give exactly one of --budget-s and --steps")
    variants = []
    for v in args.variant:
        name, *sets = shlex.split(v)
        variants.append((name, shlex.split(args.common) + sets))
    saves = Path(args.saves or tempfile.mkdtemp(prefix="attnlab-sweep-"))
    saves.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ATTNLAB_SAVES=str(saves), ATTNLAB_THREADS=str(threads),
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    logs = {i: saves / f"{name}.log" for i, (name, _) in enumerate(variants)}
    steps, per_step = args.steps, None
    if args.budget_s:
        cal = [_train_cmd(args.task, sets + ["train.eval_interval=100000"], f"cal-{name}", CALIBRATION_STEPS)
               for name, sets in variants]
        done = _run_all(cal, args.jobs, env, logs)
        times = []
        for i, (name, _) in enumerate(variants):
            row = _last_json(logs[i], "done")
            if row is None:
                print(f"sweep: calibration of {name} failed; its log:\n{logs[i].read_text()[-2000:]}", file=sys.stderr)
                return 1
            times.append(row["elapsed_s"] / max(1, row["steps"]))
        per_step = max(times)
        steps = max(1, int(args.budget_s / per_step))
        print(f"sweep: {per_step * 1000:.0f} ms/step (slowest, all running) -> {steps} steps", file=sys.stderr, flush=True)
    cmds = [_train_cmd(args.task, sets, name, steps) for name, sets in variants]
    t0 = time.time()
    done = _run_all(cmds, args.jobs, env, logs)
    evals = [[sys.executable, "-c", "from tui.cli import main; raise SystemExit(main())", "eval", name,
              "--tag", "best", "--json"] for name, _ in variants]
    elogs = {i: saves / f"{name}.eval.log" for i, (name, _) in enumerate(variants)}
    _run_all(evals, args.jobs, env, elogs)
    results = []
    for i, (name, sets) in enumerate(variants):
        row = _last_json(logs[i], "done") or {}
        full = None
        for line in elogs[i].read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                full = json.loads(line)
        results.append({"name": name, "sets": sets, "rc": done[i][0], "train_s": round(done[i][1], 1),
                        "steps": row.get("steps"), "last": row.get("metrics"), "best_full": full})
    out = {"task": args.task, "steps": steps, "ms_per_step": per_step and round(per_step * 1000, 1),
           "wall_s": round(time.time() - t0, 1), "saves": str(saves), "results": results}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.task}: {steps} steps per variant, {out['wall_s']} s for all")
        for r in results:
            full = r["best_full"] or {}
            keys = [k for k in ("context_recall", "topic_coherence", "answer_exact", "accuracy", "val_loss")
                    if full.get(k) is not None]
            figures = "  ".join(f"{k} {full[k]:.3f}" for k in keys) or f"failed (rc {r['rc']}, see {logs[results.index(r)]})"
            print(f"  {r['name']:<16} best@{full.get('step', '?')}: {figures}")
    return 0
