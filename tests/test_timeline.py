"""core/timeline.py: the schedule, bounds, recording in Trainer.run, saves, hostile files, speed limit, CLI."""

import json
import math
import pathlib
import threading
import time
import warnings

import numpy as np
import pytest

from core import timeline as tlm
from core.checkpoint import SaveError, save_checkpoint
from core.config import load_config
from core.tasks import make_task
from core.timeline import Snapshot, Timeline, due, load_timeline
from core.trainer import Trainer
from tui.cli import main

REV = ["data.n_eval=200"]


def antidiag(snap):
    return float(snap.scores["antidiagonal"].max())


def same_snapshot(a, b, timing=True):
    assert a.step == b.step and a.loss == b.loss and a.answer == b.answer
    assert a.val_loss == b.val_loss and a.metric == b.metric and a.metric_value == b.metric_value
    if timing:
        assert a.elapsed_s == b.elapsed_s
    assert a.maps.dtype == b.maps.dtype == np.float16 and np.array_equal(a.maps, b.maps)
    assert sorted(a.scores) == sorted(b.scores)
    for k in a.scores:
        assert a.scores[k].dtype == np.float32 and np.array_equal(a.scores[k], b.scores[k])


@pytest.fixture(scope="module")
def trained():
    """A reversal run trained to 99% accuracy and a little past it, with every event it emitted."""
    tr = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=60"]))
    events = []
    tr.run(events.append)
    return tr, events


# ---- the schedule

def test_schedule_is_dense_early_then_log_spaced():
    assert all(due(s) for s in range(0, tlm.DENSE_STEPS + 1))
    later = [s for s in range(tlm.DENSE_STEPS + 1, 100_001) if due(s)]
    gaps = np.diff(later)
    assert gaps.min() >= 1 and gaps[-1] > 100  # sparse late
    # log-spaced: about one snapshot per LOG_RATIO factor of growth, in every decade alike
    for lo in (100, 1000, 10_000):
        n = sum(1 for s in later if lo <= s < 10 * lo)
        assert abs(n - math.log(10) / math.log(tlm.LOG_RATIO)) <= 2
    # the gap never exceeds the ratio's share of the step (no long blind stretch)
    assert all(g <= s * (tlm.LOG_RATIO - 1) + 1 for g, s in zip(gaps, later[1:]))


@pytest.mark.parametrize("task", ["reversal", "qa", "dialogue"])
def test_preset_runs_record_fewer_than_the_bound(task):
    from bench.core import recorded_steps
    t = load_config(task).train
    n = recorded_steps(t.max_steps, t.eval_interval)
    assert 50 < n <= tlm.MAX_SNAPSHOTS


def test_a_run_records_exactly_the_scheduled_steps_and_evaluations_cover_the_schedule():
    tr = Trainer(load_config("reversal", overrides=["train.max_steps=150"]))  # evaluates every 5 steps
    tr.run(lambda e: None)
    steps = tlm.recorded_steps(150, 5)
    assert tr.timeline.steps == steps
    assert set(range(51)) <= set(steps)  # the dense phase: every step
    evals = set(range(5, 151, 5))
    assert evals <= set(steps)
    skipped = [s for s in range(51, 151) if due(s) and s not in steps]
    assert skipped  # scheduled steps an evaluation less than one schedule unit before covered
    for s in skipped:
        prev = max(e for e in evals if e < s)
        assert tlm.schedule_position(s) - tlm.schedule_position(prev) < 1
    assert tlm.recorded_steps(1000, 10 ** 6) == [s for s in range(1001) if due(s) or s in (0, 1000)]


# ---- bounds

def _fill(tl, steps, evals, shape, rng):
    for s in steps:
        maps = rng.random(shape).astype(np.float16)
        tl.add(Snapshot(s, s * 0.1, 1.0, 2.0 if s in evals else None, "m" if s in evals else None,
                        0.5 if s in evals else None, maps, {"x": rng.random(shape[:2]).astype(np.float32)}, "a"))


