"""The training timeline: how a run learned, recorded while it trains and saved with it.

A Snapshot holds the attention stack on a fixed probe input (float16), the head scores of
core.interp, the losses and metric when known, and the model's answer to the probe. Snapshots come
on a schedule that is dense early and log-spaced later, plus every evaluation; the timeline is
bounded in count and bytes by thinning old snapshots evenly. Plain numpy, no UI.
"""

from __future__ import annotations

import io
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import checkpoint
from core.checkpoint import SaveError
from core.savefiles import json_object
from core.sample import stream_text
from core.tasks.corpus import format_turn

from core.interp import antidiagonal_score, head_scores, make_probes

FORMAT_VERSION = 1
NPZ, JSON = "timeline.npz", "timeline.json"
DENSE_STEPS = 50  # every step up to here is recorded: the first steps are where the maps form
LOG_RATIO = 1.03  # then one snapshot each time the step grows by 3% (about 160 from step 50 to 5,000)
MAX_SNAPSHOTS = 400
MAX_BYTES = 10_000_000
THIN_TO = 0.75  # a thinning pass leaves this fraction of the bound, so passes are rare
MAX_MARKS = 1000
PROBE_CHARS = 96  # a causal probe keeps its last characters: maps grow as T^2
ANSWER_CHARS = 40  # greedy characters for the probe answer (the longest qa val answer has 39)
_ROW_BYTES = 256  # the scalars and answer of a snapshot, roughly


def due(step: int) -> bool:
    """True for every step up to DENSE_STEPS, then for the first step of each LOG_RATIO bucket."""
    if step <= DENSE_STEPS:
        return True
    k = math.log(LOG_RATIO)
    return math.floor(math.log(step) / k) != math.floor(math.log(step - 1) / k)


def covered(step: int, last_step: int | None, last_is_eval: bool) -> bool:
    """Whether a scheduled step past the dense phase is already covered by an evaluation's snapshot
    less than one schedule unit before it (a run that evaluates often needs no second one there)."""
    return (step > DENSE_STEPS and last_step is not None and last_is_eval
            and schedule_position(step) - schedule_position(last_step) < 1.0)


def recorded_steps(max_steps: int, eval_interval: int) -> list[int]:
    """The steps a run of max_steps from step 0 records: step 0, the schedule unless an evaluation
    covers it, every evaluation (every eval_interval steps and the last step)."""
    steps, last_eval = [0], False
    for s in range(1, max_steps + 1):
        is_eval = s % eval_interval == 0 or s == max_steps
        if is_eval or (due(s) and not covered(s, steps[-1], last_eval)):
            steps.append(s)
            last_eval = is_eval
    return steps


def schedule_position(step: int) -> float:
    """Where a step sits on the schedule's own axis: the step itself up to DENSE_STEPS, then one unit
    per LOG_RATIO factor, so the scheduled snapshots are about one unit apart throughout."""
    if step <= DENSE_STEPS:
        return float(step)
    return DENSE_STEPS + math.log(step / DENSE_STEPS) / math.log(LOG_RATIO)


@dataclass(eq=False)  # compared by identity: `snap in list` must not compare arrays
class Snapshot:
    step: int
    elapsed_s: float
    loss: float | None
    val_loss: float | None
    metric: str | None
    metric_value: float | None
    maps: np.ndarray  # (n_layer, n_head, T, T) float16, on the timeline's probe
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_layer, n_head) float32
    answer: str | None = None

    @property
    def is_eval(self) -> bool:
        return self.val_loss is not None

    @property
    def nbytes(self) -> int:
        return int(self.maps.nbytes) + sum(int(v.nbytes) for v in self.scores.values()) + _ROW_BYTES

    def to_row(self) -> dict:
        """Plain data without the maps (JSON-safe): scalars, scores as nested lists, the answer."""
        return {"step": self.step, "elapsed_s": self.elapsed_s, "loss": self.loss, "val_loss": self.val_loss,
                "metric": self.metric, "metric_value": self.metric_value,
                "scores": {k: v.tolist() for k, v in self.scores.items()}, "answer": self.answer}


