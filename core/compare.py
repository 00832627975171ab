"""Runs side by side: each run's curves and summary (from metrics.jsonl, else its save) and a config diff.

Used by `attnlab compare` and the dashboard's compare view. Reads files only; never loads weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import checkpoint
from core.metrics_log import log_path, read_events


@dataclass
class RunRecord:
    name: str
    task: str | None = None
    metric: str | None = None
    config: dict = field(default_factory=dict)
    train: list = field(default_factory=list)  # (step, elapsed_s, loss)
    val: list = field(default_factory=list)  # (step, elapsed_s, val_loss)
    steps: int = 0
    wall_s: float | None = None  # wall clock from metrics.jsonl (else the save's training time)
    best_metric: float | None = None
    best_val: float | None = None
    source: str = "metrics.jsonl"
    error: str | None = None


def from_events(name: str, events: list[dict]) -> RunRecord:
    """A RunRecord from metrics.jsonl events (see core/metrics_log.py)."""
    r = RunRecord(name)
    elapsed = 0.0
    wall, first, last = 0.0, None, None  # wall clock summed over the run's sessions (evaluations included)
    for ev in events:
        kind = ev.get("event")
        t = _num(ev.get("time"))
        if kind == "start" and first is not None and last is not None:
            wall += last - first
            first = last = None
        if t is not None:
            first = t if first is None else first
            last = t
        if kind == "start":
            r.task, r.metric = ev.get("task", r.task), ev.get("metric", r.metric)
            r.config = ev.get("config") if isinstance(ev.get("config"), dict) else r.config
            elapsed = _num(ev.get("elapsed_s")) or elapsed
        elif kind == "step" and _num(ev.get("loss")) is not None:
            elapsed = _num(ev.get("elapsed_s")) or elapsed
            r.train.append((int(ev.get("step") or 0), elapsed, float(ev["loss"])))
        elif kind == "eval" and _num(ev.get("val_loss")) is not None:
            r.val.append((int(ev.get("step") or 0), elapsed, float(ev["val_loss"])))
            value = _num(ev.get(ev.get("metric") or r.metric or ""))
            if value is not None and (r.best_metric is None or value > r.best_metric):
                r.best_metric = value
    if first is not None and last is not None:
        wall += last - first
    r = _summarise(r, elapsed)
    r.wall_s = wall if events else None
    return r


def from_save(name: str, saves_dir=None) -> RunRecord:
    """A RunRecord from the run's newest save (for runs trained before metrics.jsonl existed)."""
    r = RunRecord(name, source="save")
    root = checkpoint.run_dir(name, saves_dir)
    tags = [t for t in ("last", "best") if (root / t / "meta.json").is_file()]
    if not tags:
        r.error = "no metrics.jsonl and no save to read"
        return r
    try:
        ck_dir = root / tags[0]
        meta = checkpoint._load_meta(ck_dir / "meta.json")
        r.config = checkpoint._load_config(ck_dir / "config.yaml")
    except checkpoint.SaveError as e:
        r.error = str(e).splitlines()[0]
        return r
    r.task, r.metric = meta.get("task"), meta.get("metric")
    hist = meta.get("history") or {}
    r.train = [tuple(p) for p in hist.get("train", []) if isinstance(p, (list, tuple)) and len(p) == 3]
    r.val = [tuple(p) for p in hist.get("val", []) if isinstance(p, (list, tuple)) and len(p) == 3]
    best = meta.get("best")
    if isinstance(best, list) and best:
        r.best_metric = _num(best[0])
    return _summarise(r, _num(meta.get("elapsed_s")), int(meta.get("step") or 0))


def _summarise(r: RunRecord, elapsed, steps=None) -> RunRecord:
    r.steps = steps if steps is not None else max([p[0] for p in r.train] + [0])
    r.wall_s = elapsed
    vals = [p[2] for p in r.val]
    r.best_val = min(vals) if vals else None
    return r


def load_record(name: str, saves_dir=None) -> RunRecord:
    """The run's record from its metrics.jsonl, else from its save."""
    path = log_path(name, saves_dir)
    if path.is_file():
        return from_events(name, read_events(path))
    return from_save(name, saves_dir)


def flatten(config: dict, prefix: str = "") -> dict:
    """{'model': {'n_layer': 2}} -> {'model.n_layer': 2}."""
    out = {}
    for k, v in (config or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(records: list[RunRecord]) -> list[tuple[str, list]]:
    """(key, [value per run]) for every config key whose values differ between the runs."""
    flat = [flatten(r.config) for r in records]
    keys = sorted(set().union(*flat)) if flat else []
    missing = object()
    out = []
    for k in keys:
        values = [f.get(k, missing) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out.append((k, [None if v is missing else v for v in values]))
    return out


def summary_rows(records: list[RunRecord]) -> list[dict]:
    """One plain dict per run: name, task, steps, wall_s, metric, best_metric, best_val."""
    return [{"name": r.name, "task": r.task, "steps": r.steps, "wall_s": r.wall_s, "metric": r.metric,
             "best_metric": r.best_metric, "best_val": r.best_val, "source": r.source, "error": r.error}
            for r in records]


def fmt_wall(seconds) -> str:
    s = _num(seconds)
    if s is None:
        return "—"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_value(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _num(v):
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None