def test_dialogue_preset_timeline_stays_bounded():
    """Fill a timeline with the dialogue preset's shapes over a whole preset run, synthetically."""
    cfg = load_config("dialogue")
    task = make_task(cfg)
    tl = Timeline.for_task(task)
    T = len(tl.labels)
    assert 0 < T <= tlm.PROBE_CHARS and tl.probe.endswith("\nA:")
    shape = (cfg.model.n_layer, cfg.model.n_head, T, T)
    t = cfg.train
    evals = set(range(t.eval_interval, t.max_steps + 1, t.eval_interval))
    steps = [s for s in range(t.max_steps + 1) if due(s) or s in evals]
    _fill(tl, steps, evals, shape, np.random.default_rng(0))
    kept = tl.steps
    assert len(kept) <= tlm.MAX_SNAPSHOTS and tl.nbytes <= tlm.MAX_BYTES
    assert sum(len(b) for b in tl.to_files().values()) <= tlm.MAX_BYTES + 100_000
    assert kept[0] == 0 and kept[-1] == t.max_steps and evals <= set(kept)  # first, last, every evaluation
    assert len(kept) >= 20 and kept == sorted(kept)
    assert tl.nbytes == sum(s.nbytes for s in tl.snapshots)
    assert_even(kept)


def assert_even(kept):
    """Kept snapshots cover the schedule's axis evenly: the dense start too, no long blind stretch."""
    u = np.array([tlm.schedule_position(s) for s in kept])
    assert sum(1 for s in kept if 0 < s <= tlm.DENSE_STEPS) >= 3
    assert np.diff(u).max() <= 3 * (u[-1] - u[0]) / (len(u) - 1)


def test_count_bound_thins_evenly_and_evals_last():
    tl = Timeline("AB", ["A", "B"], max_snapshots=40)
    evals = set(range(0, 1000, 50))
    _fill(tl, range(1000), evals, (1, 1, 2, 2), np.random.default_rng(0))
    kept = tl.steps
    assert len(kept) <= 40 and kept[0] == 0 and kept[-1] == 999 and evals <= set(kept)
    assert_even(kept)


def test_evaluations_are_thinned_too_when_they_alone_exceed_the_bound():
    tl = Timeline("AB", ["A", "B"], max_snapshots=10)
    _fill(tl, range(100), set(range(100)), (1, 1, 2, 2), np.random.default_rng(0))
    assert len(tl.snapshots) <= 10 and tl.steps[0] == 0 and tl.steps[-1] == 99


def test_add_refuses_going_back_in_time():
    tl = Timeline("AB", ["A", "B"])
    _fill(tl, [3], set(), (1, 1, 2, 2), np.random.default_rng(0))
    with pytest.raises(ValueError, match="only grows forward"):
        _fill(tl, [3], set(), (1, 1, 2, 2), np.random.default_rng(0))


# ---- recording during training

def test_reversal_timeline_shows_the_antidiagonal_forming(trained):
    tr, events = trained
    snaps = tr.timeline.snapshots
    assert len(snaps) >= 10 and snaps[0].step == 0 and snaps[-1].step == tr.step_count
    assert snaps[0].loss is None and snaps[0].metric is None
    assert antidiag(snaps[0]) < 0.5 and antidiag(snaps[-1]) > 0.95
    best = 0.0
    for s in snaps:  # monotone within noise
        assert antidiag(s) >= best - 0.05, s.step
        best = max(best, antidiag(s))
    assert snaps[-1].answer == "".join(reversed(tr.timeline.probe))
    assert snaps[0].answer != snaps[-1].answer
    evals = [e["step"] for e in events if e["event"] == "eval"]
    assert set(evals) <= {s.step for s in snaps}
    at_eval = next(s for s in snaps if s.step == evals[-1])
    assert at_eval.metric == "accuracy" and at_eval.metric_value == tr.last_eval["accuracy"]


def test_recorded_last_map_equals_a_fresh_forward(trained):
    tr, _ = trained
    last = tr.timeline.snapshots[-1]
    fresh = tr.attention_probe(tr.timeline.probe)
    assert fresh["labels"] == tr.timeline.labels
    assert last.maps.shape == fresh["maps"].shape == (1, 2, 6, 6)
    assert np.array_equal(last.maps, fresh["maps"].astype(np.float16))


