"""`attnlab heads`: what each attention head of a save does, and what the task loses without some."""

import json

import numpy as np

from core.interp import evaluate_ablation, head_scores, make_probes, parse_heads
from core.text import safe_text
from core.trainer import Trainer
from tui.cli.common import UserError, jsonable

SCORE_HELP = {"antidiagonal": "weight from position i to T-1-i (reversal)",
              "prev_token": "weight on the previous character",
              "induction": "on a repeated random string, weight on the character after the earlier copy",
              "sink": "weight on the first character",
              "copy": "in held-out recall answers, weight on the remembered word's next character (dialogue)"}


def register(sub):
    h = sub.add_parser("heads", help="per-head scores of a save, and its metric with heads ablated")
    h.add_argument("name")
    h.add_argument("--tag", default="best", help="best or last (default best)")
    h.add_argument("--ablate", metavar="L.H,...", help="switch these heads off, e.g. 1.3 or 0.1,1.3")
    h.add_argument("--mode", choices=("zero", "mean"), default="zero",
                   help="zero: the heads' output is zeroed; mean: replaced by its mean over validation data")
    h.add_argument("--full", action="store_true", help="evaluate on the whole held-out set (slower)")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_heads)


def cmd_heads(args):
    tr = Trainer.from_save(args.name, tag=args.tag)
    cfg = tr.cfg.model
    heads = []
    if args.ablate is not None:
        try:
            heads = parse_heads(args.ablate, cfg.n_layer, cfg.n_head)
        except ValueError as e:
            raise UserError(f"--ablate {safe_text(args.ablate)!r}: {e}") from None
    model = tr.averaged()  # the weights the save holds (their running average with train.ema)
    scores = head_scores(model, make_probes(tr.task))
    if heads:
        ev = evaluate_ablation(tr.task, model, heads, args.mode, full=args.full)
    else:
        base = tr.task.evaluate(model, np.random.default_rng(0), full=args.full)
        ev = {"base": base, "ablated": None, "heads": [], "mode": args.mode, "metric": tr.task.metric}
    if args.json:
        print(json.dumps(jsonable({"name": args.name, "tag": args.tag, "step": tr.step_count,
                                   "task": tr.cfg.task, "scores": scores, **ev})))
        return 0
    print(f"{safe_text(args.name)} ({tr.cfg.task}, {args.tag} @ step {tr.step_count}): "
          f"{cfg.n_layer} layer{'s' * (cfg.n_layer != 1)} x {cfg.n_head} head{'s' * (cfg.n_head != 1)}")
    print(format_scores(scores, heads))
    print(format_metric(ev))
    return 0


def format_scores(scores, marked=()):
    """One row per head (L0H1 ...), one column per score; the best head of each score starred."""
    keys = list(scores)
    L, H = next(iter(scores.values())).shape
    best = {k: divmod(int(scores[k].argmax()), H) for k in keys}
    lines = ["head   " + "".join(f"{k:>14}" for k in keys)]
    for layer in range(L):
        for h in range(H):
            cells = "".join(f"{scores[k][layer, h]:>13.3f}{'*' if best[k] == (layer, h) else ' '}" for k in keys)
            lines.append(f"L{layer}H{h:<3}{cells}{'  (ablated)' if (layer, h) in marked else ''}")
    lines += [f"  {k}: {SCORE_HELP.get(k, '')}" for k in keys]
    lines.append("  * the strongest head for that score")
    return "\n".join(lines)


def format_metric(ev):
    """'context_recall 0.8900 -> 0.1200 without L1H3 (zero ablation)', or the unablated value."""
    key, base, abl = ev["metric"], ev["base"], ev["ablated"]
    show = [key] + [k for k in ("val_loss",) if k != key]
    if abl is None:
        return "; ".join(f"{k} {_num(base.get(k))}" for k in show) + "   (--ablate L.H,... to switch heads off)"
    names = ", ".join(f"L{layer}H{h}" for layer, h in ev["heads"])
    return "\n".join(f"{k} {_num(base.get(k))} -> {_num(abl.get(k))} without {names} ({ev['mode']} ablation)"
                     for k in show)


def _num(v):
    return "—" if v is None else f"{v:.4f}"
