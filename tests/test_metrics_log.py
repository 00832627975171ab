"""core/metrics_log.py and core/compare.py: the per-run metrics history and runs side by side."""

import json

import numpy as np

from core.compare import config_diff, from_events, load_record
from core.config import load_config
from core.metrics_log import FILENAME, LogTail, MetricsLog, parse_lines, plain_event, read_events
from core.trainer import Trainer

REV = ["train.max_steps=12", "train.eval_interval=5"]


def train_logged(name, overrides=REV):
    tr = Trainer(load_config("reversal", overrides=overrides))
    log = MetricsLog(name, tr)
    done = tr.run(log)
    log(done)
    log.close()
    tr.save(name, "last")
    return tr


def test_every_run_writes_metrics_jsonl_one_event_a_line(saves):
    tr = train_logged("a")
    lines = (saves / "a" / FILENAME).read_text().splitlines()
    evs = [json.loads(line) for line in lines]  # every line is a JSON object on its own
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("step") == 12 and kinds.count("eval") == 3  # steps 5, 10, 12
    assert evs[0]["config"]["train"]["max_steps"] == 12 and evs[0]["task"] == "reversal"
    steps = [e for e in evs if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 13))
    assert [round(e["loss"], 6) for e in steps] == [round(p[2], 6) for p in tr.history["train"]]
    assert all(isinstance(e["time"], float) for e in evs)


def test_eval_flushes_step_lines_to_disk(saves):
    tr = Trainer(load_config("reversal", overrides=REV))
    log = MetricsLog("f", tr)
    log(tr.step())
    log(tr.step())
    path = saves / "f" / FILENAME
    before = read_events(path)
    log(tr.evaluate())  # an eval flushes: a reader sees both steps and the eval now, file still open
    after = read_events(path)
    assert [e["event"] for e in after] == ["start", "step", "step", "eval"]
    assert len(before) <= len(after)
    log.close()


def test_plain_event_keeps_scalars_only():
    ev = {"event": "eval", "step": np.int64(5), "val_loss": np.float32(0.5), "accuracy": float("nan"),
          "position_accuracy": [0.1, 0.2], "best": True, "metric": "accuracy"}
    out = plain_event(ev)
    assert out["step"] == 5 and isinstance(out["step"], int) and abs(out["val_loss"] - 0.5) < 1e-7
    assert "accuracy" not in out and "position_accuracy" not in out and out["best"] is True
    json.dumps(out)
    assert plain_event({"event": "attention", "maps": np.zeros(2)}) is None


def test_resume_from_an_older_save_drops_the_overwritten_steps():
    lines = [json.dumps(e) for e in (
        {"event": "start", "step": 0}, {"event": "step", "step": 1, "loss": 3.0},
        {"event": "step", "step": 2, "loss": 2.0}, {"event": "step", "step": 3, "loss": 1.0},
        {"event": "start", "step": 2}, {"event": "step", "step": 3, "loss": 1.5})]
    evs = parse_lines(lines + ["{torn"], [])
    assert [(e["step"], e["loss"]) for e in evs if e["event"] == "step"] == [(1, 3.0), (2, 2.0), (3, 1.5)]


def test_tail_reads_only_what_was_appended(tmp_path):
    path = tmp_path / FILENAME
    tail = LogTail(path)
    assert not tail.poll()  # no file yet: nothing, no error
    path.write_text('{"event": "start", "step": 0}\n{"event": "step", "step": 1, "loss": 2.0}\n{"event": "st')
    assert tail.poll() and len(tail.events) == 2
    with open(path, "a") as fh:
        fh.write('ep", "step": 2, "loss": 1.0}\n')  # the torn line completes
    assert tail.poll() and [e.get("step") for e in tail.events] == [0, 1, 2]
    assert not tail.poll()


def test_compare_records_and_config_diff(saves):
    train_logged("a")
    train_logged("b", REV + ["train.lr=0.01", "model.n_head=4"])
    a, b = load_record("a"), load_record("b")
    assert (a.task, a.steps, a.metric) == ("reversal", 12, "accuracy") and len(a.val) == 3
    assert a.best_val == min(p[2] for p in a.val) and a.wall_s is not None and a.wall_s >= 0
    diff = dict(config_diff([a, b]))
    assert diff == {"model.n_head": [2, 4], "train.lr": [0.02, 0.01]}
    assert config_diff([a, a]) == []


def test_a_run_without_metrics_jsonl_is_read_from_its_save(saves):
    tr = train_logged("old")
    (saves / "old" / FILENAME).unlink()
    r = load_record("old")
    assert r.source == "save" and r.steps == 12 and r.task == "reversal"
    assert [p[0] for p in r.train] == [p[0] for p in tr.history["train"]]


def test_from_events_sums_wall_time_over_sessions():
    evs = [{"event": "start", "step": 0, "time": 100.0}, {"event": "step", "step": 1, "loss": 1.0, "time": 110.0},
           {"event": "start", "step": 1, "time": 500.0}, {"event": "step", "step": 2, "loss": 0.5, "time": 505.0}]
    assert from_events("x", evs).wall_s == 15.0