def test_an_evaluation_carries_the_snapshot_without_changing_its_metrics():
    """Reversal's evaluation carries the timeline's probe batch in its own forward (the snapshot after
    it then needs no forward): its metrics are those of a plain evaluation, and the snapshot is what a
    standalone capture records."""
    tr = Trainer(load_config("reversal", overrides=["train.max_steps=12"]))
    tr.run(lambda e: None)  # ends at step 12 with an evaluation at 10 and its snapshot
    plain = tr.task.evaluate(tr.model, np.random.default_rng(0), full=False)
    batch = tr.timeline.probe_batch(tr.task)  # (1 + B, L): the probe word, then the first held-out rows
    assert np.array_equal(batch[1:], tr.task.eval_x[:len(batch) - 1]) and np.array_equal(tr._eval_probe_batch(), batch)
    carried = tr.task.evaluate(tr.model, np.random.default_rng(0), full=False, extra=batch[:1], keep=len(batch) - 1)
    extra = carried.pop("extra")
    assert carried.keys() == plain.keys()
    n = len(tr.task.eval_x)  # the same rows in a bigger batch: float32 rounding may differ, nothing more
    for k in plain:
        if k == "antidiagonal_best_head":
            continue  # two heads can tie within rounding
        # accuracies: at most a near-tie argmax flipping; the rest are rounded to 4 digits (or the loss)
        tol = 2.0 / n if k in ("accuracy", "position_accuracy") else 1.5e-4
        assert np.allclose(np.asarray(carried[k], float), np.asarray(plain[k], float), rtol=1e-5, atol=tol), k
    assert extra["logits"].shape[0] == len(batch) and extra["maps"].shape[1] == len(batch)
    via_eval = tr.timeline.capture_from(tr.task, extra["logits"], extra["maps"])
    alone = tr.timeline.capture(tr.model, tr.task)
    assert np.abs(via_eval[0].astype(np.float32) - alone[0].astype(np.float32)).max() <= 1e-3  # a float16 step
    assert np.allclose(via_eval[1]["antidiagonal"], alone[1]["antidiagonal"], atol=1e-5)
    assert via_eval[2] == alone[2]
    tr.evaluate()  # the trainer's own evaluation hands its capture to the next record() at this step only
    assert tr._eval_capture[0] == tr.step_count
    tr.step()
    assert tr.record()["snapshot"].step == tr.step_count and tr._eval_capture is None


def test_snapshot_events_match_the_timeline(trained):
    tr, events = trained
    snap_evs = [e for e in events if e["event"] == "snapshot"]
    assert [e["step"] for e in snap_evs] == tr.timeline.steps  # nothing thinned in a short run
    assert all(e["snapshot"] is tr.timeline.snapshots[e["index"]] for e in snap_evs)
    order = [e["event"] for e in events]
    i = order.index("eval")
    assert order[i - 1] == "snapshot"  # recorded before the eval event, so a best save includes it


def test_recording_never_changes_training():
    cfg = load_config("qa", overrides=["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32",
                                       "train.batch_size=4", "data.n_eval=2", "train.eval_interval=4",
                                       "model.dropout=0.1", "train.max_steps=6"])
    a, b = Trainer(cfg), Trainer(cfg)
    b.timeline = None
    evs = []
    a.run(evs.append)
    b.run(lambda e: None)
    assert np.array_equal(a.model.flat, b.model.flat)
    assert len(a.timeline.snapshots) == 7
    s = a.timeline.snapshots[-1]
    assert set(s.scores) == {"prev_token", "induction", "sink"}
    assert all(v.shape == (1, 2) and v.dtype == np.float32 for v in s.scores.values())
    assert isinstance(s.answer, str) and len(s.answer) <= tlm.ANSWER_CHARS
    assert s.maps.shape == (1, 2, len(a.timeline.labels), len(a.timeline.labels))


# ---- saves

def test_timeline_survives_save_load_and_resume_bitwise(tmp_path):
    cfg = load_config("reversal", overrides=REV + ["train.max_steps=30"])
    straight = Trainer(cfg)
    straight.run(lambda e: None)
    first = Trainer(cfg)
    first.run(lambda e: None, max_steps=12)
    first.save("run", "last", saves_dir=tmp_path)
    loaded = load_timeline("run", "last", saves_dir=tmp_path)
    assert loaded.probe == first.timeline.probe and loaded.labels == first.timeline.labels
    assert len(loaded.snapshots) == len(first.timeline.snapshots) == 13
    for a, b in zip(first.timeline.snapshots, loaded.snapshots):
        same_snapshot(a, b)
    again = Trainer.from_save("run", "last", saves_dir=tmp_path)
    for a, b in zip(first.timeline.snapshots, again.timeline.snapshots):
        same_snapshot(a, b)
    again.run(lambda e: None)
    steps = again.timeline.steps
    assert steps[:13] == list(range(13)) and steps[13:] and min(steps[13:]) > 12  # appended
    assert steps == straight.timeline.steps
    for a, b in zip(first.timeline.snapshots, again.timeline.snapshots):
        same_snapshot(a, b)
    for a, b in zip(straight.timeline.snapshots, again.timeline.snapshots):
        if a.step != 12:  # the first run ended (and evaluated) at 12; the straight one did not
            same_snapshot(a, b, timing=False)
        else:
            assert np.array_equal(a.maps, b.maps) and a.loss == b.loss
    again.save("run", "last", saves_dir=tmp_path)
    assert load_timeline("run", "last", saves_dir=tmp_path).steps == steps


