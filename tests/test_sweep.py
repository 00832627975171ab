"""`attnlab sweep` on Optuna: worker processes on one SQLite study, pruning, failures, Ctrl+C, --show.

Reversal trials of a few dozen steps keep each sweep to seconds; trial values are not asserted.
"""

import json
import os
import signal
import threading
import time

import pytest

optuna = pytest.importorskip("optuna")

from core import sweep  # noqa: E402
from core.checkpoint import list_runs, load_checkpoint  # noqa: E402
from core.trainer import Trainer  # noqa: E402
from tui.cli import main  # noqa: E402

FAST = ["--set", "train.max_steps=30", "--set", "train.eval_interval=5"]


def run(capsys, *argv):
    rc = main(["sweep", *argv, "--json"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rc, rows, err


def trials(saves, study):
    return sweep.load_existing(study, sweep.default_storage(saves)).get_trials()


def test_param_specs_parse_and_bad_ones_say_why():
    p = sweep.parse_param("train.lr=log(1e-4, 1e-2)", "reversal")
    assert (p.key, p.kind, p.args) == ("train.lr", "log", (1e-4, 1e-2))
    assert sweep.parse_param("model.n_layer=int(1,4)", "reversal").args == (1, 4)
    assert sweep.parse_param("model.pos=cat(learned,rope)", "qa").args == ("learned", "rope")
    for text, says in [("train.lr=1e-3", "KEY=log(LOW,HIGH)"), ("train.lr=log(1e-2,1e-4)", "LOW < HIGH"),
                       ("train.lr=log(0,1)", "LOW > 0"), ("model.n_layer=int(1.5,4)", "integers"),
                       ("model.n_layer=int(0,4)", "model.n_layer = 0 is out of range"),
                       ("train.lrr=log(1e-4,1e-2)", "did you mean 'train.lr'"),
                       ("model.pos=cat(learned,sinus)", "model.pos"), ("train.lr=float(1,)", "empty value")]:
        with pytest.raises(sweep.SweepError, match=says.replace("(", r"\(").replace(")", r"\)")):
            sweep.parse_param(text, "reversal")


def test_six_trials_on_two_workers_then_a_rerun_adds_two(capsys, saves):
    rc, rows, _ = run(capsys, "reversal", "--trials", "6", "--workers", "2", "--study", "rev", *FAST,
                      "--param", "train.lr=log(3e-3,3e-2)", "--param", "model.n_head=cat(1,2)")
    assert rc == 0
    done = rows[-1]
    assert done["event"] == "done" and done["trials"] == 6 and done["best"] is not None
    numbers = sorted(r["number"] for r in rows[:-1])
    assert numbers == list(range(6))  # six distinct trials: none lost, none run twice
    stored = trials(saves, "rev")
    assert [t.number for t in stored] == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in stored)
    assert len({t.user_attrs["worker"] for t in stored}) == 2  # both workers took trials
    for t in stored:  # every trial is an ordinary save holding its parameters in its config
        ck = load_checkpoint(f"rev-trial-{t.number}", "last")
        assert ck.config["train"]["lr"] == pytest.approx(t.params["train.lr"])
        assert ck.config["model"]["n_head"] == int(t.params["model.n_head"])
        assert ck.meta["step"] == 30
    Trainer.from_save("rev-trial-0", "best").evaluate()  # what `attnlab eval` does
    rc, rows, _ = run(capsys, "reversal", "--trials", "2", "--workers", "2", "--study", "rev", *FAST,
                      "--param", "train.lr=log(3e-3,3e-2)", "--param", "model.n_head=cat(1,2)")
    assert rc == 0 and sorted(r["number"] for r in rows[:-1]) == [6, 7]
    assert len(trials(saves, "rev")) == 8
    assert {r.name for r in list_runs()} == {f"rev-trial-{k}" for k in range(8)}
    rc = main(["sweep", "--show", "rev"])
    shown = capsys.readouterr().out
    assert rc == 0 and "8 complete" in shown and "best trials:" in shown and "train.lr" in shown
    assert "parameter importances" in shown


def test_a_trailing_trial_is_pruned_early(capsys, saves):
    steps = ["--set", "train.max_steps=60", "--set", "train.eval_interval=5", "--study", "pr"]
    rc, rows, _ = run(capsys, "reversal", "--trials", "2", "--workers", "2", *steps, "--set", "train.lr=0.02")
    assert rc == 0 and [r["state"] for r in rows[:-1]] == ["complete", "complete"]
    rc, rows, _ = run(capsys, "reversal", "--trials", "1", "--workers", "1", *steps, "--set", "train.lr=1e-6",
                      "--set", "train.min_lr=0", "--prune")
    row = rows[0]
    assert row["state"] == "pruned" and row["steps"] < 60  # stopped at an evaluation, long before the end
    assert load_checkpoint(row["save"], "last").meta["step"] == row["steps"]
    t = trials(saves, "pr")[2]
    assert t.state.name == "PRUNED" and len(t.intermediate_values) >= 1


def test_a_bad_combination_fails_with_its_reason_and_the_sweep_goes_on(capsys, saves):
    # each value is valid alone; together n_embd 18 does not split into 4 heads
    rc, rows, err = run(capsys, "reversal", "--trials", "2", "--workers", "1", "--study", "bad", *FAST,
                        "--param", "model.n_head=cat(4)", "--param", "model.n_embd=cat(18)")
    assert rc == 0 and [r["state"] for r in rows[:-1]] == ["fail", "fail"]
    assert "not divisible by model.n_head" in rows[0]["reason"]
    assert "Traceback" not in err
    main(["sweep", "--show", "bad"])
    assert "failed: " in capsys.readouterr().out


def _watch(saves, study, pick, act, stop):
    """In a thread: poll the study until pick(trials) returns something, then act on it once."""
    while not stop.is_set():
        time.sleep(0.05)
        try:
            found = pick(trials(saves, study))
        except (KeyError, ValueError, sweep.SweepError, optuna.exceptions.StorageInternalError):  # not created yet
            found = None
        if found is not None:
            act(found)
            return


def _sweep_with(saves, study, pick, act, n, workers, max_steps):
    spec = sweep.Spec(task="reversal", study=study, storage=sweep.default_storage(saves),
                      sets=(f"train.max_steps={max_steps}", "train.eval_interval=10"), metric="accuracy",
                      trials=n, workers=workers, saves=str(saves))
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(saves, study, pick, act, stop), daemon=True)
    watcher.start()
    try:
        return sweep.run_sweep(spec)
    finally:
        stop.set()
        watcher.join()


