"""The run registry (core/runs.py): an existing run is never replaced by accident, a run has one writer
at a time (an advisory lock, stale locks from dead pids taken over), and a load never mixes two saves.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from core.checkpoint import load_checkpoint, save_checkpoint
from core.runs import RunInUse, lock_run, list_runs
from tests.fault_helpers import REPO, child_env, cli_start, record
from tui.cli import main

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
        "--set", "data.n_eval=10", "--set", "train.eval_interval=5"]
HOLD = ("import sys, time; from core.runs import lock_run; lock_run(sys.argv[1]); print('held', flush=True); "
        "time.sleep(60)")


def hold_lock(name, saves):
    """A child process that holds saves/NAME's lock until killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, name], cwd=REPO, env=child_env(saves),
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def tree(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_save_over_an_existing_run_is_refused_and_nothing_is_touched(capsys, saves):
    assert main(["train", "reversal", "--save", "r", "--steps", "5", *TINY]) == 0
    before = tree(saves / "r")
    meta = json.loads((saves / "r" / "last" / "meta.json").read_text())
    capsys.readouterr()
    assert main(["train", "qa", "--save", "r", "--steps", "1", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    acc = meta["best"][0]
    assert err == (f"attnlab: error: saves/r exists (reversal, step 5, best accuracy {acc:.4g}): use "
                   f"--resume r to continue it, --overwrite to replace it, or another name")
    assert tree(saves / "r") == before


def test_overwrite_replaces_the_run(capsys, saves):
    assert main(["train", "reversal", "--save", "r", "--steps", "5", *TINY]) == 0
    assert main(["train", "qa", "--save", "r", "--steps", "2", "--overwrite", *TINY,
                 "--set", "train.batch_size=2"]) == 0
    [run] = list_runs()
    assert (run.name, run.task, run.step) == ("r", "qa", 2) and not (saves / "r" / ".lock").exists()


def test_resume_with_another_task_names_both(capsys, saves):
    assert main(["train", "reversal", "--save", "r", "--steps", "3", *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "qa", "--resume", "r", "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "reversal" in err and "qa" in err and "--resume r" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("how", ["save", "resume"])
def test_a_second_writer_is_refused_at_once_naming_the_pid(capsys, saves, how):
    if how == "resume":
        assert main(["train", "reversal", "--save", "r", "--steps", "3", *TINY]) == 0
    holder = hold_lock("r", saves)
    try:
        capsys.readouterr()
        args = ["--save", "r", "--overwrite"] if how == "save" else ["--resume", "r"]
        assert main(["train", "reversal", *args, "--steps", "6", *TINY]) == 2
        err = capsys.readouterr().err
        assert f"in use by pid {holder.pid}" in err and "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its stale lock is taken over
    assert main(["train", "reversal", "--save", "r", "--overwrite", "--steps", "2", *TINY]) == 0


def test_stale_lock_file_of_a_dead_pid_is_taken_over(saves):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (saves / "r").mkdir(parents=True)
    (saves / "r" / ".lock").write_text(f"{dead.pid}\n")
    assert main(["train", "reversal", "--save", "r", "--steps", "2", *TINY]) == 0
    assert list_runs()[0].step == 2


def test_lock_in_process_refuses_a_second_holder(saves):
    with lock_run("x"):
        with pytest.raises(RunInUse, match=f"in use by pid {os.getpid()}"):
            lock_run("x")
    assert not (saves / "x").exists()  # nothing was saved: no directory is left behind
    lock_run("x").release()


def test_a_refusal_names_the_holder_even_before_it_has_written_its_pid(saves, monkeypatch):
    """The holder locks the file, then writes its pid: a second writer in between waits a moment for
    the pid instead of saying "another process" (seen once in CI with 8 writers on a loaded machine)."""
    import fcntl
    from core import runs
    run = saves / "early"
    run.mkdir(parents=True)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    real_read, reads = runs._read_pid, []

    def read_then_holder_writes(path):  # the first read finds the file empty; the holder writes just after
        pid = real_read(path)
        if not reads:
            os.write(fd, b"4242\n")
        reads.append(pid)
        return pid
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, still empty
        monkeypatch.setattr(runs, "_read_pid", read_then_holder_writes)
        with pytest.raises(RunInUse, match="in use by pid 4242"):
            lock_run("early")
        assert reads[0] is None  # the window was hit, not skipped
    finally:
        os.close(fd)


def test_eight_concurrent_writers_exactly_one_trains(saves):
    """8 processes start `train --save SAME` at once: one trains, 7 are refused before it ends."""
    args = ["train", "reversal", "--save", "same", "--json", "--steps", "100000", *TINY,
            "--set", "train.eval_interval=100000"]
    t0 = time.monotonic()
    procs = [cli_start(args, saves) for _ in range(8)]
    refused, running, waited = [], [], {}
    deadline = time.monotonic() + 120
    while len(refused) < 7 and time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None and p not in refused:
                refused.append(p)
                waited[p.pid] = time.monotonic() - t0
        time.sleep(0.02)
    running = [p for p in procs if p.poll() is None]
    try:
        assert len(refused) == 7 and len(running) == 1, "exactly one writer must keep training"
        for p in refused:
            err = p.stderr.read().decode()
            assert p.returncode == 2 and "saves/same is in use by pid" in err and "Traceback" not in err
        winner = running[0]
        while not winner.stdout.readline().startswith(b'{"event": "step"'):
            pass
        winner.send_signal(2)  # Ctrl+C: it saves `last` and exits
        assert winner.wait(60) == 130
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
            p.wait()
    [run] = list_runs()
    assert run.name == "same" and run.step >= 1 and run.error is None
    assert not (saves / "same" / ".lock").exists()
    record("concurrent_writers", writers=8, trained=1, refused=7,
           slowest_refusal_s=round(max(waited.values()), 2))


WRITER = """
import os
import sys
import numpy as np
from core.checkpoint import save_checkpoint
os.fsync = lambda fd: None  # durability is another test's subject; this one swaps as fast as it can
for k in range(int(sys.argv[1])):
    save_checkpoint("r", "last", {"w": np.full((64, 64), k, np.float32)}, {"t": np.array(k)},
                    {"step": k}, {"train": {"seed": k}}, saves_dir=sys.argv[2])
print("done", flush=True)
"""


def test_a_reader_never_sees_a_mixed_save_during_200_swaps(tmp_path):
    save_checkpoint("r", "last", {"w": np.full((64, 64), -1, np.float32)}, {"t": np.array(-1)},
                    {"step": -1}, {"train": {"seed": -1}}, saves_dir=tmp_path)
    w = subprocess.Popen([sys.executable, "-c", WRITER, "200", str(tmp_path)], cwd=REPO,
                         env=child_env(tmp_path), stdout=subprocess.PIPE)
    loads, seen = 0, set()
    while w.poll() is None:
        ck = load_checkpoint("r", "last", saves_dir=tmp_path)
        k = ck.meta["step"]
        assert ck.config["train"]["seed"] == k and int(ck.opt_state["t"]) == k
        assert (ck.params["w"] == k).all(), f"weights of another save than meta step {k}"
        loads += 1
        seen.add(k)
    assert w.wait() == 0 and w.stdout.read().strip() == b"done"
    assert len(seen) > 1, "the reader must have overlapped the writer"
    record("consistent_reads", swaps=200, loads=loads, saves_seen=len(seen), mixed=0)


def test_delete_is_refused_while_another_process_writes_the_run(saves):
    from core.runs import delete_run
    assert main(["train", "reversal", "--save", "r", "--steps", "2", *TINY]) == 0
    holder = hold_lock("r", saves)
    try:
        with pytest.raises(RunInUse, match=f"pid {holder.pid}"):
            delete_run("r")
        assert (saves / "r" / "last").is_dir()
    finally:
        holder.kill()
        holder.wait()
    delete_run("r")
    assert not (saves / "r").exists()