def test_best_save_holds_the_snapshot_of_its_evaluation(tmp_path):
    tr = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=10"]))

    def emit(ev):
        if ev["event"] == "eval" and ev["best"]:
            tr.save("run", "best", saves_dir=tmp_path)
    tr.run(emit)
    tl = load_timeline("run", "best", saves_dir=tmp_path)
    assert tl.snapshots[-1].step == tr.best_step and tl.snapshots[-1].val_loss is not None


def test_a_save_without_timeline_loads_and_starts_one(tmp_path):
    tr = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=4"]))
    tr.timeline = None
    tr.run(lambda e: None)
    tr.save("old", "last", saves_dir=tmp_path)
    with pytest.raises(SaveError, match="no timeline"):
        load_timeline("old", "last", saves_dir=tmp_path)
    again = Trainer.from_save("old", "last", saves_dir=tmp_path)
    assert again.timeline.snapshots == []
    again.run(lambda e: None, max_steps=6)
    assert again.timeline.steps == [4, 5, 6]


@pytest.fixture
def saved(tmp_path):
    tr = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=6"]))
    tr.run(lambda e: None)
    tr.save("run", "last", saves_dir=tmp_path)
    return tmp_path / "run" / "last"


def _rewrite_npz(path, **arrays):
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **data)