def test_a_killed_worker_fails_its_trial_and_the_other_goes_on(saves):
    killed = []

    def running(ts):
        return next((t for t in ts if t.state.name == "RUNNING" and "worker" in t.user_attrs), None)

    def kill(t):
        killed.append(t.number)
        os.kill(int(t.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)

    done = _sweep_with(saves, "kill", running, kill, n=3, workers=2, max_steps=150)
    assert done["trials"] == 3 and len(killed) == 1
    states = {t.number: t for t in trials(saves, "kill")}
    assert len(states) == 3
    dead = states[killed[0]]
    assert dead.state.name == "FAIL" and "killed by signal 9" in dead.user_attrs["fail_reason"]
    assert all(t.state.name == "COMPLETE" for n, t in states.items() if n != killed[0])


def test_ctrl_c_stops_cleanly_and_keeps_finished_trials(saves):
    def one_complete(ts):
        return True if any(t.state.name == "COMPLETE" for t in ts) else None

    done = _sweep_with(saves, "int", one_complete, lambda _: os.kill(os.getpid(), signal.SIGINT),
                       n=50, workers=2, max_steps=100)
    assert done["interrupted"] and done["trials"] < 50
    ts = trials(saves, "int")
    assert not [t for t in ts if t.state.name == "RUNNING"]
    for t in ts:
        if t.state.name == "COMPLETE":
            load_checkpoint(t.user_attrs["save"], "last")  # whole
        else:
            assert t.state.name == "FAIL" and "interrupted" in t.user_attrs["fail_reason"]


def test_user_mistakes_are_one_line(capsys, saves):
    for argv, says in [(["reversal", "--param", "train.lr=oops"], "KEY=log(LOW,HIGH)"),
                       (["reversal", "--metric", "answer_exact"], "reversal reports accuracy and val_loss"),
                       (["reversal", "--study", "a/b"], "contains '/'"),
                       (["reversal", "--set", "train.lrr=1"], "did you mean 'train.lr'"),
                       (["--show", "nope"], "no study named 'nope'"),
                       ([], "name a task to sweep")]:
        assert main(["sweep", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (argv, err)


def test_a_trial_never_overwrites_an_existing_save(capsys, saves):
    from core.config import load_config
    tr = Trainer(load_config("reversal", overrides=["train.max_steps=2"]))
    tr.run(lambda ev: None)
    tr.save("old-trial-0", "last")  # left by an earlier study of the same name
    before = load_checkpoint("old-trial-0", "last").meta["created"]
    rc, rows, _ = run(capsys, "reversal", "--trials", "1", "--workers", "1", "--study", "old", *FAST)
    assert rc == 0 and rows[0]["state"] == "fail" and "already holds a run" in rows[0]["reason"]
    assert load_checkpoint("old-trial-0", "last").meta["created"] == before


@pytest.mark.parametrize("race", ["table studies already exists",
                                  "(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num"])
def test_opening_a_new_database_another_process_is_creating_is_retried(monkeypatch, tmp_path, race):
    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):  # the first open loses the race to create the tables
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(race)
        return real(*args, **kwargs)
    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(sweep.time, "sleep", lambda s: None)
    assert sweep.open_storage(f"sqlite:///{tmp_path / 'race.db'}") is not None and len(calls) == 2
