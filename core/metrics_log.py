"""saves/NAME/metrics.jsonl: a run's metrics history as it trains, one JSON event per line, appended.

Written by MetricsLog (wrapped around a trainer's emit), read by read_events and tailed by LogTail.
Plain JSON so pandas (`pd.read_json(path, lines=True)`), a notebook or a TensorBoard importer reads it
without attnlab. Lines: {"event": "start", task, step, config}, then "step", "eval" and "done" events.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from pathlib import Path

from core.checkpoint import run_dir

FILENAME = "metrics.jsonl"
FLUSH_S = 2.0  # step lines reach the file at each eval and at least this often
STEP_KEYS = ("step", "loss", "lr", "grad_norm", "tokens", "ms", "elapsed_s", "epoch")


def log_path(name: str, saves_dir=None) -> Path:
    return run_dir(name, saves_dir) / FILENAME


def _scalar(v):
    """JSON-safe scalars only (numpy numbers become Python ones; NaN/inf and containers become None)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v) if math.isfinite(float(v)) else None
    return None


def plain_event(ev: dict) -> dict | None:
    """The line written for a trainer event, or None for events not logged (attention, paused)."""
    kind = ev.get("event")
    if kind == "step":
        out = {k: _scalar(ev.get(k)) for k in STEP_KEYS}
    elif kind in ("eval", "done"):
        src = ev if kind == "eval" else {**(ev.get("metrics") or {}), **ev}
        out = {k: _scalar(v) for k, v in src.items() if k != "metrics" and _scalar(v) is not None}
    else:
        return None
    out["event"], out["time"] = kind, round(time.time(), 3)
    return out


class MetricsLog:
    """Appends a run's events to saves/NAME/metrics.jsonl; call it like emit, or wrap an emit with tee()."""

    def __init__(self, name: str, trainer, saves_dir=None) -> None:
        self.path = log_path(name, saves_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._last_flush = time.monotonic()
        self.write({"event": "start", "time": round(time.time(), 3), "task": trainer.cfg.task,
                    "step": trainer.step_count, "elapsed_s": trainer.elapsed_s, "metric": trainer.task.metric,
                    "config": _config(trainer)})

    def __call__(self, ev: dict) -> None:
        line = plain_event(ev)
        if line is not None:
            self.write(line, flush=line["event"] != "step")

    def write(self, obj: dict, flush: bool = True) -> None:
        if self._fh.closed:
            return
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        if flush or time.monotonic() - self._last_flush >= FLUSH_S:
            self._fh.flush()
            self._last_flush = time.monotonic()

    def tee(self, emit):
        """An emit that logs each event, then passes it on."""
        def both(ev):
            self(ev)
            emit(ev)
        return both

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()


def _config(trainer) -> dict:
    from core.config import config_to_dict
    return config_to_dict(trainer.cfg)


def parse_lines(lines, events: list[dict]) -> list[dict]:
    """Add the events of complete JSON lines to `events`; a "start" at step s drops later steps logged
    before it (a run resumed from an older save overwrites that part of its history)."""
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a torn or foreign line: skipped, never fatal
        if not isinstance(ev, dict):
            continue
        if ev.get("event") == "start" and isinstance(ev.get("step"), (int, float)):
            s = ev["step"]
            events[:] = [e for e in events if e.get("event") == "start" or not _after(e, s)]
        events.append(ev)
    return events


def _after(ev: dict, step) -> bool:
    s = ev.get("step", ev.get("steps"))
    return isinstance(s, (int, float)) and s > step


def read_events(path: Path) -> list[dict]:
    """Every event in a metrics.jsonl file ([] when there is none)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return parse_lines(text.splitlines(), [])


class LogTail:
    """Reads a metrics.jsonl file incrementally: each poll() parses only the bytes appended since."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.events: list[dict] = []
        self._partial = b""

    def poll(self) -> bool:
        """Read what was appended; True when new events arrived."""
        try:
            size = self.path.stat().st_size
            if size < self.offset:  # replaced (the run was deleted and made again): start over
                self.offset, self.events, self._partial = 0, [], b""
            if size == self.offset:
                return False
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(size - self.offset)
        except OSError:
            return False
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        before = len(self.events)
        parse_lines(data[:cut].decode("utf-8", errors="replace").splitlines(), self.events)
        return len(self.events) != before or cut > 0