class Payload:
    """Unpickling this calls Path.touch(marker): proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_timeline_is_refused_and_never_runs(saved, tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    _rewrite_npz(saved / "timeline.npz", maps=arr)
    for load in (lambda: load_timeline("run", "last", saves_dir=tmp_path),
                 lambda: Trainer.from_save("run", "last", saves_dir=tmp_path)):
        with pytest.raises(SaveError, match="timeline.npz.*pickled"):
            load()
    assert not marker.exists()


def _json_edit(path, fn):
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


HOSTILE = {
    "maps float32": ("npz", lambda p: _rewrite_npz(p, maps=np.zeros((7, 1, 2, 6, 6), np.float32)), "float16"),
    "maps wrong T": ("npz", lambda p: _rewrite_npz(p, maps=np.zeros((7, 1, 2, 5, 5), np.float16)), "maps"),
    "maps NaN": ("npz", lambda p: _rewrite_npz(p, maps=np.full((7, 1, 2, 6, 6), np.nan, np.float16)), r"\[0, 1\]"),
    "maps above 1": ("npz", lambda p: _rewrite_npz(p, maps=np.full((7, 1, 2, 6, 6), 3, np.float16)), r"\[0, 1\]"),
    "scores shape": ("npz", lambda p: _rewrite_npz(p, **{"scores/antidiagonal": np.zeros((7, 3), np.float32)}),
                     "antidiagonal"),
    "stray array": ("npz", lambda p: _rewrite_npz(p, other=np.zeros(3)), "arrays must be"),
    "not an npz": ("npz", lambda p: p.write_bytes(b"hello"), "not an .npz"),
    "json list": ("json", lambda p: p.write_text("[1, 2]"), "JSON object"),
    "json broken": ("json", lambda p: p.write_text("{"), "not valid JSON"),
    "newer format": ("json", lambda p: _json_edit(p, lambda m: m.update(format_version=99)), "format_version"),
    "steps backwards": ("json", lambda p: _json_edit(p, lambda m: m["snapshots"][2].update(step=0)), "snapshot 2"),
    "loss text": ("json", lambda p: _json_edit(p, lambda m: m["snapshots"][1].update(loss="x")), "loss"),
    "extra key": ("json", lambda p: _json_edit(p, lambda m: m["snapshots"][1].update(evil=1)), "keys"),
    "labels": ("json", lambda p: _json_edit(p, lambda m: m.update(labels=[1, 2])), "labels"),
    "marks": ("json", lambda p: _json_edit(p, lambda m: m.update(marks=[{"step": "x"}])), "marks"),
    "row count": ("json", lambda p: _json_edit(p, lambda m: m["snapshots"].pop()), "maps"),
    "half there": ("json", lambda p: p.unlink(), "missing"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_damaged_or_hostile_timeline_is_refused_with_a_message(saved, tmp_path, case, capsys):
    which, damage, match = HOSTILE[case]
    damage(saved / ("timeline.npz" if which == "npz" else "timeline.json"))
    with pytest.raises(SaveError, match=match) as info:
        load_timeline("run", "last", saves_dir=tmp_path)
    assert "without its history" in str(info.value)  # the fix: the save is usable without its timeline
    with pytest.raises(SaveError):
        Trainer.from_save("run", "last", saves_dir=tmp_path)
    for f in ("timeline.npz", "timeline.json"):
        (saved / f).unlink(missing_ok=True)
    assert Trainer.from_save("run", "last", saves_dir=tmp_path).step_count == 6


def test_timeline_of_another_model_shape_or_past_the_save_is_refused(saved, tmp_path):
    _rewrite_npz(saved / "timeline.npz", maps=np.zeros((7, 2, 2, 6, 6), np.float16),
                 **{"scores/antidiagonal": np.zeros((7, 2, 2), np.float32)})
    load_timeline("run", "last", saves_dir=tmp_path)  # consistent on its own
    with pytest.raises(SaveError, match="2 layers"):
        Trainer.from_save("run", "last", saves_dir=tmp_path)
    _rewrite_npz(saved / "timeline.npz", maps=np.zeros((7, 1, 2, 6, 6), np.float16),
                 **{"scores/antidiagonal": np.zeros((7, 1, 2), np.float32)})
    _json_edit(saved / "timeline.json", lambda m: m["snapshots"][-1].update(step=99))
    with pytest.raises(SaveError, match="step 99"):
        Trainer.from_save("run", "last", saves_dir=tmp_path)


def test_extra_files_are_plain_names_and_bytes(tmp_path):
    p = {"w": np.zeros(2, np.float32)}
    for bad in ("../x", "weights.npz", ".hidden", "a/b", ""):
        with pytest.raises(SaveError, match="plain file name"):
            save_checkpoint("r", "last", p, {}, {}, {}, saves_dir=tmp_path, extra_files={bad: b""})
    with pytest.raises(SaveError, match="not bytes"):
        save_checkpoint("r", "last", p, {}, {}, {}, saves_dir=tmp_path, extra_files={"x.json": "text"})
    assert not (tmp_path / "r" / "last").exists()
    save_checkpoint("r", "last", p, {}, {}, {}, saves_dir=tmp_path, extra_files={"x.json": b"{}"})
    assert (tmp_path / "r" / "last" / "x.json").read_bytes() == b"{}"


# ---- speed limit

def test_set_speed_limit_validates():
    tr = Trainer(load_config("reversal", overrides=REV))
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="steps per second"):
            tr.set_speed_limit(bad)
    tr.set_speed_limit(5)
    assert tr.speed_limit == 5.0
    tr.set_speed_limit(None)
    assert tr.speed_limit is None


def test_speed_limit_events_and_marks():
    tr = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=8"]))
    tr.set_speed_limit(1000.0)
    events = []

    def emit(ev):
        events.append(ev)
        if ev["event"] == "step" and ev["step"] == 4:
            threading.Thread(target=tr.set_speed_limit, args=(None,)).start()
            time.sleep(0.01)  # let the thread run: the change is seen at the next step, whenever it lands
    tr.run(emit)
    lim = [e for e in events if e["event"] == "speed_limit"]
    assert lim[0] == {"event": "speed_limit", "step": 0, "limit": 1000.0}
    assert len(lim) == 2 and lim[1]["limit"] is None and 4 <= lim[1]["step"] <= 8
    assert tr.timeline.marks == [{"step": 0, "kind": "speed_limit", "value": 1000.0},
                                 {"step": lim[1]["step"], "kind": "speed_limit", "value": None}]
    json.dumps(lim)


def test_pacing_waits_and_wakes_on_stop_pause_and_a_new_limit():
    tr = Trainer(load_config("reversal", overrides=REV))
    for wake in (tr.stop, tr.pause, lambda: tr.set_speed_limit(None)):
        tr.rearm()
        tr.set_speed_limit(1e-4)  # one step every 10,000 s
        t = threading.Thread(target=tr._pace, args=(time.monotonic(),))
        t.start()
        t.join(0.2)
        assert t.is_alive()  # it waits
        wake()
        t.join(10)
        assert not t.is_alive()
    tr.rearm()
    tr.set_speed_limit(1e9)
    tr._pace(time.monotonic())  # a limit already met returns at once


def test_speed_limited_run_stops_promptly():
    tr = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=1000"]))
    tr.set_speed_limit(0.001)
    seen = []

    def emit(ev):
        seen.append(ev["event"])
        if ev["event"] == "step":
            threading.Thread(target=tr.stop).start()
    th = threading.Thread(target=tr.run, args=(emit,))
    th.start()
    th.join(30)
    assert not th.is_alive() and tr.step_count == 1


# ---- CLI

def test_cli_json_train_prints_snapshots_without_maps(capsys):
    assert main(["train", "reversal", "--json", "--save", "r", "--steps", "3"]) == 0
    evs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    snaps = [e for e in evs if e["event"] == "snapshot"]
    assert [e["step"] for e in snaps] == [0, 1, 2, 3]
    assert "maps" not in snaps[0]["snapshot"] and snaps[-1]["snapshot"]["scores"]["antidiagonal"]


def test_cli_timeline_table_and_json(capsys):
    assert main(["train", "reversal", "--save", "r", "--steps", "6", "--set", "data.n_eval=100"]) == 0
    capsys.readouterr()
    assert main(["timeline", "r"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "7 snapshots" in out[0] and "antidiagonal" in out[2] and "accuracy" in out[2]
    assert [line.split()[0] for line in out[3:]] == [str(s) for s in range(7)]
    assert "L0H" in out[-1]
    assert main(["timeline", "r", "--tag", "best", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["probe"] == "PYTHON" and doc["tag"] == "best"
    assert len(doc["snapshots"][-1]["scores"]["antidiagonal"]) == 1


def test_cli_timeline_errors_are_one_line(capsys, saves):
    assert main(["timeline", "nothing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab: error:") and "nothing" in err and "Traceback" not in err
    assert main(["train", "reversal", "--save", "r", "--steps", "2"]) == 0
    (saves / "r" / "last" / "timeline.json").write_text("{")
    capsys.readouterr()
    assert main(["timeline", "r"]) == 2
    assert "timeline.json" in capsys.readouterr().err


def test_add_stores_float16_maps_and_refuses_a_foreign_shape():
    tl = Timeline("AB", ["A", "B"])
    tl.add(Snapshot(0, 0.0, None, None, None, None, np.full((1, 2, 2, 2), 0.5), {"x": np.zeros((1, 2))}))
    assert tl.snapshots[0].maps.dtype == np.float16 and tl.snapshots[0].scores["x"].dtype == np.float32
    for shape in ((1, 3, 2, 2), (1, 2, 3, 3), (2, 2)):
        with pytest.raises(ValueError, match="expected"):
            tl.add(Snapshot(1, 0.0, None, None, None, None, np.zeros(shape), {}))
    assert tl.steps == [0]


def test_snapshots_compare_by_identity():
    a = Snapshot(0, 0.0, None, None, None, None, np.zeros((1, 1, 2, 2), np.float16))
    b = Snapshot(0, 0.0, None, None, None, None, np.zeros((1, 1, 2, 2), np.float16))
    assert a in [a] and b not in [a]  # no "truth value of an array is ambiguous"


def test_diverging_weights_are_not_recorded_and_warn_nothing():
    tr = Trainer(load_config("reversal", overrides=REV + ["train.lr=1e30", "train.warmup_steps=0"]))
    tr.model.params["h.0.attn.c_attn.w"][...] = 1e30  # attention logits overflow: the maps are NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would reach the user's terminal
        assert tr.record() is None
    assert tr.timeline.snapshots == []


def test_from_save_rereads_when_a_save_is_swapped_in_between(saved, tmp_path, monkeypatch):
    """The checkpoint and its timeline are two reads; a newer save landing between them is seen as a
    timeline past the checkpoint's step, and both are read again."""
    import core.trainer as trainer_mod
    newer = Trainer(load_config("reversal", overrides=REV + ["train.max_steps=9"]))
    newer.run(lambda e: None)
    real = trainer_mod.checkpoint.load_checkpoint
    calls = []

    def load_then_swap(*a, **k):
        ck = real(*a, **k)
        calls.append(ck.meta["step"])
        if len(calls) == 1:
            newer.save("run", "last", saves_dir=tmp_path)  # lands after the checkpoint was read
        return ck
    monkeypatch.setattr(trainer_mod.checkpoint, "load_checkpoint", load_then_swap)
    tr = Trainer.from_save("run", "last", saves_dir=tmp_path)
    assert calls == [6, 9] and tr.step_count == 9 and tr.timeline.steps[-1] == 9
