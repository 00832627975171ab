"""`python -m bench tasks`: each task at its preset, timed from pressing start to each target.

Wall time includes building the task and model and every evaluation, as a user would see it.
Options: --only reversal,qa,tinytalks,tinytalks_val,dialogue  --json  --seeds N (reversal runs per length).
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINYTALKS = ROOT.parent / "shared" / "corpora" / "tinytalks" / "splits"
OWN_QA = ROOT / "corpora" / "qa" / "train.txt"


def run(task, overrides, targets, stop_at_target=True):
    """Train; return wall seconds to first reach each target, the steps and the final full eval."""
    from core.config import load_config
    from core.trainer import Trainer
    t0 = time.perf_counter()
    tr = Trainer(load_config(task, overrides=overrides))
    reached, best = {}, {}

    def emit(ev):
        if ev["event"] != "eval":
            return
        for key, (op, value) in targets.items():
            v = ev.get(key)
            if v is None:
                continue
            best[key] = v if key not in best else (max(best[key], v) if op == ">=" else min(best[key], v))
            if key not in reached and (v >= value if op == ">=" else v <= value):
                reached[key] = (round(time.perf_counter() - t0, 3), ev["step"])

    done = tr.run(emit, until=(lambda ev: all(k in reached for k in targets)) if stop_at_target else None)
    wall = time.perf_counter() - t0
    final = tr.evaluate(full=True)
    keep = ("accuracy", "antidiagonal_best", "val_loss", "train_loss", "val_answer_loss", "answer_exact",
            "answer_similarity", "train_answer_exact", "context_recall", "topic_coherence")
    return {"task": task, "overrides": overrides, "wall_s": round(wall, 3), "steps": done["steps"],
            "reason": done["reason"], "train_s": round(tr.elapsed_s, 3),
            "time_to_target": {k: reached.get(k) for k in targets}, "best_seen": best,
            "final": {k: final[k] for k in keep if final.get(k) is not None},
            "by_level": {k: v["exact"] for k, v in final.get("answer_by_level", {}).items()}}


def reversal(seeds):
    out = []
    for L in (6, 8, 12):
        runs = [run("reversal", [f"data.seq_len={L}", f"train.seed={s}"], {"accuracy": (">=", 0.99)})
                for s in range(seeds)]
        t = [r["time_to_target"]["accuracy"][0] for r in runs if r["time_to_target"]["accuracy"]]
        out.append({"task": f"reversal len {L}", "runs": len(runs), "reached": len(t),
                    "median_s_to_99": statistics.median(t) if t else None,
                    "final_accuracy": [r["final"]["accuracy"] for r in runs],
                    "antidiagonal_best": [round(r["final"]["antidiagonal_best"], 3) for r in runs]})
    return out


SUITE = {
    "reversal": None,  # special: several lengths and seeds
    "qa": ("qa", [], {"val_loss": ("<=", 1.5), "answer_exact": (">=", 0.6), "train_answer_exact": (">=", 0.9)}),
    # TinyTalks, the external yardstick: train loss < 1.5 as fast as possible: the qa preset at the
    # reference shape (64-character window, batch 32: 175 steps, 31 s, vs 275 steps, 55 s at 128 x 16)
    "tinytalks": ("qa", [f"data.corpus={TINYTALKS / 'train.txt'}", f"data.val_corpus={TINYTALKS / 'val.txt'}",
                         "model.block_size=64", "train.batch_size=32", "train.eval_interval=25", "data.n_eval=10"],
                  {"train_loss": ("<=", 1.5)}),
    # the stretch: best val loss on TinyTalks' val split, training on TinyTalks joined with our own
    # Q&A corpus (same format, 6x the text), regularised, stopped early; best weights are saved
    "tinytalks_val": ("qa", [f"data.corpus={TINYTALKS / 'train.txt'}{os.pathsep}{OWN_QA}",
                             f"data.val_corpus={TINYTALKS / 'val.txt'}", "model.dropout=0.2",
                             "train.weight_decay=0.1", "train.lr=2e-3", "train.max_steps=3000",
                             "train.eval_interval=50", "train.patience=8", "data.n_eval=10"],
                      {"val_loss": ("<=", 1.5)}, False),
    # the whole preset: the time to 80% on the periodic evaluation, then the final full evaluation
    "dialogue": ("dialogue", [], {"context_recall": (">=", 0.8)}, False),
}


def main(argv, threads=1):
    as_json = "--json" in argv
    only = next((a.split("=", 1)[1] for a in argv if a.startswith("--only=")), None)
    if "--only" in argv:
        only = argv[argv.index("--only") + 1]
    seeds = int(next((a.split("=", 1)[1] for a in argv if a.startswith("--seeds=")), 3))
    names = only.split(",") if only else list(SUITE)
    results = []
    for name in names:
        if name not in SUITE:
            sys.exit(f"bench tasks: unknown task {name!r}; choose from {', '.join(SUITE)}")
        if name.startswith("tinytalks") and not TINYTALKS.is_dir():
            print("tinytalks: skipped (../shared/corpora/tinytalks not found)", file=sys.stderr)
            continue
        if name == "reversal":
            res = reversal(seeds)
        else:
            task, ov, targets, *stop = SUITE[name]
            res = [run(task, ov, targets, *stop)]
            res[0]["task"] = name
        for r in res:
            results.append(r)
            print(json.dumps(r) if as_json else _line(r), flush=True)
    return 0


def _line(r):
    return "  ".join(f"{k}={v}" for k, v in r.items() if k != "overrides")
