"""`attnlab compare A B [C ...] [--json]`: runs side by side: summary table and the config keys that differ."""

import json

from core.checkpoint import run_dir
from core.compare import config_diff, fmt_value, fmt_wall, load_record, summary_rows
from core.text import safe_text
from tui.cli.common import UserError, jsonable


def register(sub):
    c = sub.add_parser("compare", help="compare saved runs: metrics and config differences")
    c.add_argument("names", nargs="+", metavar="NAME")
    c.add_argument("--json", action="store_true", help="one JSON object: runs and config_diff")
    c.set_defaults(func=cmd_compare)


def cmd_compare(args):
    if len(args.names) < 2:
        raise UserError("compare needs at least two runs, e.g. `attnlab compare A B`; `attnlab runs` lists them")
    for name in args.names:
        if not run_dir(name).is_dir():
            raise UserError(f"no saved run named {name!r}; `attnlab runs` lists them")
    records = [load_record(n) for n in args.names]
    diff = config_diff([r for r in records if not r.error])
    if args.json:
        ok = [r.name for r in records if not r.error]
        print(json.dumps(jsonable({"runs": summary_rows(records),
                                   "config_diff": {k: dict(zip(ok, v)) for k, v in diff}})))
        return 0
    print(format_table(records, diff))
    return 0


def format_table(records, diff):
    """Plain text: one row per run, then one row per differing config key."""
    metric = next((r.metric for r in records if r.metric), "metric")
    head = ["run", "task", "steps", "wall", f"best {metric}", "best val"]
    rows = [[r.name, r.task or "—", f"{r.steps:,}", fmt_wall(r.wall_s), fmt_value(r.best_metric),
             fmt_value(r.best_val)] if not r.error else [r.name, f"error: {r.error}", "", "", "", ""]
            for r in records]
    lines = _columns([head] + rows)
    ok = [r for r in records if not r.error]
    if diff:
        lines += ["", "config keys that differ:"]
        lines += _columns([["key", *[r.name for r in ok]]] + [[k, *[fmt_value(v) for v in vals]] for k, vals in diff])
    else:
        lines += ["", "same config"]
    return safe_text("\n".join(lines), keep_newlines=True)


def _columns(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
