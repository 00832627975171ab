"""`attnlab timeline NAME`: the recorded steps of a save, with metrics, head scores and probe answers."""

import json

from core.text import safe_text
from core.timeline import load_timeline
from tui.cli.common import jsonable

ANSWER_WIDTH = 24


def register(sub):
    t = sub.add_parser("timeline", help="print how a save learned: its recorded steps, metrics and head scores")
    t.add_argument("name")
    t.add_argument("--tag", default="last", choices=("best", "last"),
                   help="last (default: the whole run) or best (up to the best evaluation)")
    t.add_argument("--json", action="store_true", help="one JSON object, every head's score at every step")
    t.set_defaults(func=cmd_timeline)


def cmd_timeline(args):
    tl = load_timeline(args.name, args.tag)
    rows = tl.to_rows()
    if args.json:
        print(json.dumps(jsonable({"name": args.name, "tag": args.tag, "probe": tl.probe, "labels": tl.labels,
                                   "marks": tl.marks, "snapshots": rows})))
        return 0
    print("\n".join(format_table(args.name, args.tag, tl.probe, rows, tl.marks)))
    return 0


def best_head(scores):
    """'0.987 L0H1': the highest score of a (n_layer, n_head) list and where it is."""
    flat = [(v, layer, head) for layer, row in enumerate(scores) for head, v in enumerate(row) if v == v]
    if not flat:
        return "-"
    v, layer, head = max(flat)
    return f"{v:.3f} L{layer}H{head}"


def _seconds(v):
    return f"{v:.2f}s" if v < 10 else f"{v:.1f}s" if v < 1000 else f"{v:.0f}s"


def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def format_table(name, tag, probe, rows, marks):
    """Lines of a table: one recorded step a line, each head score as its best head."""
    metric = next((r["metric"] for r in rows if r["metric"]), "metric")
    keys = sorted({k for r in rows for k in r["scores"]})
    lines = [f"{safe_text(name)} ({tag}): {len(rows)} snapshots on the probe {safe_text(repr(probe))}",
             "head scores: the best head's score (L layer, H head); answer: the model's reply to the probe",
             f"{'step':>7} {'time':>8} {'loss':>7} {'val_loss':>8} {metric[:12]:>12} "
             + "".join(f"{k[:12]:>13}" for k in keys) + "  answer"]
    for r in rows:
        answer = safe_text(r["answer"] or "")
        answer = answer if len(answer) <= ANSWER_WIDTH else answer[:ANSWER_WIDTH - 1] + "…"
        lines.append(f"{r['step']:>7} {_seconds(r['elapsed_s']):>8} {_num(r['loss'], '7.4f'):>7} "
                     f"{_num(r['val_loss'], '8.4f'):>8} {_num(r['metric_value'], '12.4f'):>12} "
                     + "".join(f"{best_head(r['scores'][k]) if k in r['scores'] else '-':>13}" for k in keys)
                     + f"  {answer}")
    for m in marks:
        if m["kind"] == "speed_limit":
            value = "unlimited" if m["value"] is None else f"{m['value']:g} steps/s"
            lines.append(f"speed limit from step {m['step']}: {value}")
        else:
            lines.append(f"{safe_text(m['kind'])} at step {m['step']}: {m['value']}")
    return lines