def probe_prompt(task) -> str:
    """The fixed probe: the reversal probe word, a recall question for dialogue, a val question for qa."""
    if not task.causal:
        return "".join(task.probe()[1])
    prompt = None
    for turns, ann in zip(task.val_convs, getattr(task, "slots", None) or []):
        for s in ann.get("slots", []):  # the shortest held-out recall: the fact turn, then the question
            if 0 <= s["fact_turn"] < s["turn"] < len(turns):
                p = format_turn(*turns[s["fact_turn"]]) + format_turn(turns[s["turn"]][0])
                if prompt is None or len(p) < len(prompt):
                    prompt = p
    if prompt is None:
        prompt = "".join(task.probe()[1])
    return prompt[-min(PROBE_CHARS, task.cfg.model.block_size):]


class Timeline:
    """Snapshots of one run in step order, the probe they were taken on, and marks (speed limit...)."""

    def __init__(self, probe: str, labels: list[str], max_snapshots: int = MAX_SNAPSHOTS,
                 max_bytes: int = MAX_BYTES):
        self.probe = probe
        self.labels = list(labels)
        self.snapshots: list[Snapshot] = []
        self.marks: list[dict] = []
        self.max_snapshots = max_snapshots
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._lock = threading.RLock()  # a save in another thread never sees a half-thinned list
        self._probes = None  # core.interp probe batches, built at the first record

    @classmethod
    def for_task(cls, task, **bounds) -> Timeline:
        prompt = probe_prompt(task)
        return cls(prompt, _probe_ids(task, prompt)[1], **bounds)

    def due(self, step: int) -> bool:
        """Whether the schedule records `step` (the trainer also records at every evaluation): due(),
        unless an evaluation's snapshot already covers it (see covered())."""
        if not due(step):
            return False
        last = self.snapshots[-1] if self.snapshots else None
        return not covered(step, last and last.step, bool(last and last.is_eval))

    @property
    def steps(self) -> list[int]:
        return [s.step for s in self.snapshots]

    def add(self, snap: Snapshot) -> tuple[int, list[int]]:
        """Append a snapshot (steps increase); returns its index and the steps thinned out to stay bounded."""
        snap.maps = np.asarray(snap.maps, np.float16)
        snap.scores = {k: np.asarray(v, np.float32) for k, v in snap.scores.items()}
        T = len(self.labels)
        with self._lock:
            if self.snapshots and snap.step <= self.snapshots[-1].step:
                raise ValueError(f"snapshot at step {snap.step} after one at step {self.snapshots[-1].step}; "
                                 "a timeline only grows forward")
            want = self.snapshots[0].maps.shape if self.snapshots else (*snap.maps.shape[:2], T, T)
            if snap.maps.ndim != 4 or snap.maps.shape != want:
                raise ValueError(f"snapshot maps {snap.maps.shape}, expected {want} (layers, heads, probe, probe)")
            self.snapshots.append(snap)
            self.nbytes += snap.nbytes
            dropped = self._thin()
            return len(self.snapshots) - 1, dropped

    def mark(self, step: int, kind: str, value=None) -> dict:
        """Note an event on the time axis, e.g. a speed-limit change; the newest MAX_MARKS are kept."""
        m = {"step": int(step), "kind": str(kind), "value": value}
        with self._lock:
            self.marks.append(m)
            del self.marks[:-MAX_MARKS]
        return m

    def _excess(self) -> int:
        n = len(self.snapshots)
        if n <= self.max_snapshots and self.nbytes <= self.max_bytes:
            return 0
        per = self.nbytes / n
        target = min(int(self.max_snapshots * THIN_TO), int(self.max_bytes * THIN_TO / per))
        return n - max(target, 2)

    def _thin(self) -> list[int]:
        """Drop snapshots so those kept stay evenly spread over the schedule's axis (linear, then log
        time): each drop is the one leaving the smallest gap; never the first or last, evaluations last."""
        k = self._excess()
        if k <= 0:
            return []
        u = np.array([schedule_position(s.step) for s in self.snapshots])  # (N,)
        evals = np.array([s.is_eval for s in self.snapshots])  # (N,)
        alive = np.arange(len(u))
        for _ in range(k):
            gap = u[alive[2:]] - u[alive[:-2]]  # the gap left by dropping each inner snapshot
            if not evals[alive[1:-1]].all():
                gap = np.where(evals[alive[1:-1]], np.inf, gap)
            alive = np.delete(alive, 1 + int(np.argmin(gap)))
        keep = set(alive.tolist())
        dropped = [s.step for i, s in enumerate(self.snapshots) if i not in keep]
        self.snapshots = [self.snapshots[i] for i in alive]
        self.nbytes = sum(s.nbytes for s in self.snapshots)
        return dropped

    # -- recording
    def capture(self, model, task) -> tuple[np.ndarray, dict, str | None]:
        """(maps float16 (L, nh, T, T), head scores, answer) of the model on this timeline's probe."""
        ids, _ = _probe_ids(task, self.probe)
        if self._probes is None:
            self._probes = make_probes(task)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # diverging weights: see record
            if not task.causal and self._probes.reversal.shape[1] == ids.shape[1]:
                return self._capture_one_forward(model, task, ids)
            logits, _ = model.forward(ids)  # (1, T, V)
            maps = model.attention_maps()[:, 0].astype(np.float16)  # (L, nh, T, T)
            if task.causal:
                answer = "".join(stream_text(model, task.tokenizer, self.probe, stop=("\n",),
                                             max_new_tokens=ANSWER_CHARS, temperature=0.0, unknown="unk")).strip()
            else:
                answer = task.tokenizer.decode(logits[0].argmax(-1))
            scores = {k: np.asarray(v, np.float32) for k, v in head_scores(model, self._probes).items()}
        return maps, scores, answer

    def _capture_one_forward(self, model, task, ids):
        """capture() for reversal in one forward: the probe word is row 0 of the score batch (rows are
        independent without a causal mask), so a snapshot costs one small forward, not two."""
        batch = self.probe_batch(task)  # (1 + B, L)
        logits, _ = model.forward(batch)  # (1 + B, L, V)
        return self.capture_from(task, logits, model.attention_maps())

    def probe_batch(self, task):
        """(1 + B, L) ids for a non-causal task: the probe word, then the score probes. An evaluation can
        carry them in its own forward (see Trainer.evaluate) and hand the result to capture_from."""
        if self._probes is None:
            self._probes = make_probes(task)
        return np.concatenate([_probe_ids(task, self.probe)[0], self._probes.reversal])

    def capture_from(self, task, logits, att):
        """capture()'s result from a forward of probe_batch(): logits (1 + B, L, V), maps (n_layer, 1 + B, nh, L, L)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            scores = {"antidiagonal": antidiagonal_score(att[:, 1:]).mean(axis=1).astype(np.float32)}
        return att[:, 0].astype(np.float16), scores, task.tokenizer.decode(logits[0].argmax(-1))

    def record(self, model, task, *, step, elapsed_s, loss=None, val_loss=None, metric=None,
               metric_value=None, captured=None) -> tuple[int, Snapshot, list[int]] | None:
        """Capture the model now (or take `captured`, capture()'s result for these weights) and add the
        snapshot; returns (index, snapshot, steps thinned out), or None when the weights give non-finite
        attention (a run diverging: its next step reports it)."""
        maps, scores, answer = captured if captured is not None else self.capture(model, task)
        if not (np.isfinite(maps).all() and all(np.isfinite(v).all() for v in scores.values())):
            return None
        snap = Snapshot(int(step), float(elapsed_s), _num(loss), _num(val_loss), metric, _num(metric_value),
                        maps, scores, answer)
        index, dropped = self.add(snap)
        return index, snap, dropped

    # -- reading
    def to_rows(self) -> list[dict]:
        """One plain dict per snapshot (no maps), for `attnlab timeline` and JSON output."""
        with self._lock:
            return [s.to_row() for s in self.snapshots]

    # -- files
    def to_files(self) -> dict[str, bytes]:
        """{timeline.npz, timeline.json} contents, for checkpoint.save_checkpoint(extra_files=...)."""
        with self._lock:
            snaps = list(self.snapshots)
            marks = list(self.marks)
        T = len(self.labels)
        maps = (np.stack([s.maps for s in snaps]) if snaps
                else np.zeros((0, 0, 0, T, T), np.float16))  # (N, L, nh, T, T)
        arrays = {"maps": maps}
        keys = sorted({k for s in snaps for k in s.scores})
        for k in keys:  # a score a snapshot lacks is NaN
            nan = np.full(maps.shape[1:3], np.nan, np.float32)
            arrays["scores/" + k] = np.stack([s.scores.get(k, nan) for s in snaps])  # (N, L, nh)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        rows = [{"step": s.step, "elapsed_s": s.elapsed_s, "loss": s.loss, "val_loss": s.val_loss,
                 "metric": s.metric, "metric_value": s.metric_value, "answer": s.answer} for s in snaps]
        meta = {"format_version": FORMAT_VERSION, "probe": self.probe, "labels": self.labels,
                "marks": marks, "snapshots": rows}
        return {NPZ: buf.getvalue(), JSON: json.dumps(meta, indent=1).encode("utf-8")}

    def save(self, tag_dir) -> None:
        """Write timeline.npz and timeline.json into a directory (the trainer saves through checkpoint)."""
        for name, data in self.to_files().items():
            checkpoint._write_file(Path(tag_dir) / name, data)

    @classmethod
    def load(cls, tag_dir, **bounds) -> Timeline | None:
        """The timeline saved in a tag directory, None if it has none; SaveError for anything damaged."""
        d = Path(tag_dir)
        have = [(d / f).is_file() for f in (NPZ, JSON)]
        if not any(have):
            return None
        try:
            if not all(have):
                raise _bad(d / (JSON if have[0] else NPZ), "file is missing (the timeline is half there)")
            with checkpoint._Tag(d) as t:  # one directory descriptor: no links followed, sizes bounded
                meta = _load_json(d / JSON, t.read_text(JSON, checkpoint._MAX_META))
                arrays = checkpoint._load_npz(t, NPZ)
            tl = cls(meta["probe"], meta["labels"], **bounds)
            tl.marks = meta["marks"][-MAX_MARKS:]
            tl.snapshots = _snapshots(d / NPZ, arrays, meta["snapshots"], len(tl.labels))
        except SaveError as e:
            if FIX in str(e):
                raise
            raise SaveError(f"{e}; or {FIX}") from None
        tl.nbytes = sum(s.nbytes for s in tl.snapshots)
        return tl


def load_timeline(name: str, tag: str = "best", saves_dir=None) -> Timeline:
    """The timeline of saves/NAME/<tag>/; SaveError when the save has none or it is damaged."""
    root = checkpoint._root(saves_dir)
    d = checkpoint.run_dir(name, root)
    checkpoint._check_name(tag, "tag")
    src = checkpoint._tag_dir(root, d, name, tag)
    tl = Timeline.load(src)
    if tl is None:
        raise SaveError(f"{src}: this save has no timeline (it was made before timelines were recorded); "
                        f"resume it with `attnlab train TASK --resume {name}` to record one")
    return tl


def _probe_ids(task, prompt):
    """(ids (1, T), labels) of the probe text for the model."""
    if not task.causal:
        return task.probe(prompt)
    ids = task.tokenizer.encode(prompt, unknown="unk")[None, :]  # (1, T)
    return ids, list(prompt)


def _num(v):
    return None if v is None else float(v)


# -- validation of files read back (they may be damaged or hostile)
FIX = f"delete {NPZ} and {JSON} there to keep the save without its history"


def _bad(path, problem):
    return checkpoint._err(path, problem, f"the timeline is damaged; {FIX}")


def _load_json(path, text):
    bad = lambda what: _bad(path, what)  # noqa: E731
    meta = json_object(text, bad)
    v = meta.get("format_version")
    if not _is_int(v) or not 1 <= v <= FORMAT_VERSION:
        raise bad(f"format_version is {v!r}; this attnlab reads timeline format {FORMAT_VERSION}")
    if not isinstance(meta.get("probe"), str):
        raise bad("'probe' is not text")
    labels = meta.get("labels")
    if not isinstance(labels, list) or not all(isinstance(c, str) for c in labels):
        raise bad("'labels' is not a list of text")
    marks = meta.get("marks")
    if not isinstance(marks, list) or not all(_is_mark(m) for m in marks):
        raise bad("'marks' is not a list of {step, kind, value}")
    rows = meta.get("snapshots")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise bad("'snapshots' is not a list of objects")
    prev = -1
    for i, r in enumerate(rows):
        problem = _row_problem(r, prev)
        if problem:
            raise bad(f"snapshot {i}: {problem}")
        prev = r["step"]
    return meta


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v, optional=True):
    if v is None:
        return optional
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_mark(m):
    return (isinstance(m, dict) and set(m) == {"step", "kind", "value"} and _is_int(m["step"])
            and isinstance(m["kind"], str) and _is_num(m["value"]))


def _row_problem(r, prev):
    keys = {"step", "elapsed_s", "loss", "val_loss", "metric", "metric_value", "answer"}
    if set(r) != keys:
        return f"has keys {sorted(r)}, expected {sorted(keys)}"
    if not _is_int(r["step"]) or r["step"] <= prev:
        return f"step {r['step']!r} is not an integer after step {prev}"
    if not _is_num(r["elapsed_s"], optional=False) or r["elapsed_s"] < 0:
        return f"elapsed_s {r['elapsed_s']!r} is not a non-negative number"
    for k in ("loss", "val_loss", "metric_value"):
        if not _is_num(r[k]):
            return f"{k} {r[k]!r} is not a finite number or null"
    for k in ("metric", "answer"):
        if r[k] is not None and not isinstance(r[k], str):
            return f"{k} is not text or null"
    return None


def _snapshots(path, arrays, rows, T):
    """Snapshots from the npz arrays and the JSON rows, after checking names, dtypes and shapes."""
    bad = lambda what: _bad(path, what)  # noqa: E731
    extra = sorted(k for k in arrays if k != "maps" and not k.startswith("scores/"))
    if "maps" not in arrays or extra:
        raise bad(f"arrays must be 'maps' and 'scores/<name>', found {sorted(arrays)}")
    maps = arrays["maps"]
    N = len(rows)
    if maps.dtype != np.float16 or maps.ndim != 5 or maps.shape[0] != N or maps.shape[3:] != (T, T):
        raise bad(f"'maps' is {maps.dtype} {maps.shape}; expected float16 ({N}, layers, heads, {T}, {T})")
    if N and not (np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1.001):
        raise bad("'maps' holds values outside [0, 1]; attention weights are probabilities")
    scores = {}
    for k, a in arrays.items():
        if k == "maps":
            continue
        if a.dtype != np.float32 or a.shape != maps.shape[:3]:
            raise bad(f"{k!r} is {a.dtype} {a.shape}; expected float32 {maps.shape[:3]}")
        if np.isinf(a).any() or (a[~np.isnan(a)] < -1e-6).any() or (a[~np.isnan(a)] > 1 + 1e-6).any():
            raise bad(f"{k!r} holds values outside [0, 1]")
        scores[k[len("scores/"):]] = a
    out = []
    for i, r in enumerate(rows):
        sc = {k: a[i].copy() for k, a in scores.items() if not np.isnan(a[i]).all()}
        out.append(Snapshot(r["step"], float(r["elapsed_s"]), _num(r["loss"]), _num(r["val_loss"]), r["metric"],
                            _num(r["metric_value"]), maps[i].copy(), sc, r["answer"]))
    return out
