"""Promise 1: a crash never corrupts a save.

A child process trains a 0.12M-parameter reversal model and saves after every step; the test SIGKILLs
it at random moments and at every dangerous point inside save_checkpoint. Afterwards every save on
disk loads, holds exactly the weights of its step, no acknowledged save is lost, and resuming from
the newest continues with bitwise the losses of an uninterrupted run.
"""
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from core.checkpoint import list_runs, load_checkpoint
from core.config import load_config
from core.trainer import Trainer
from tests.fault_helpers import CRASH_OVERRIDES, REPO, child_env, record

STEPS = 6        # steps the child trains (and saves) before it exits on its own
RESUME = 3       # steps trained after resuming, compared bitwise with the reference
SEED = 20240605  # the kill schedule; change it to explore other moments
# exact points inside save_checkpoint (see fault_helpers._install_fault)
POINTS = ["tmp_empty", "weights_half", "optim_half", "meta_half", "before_swap", "between_renames",
          "after_renames", "removing_old"]
N_RANDOM = 8     # kills at a random time after start-up
N_MID_SAVE = 8   # kills at a random delay after the child announces a save


@pytest.fixture(scope="module")
def reference():
    """Losses and flat weights of an uninterrupted in-process run, indexed by step."""
    tr = Trainer(load_config("reversal", overrides=CRASH_OVERRIDES))
    losses, flats = [None], [tr.model.flat.copy()]
    for _ in range(STEPS + RESUME):
        losses.append(tr.step()["loss"])
        flats.append(tr.model.flat.copy())
    return losses, flats, list(tr.model.shapes)


def schedule():
    rng = random.Random(SEED)
    trials = [("point", f"{p}:{rng.randint(2, 6)}") for p in POINTS]
    trials += [("random", rng.uniform(0.0, 0.3)) for _ in range(N_RANDOM)]
    trials += [("mid_save", (rng.randint(1, STEPS), rng.uniform(0.0, 0.02))) for _ in range(N_MID_SAVE)]
    return trials


def run_child(saves, kind, arg):
    """Start the child, kill it as the trial says, and return its stdout lines and whether it was killed."""
    fault = arg if kind == "point" else "none"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fault_helpers.py"), "run", str(STEPS), fault],
                            cwd=REPO, env=child_env(saves), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines = []
    if kind != "point":
        want = "ready" if kind == "random" else f"begin {arg[0]} last"
        delay = arg if kind == "random" else arg[1]
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() in (want, "done"):
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    lines += [ln.strip() for ln in out.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    return lines, proc.returncode == -signal.SIGKILL


def acknowledged(lines):
    """{tag: last step whose save returned} and {tag: step of a save begun but not finished}."""
    done, begun = {}, {}
    for ln in lines:
        parts = ln.split()
        if parts[0] == "saved":
            done[parts[2]] = int(parts[1])
            begun.pop(parts[2], None)
        elif parts[0] == "begin":
            begun[parts[2]] = int(parts[1])
    return done, begun


def test_sigkill_at_random_moments_never_corrupts_a_save(tmp_path, reference):
    ref_losses, ref_flats, names = reference
    figures = {"trials": 0, "killed": 0, "killed_mid_save": 0, "saves_checked": 0, "resumed": 0,
               "acknowledged_saves": 0}
    for i, (kind, arg) in enumerate(schedule()):
        saves = tmp_path / f"t{i}"
        lines, killed = run_child(saves, kind, arg)
        done, begun = acknowledged(lines)
        figures["trials"] += 1
        figures["killed"] += killed
        figures["killed_mid_save"] += killed and bool(begun)
        where = f"trial {i} ({kind} {arg}): {lines[-3:]}"
        runs = list_runs(saves)
        if not done:  # killed before any save finished: nothing was promised
            assert all(r.tags == [] for r in runs), where
            continue
        assert [(r.name, r.error) for r in runs] == [("run", None)], where
        steps = {}
        for tag in runs[0].tags:
            ck = load_checkpoint("run", tag, saves_dir=saves)
            step = ck.meta["step"]
            steps[tag] = step
            # the save holds exactly the weights of its step, and nothing acknowledged was lost
            flat = np.concatenate([ck.params[k].ravel() for k in names])
            np.testing.assert_array_equal(flat, ref_flats[step], err_msg=where)
            assert step >= done.get(tag, 0), where
            assert step in (done.get(tag), begun.get(tag)), where
            figures["saves_checked"] += 1
        assert set(done) <= set(steps), where
        figures["acknowledged_saves"] += len(done)
        newest = max(steps, key=steps.get)
        tr = Trainer.from_save("run", newest, saves_dir=saves)
        k = tr.step_count
        assert [tr.step()["loss"] for _ in range(RESUME)] == ref_losses[k + 1:k + 1 + RESUME], where
        figures["resumed"] += 1
        # the next save clears what the crash left behind
        tr.save("run", newest, saves_dir=saves)
        debris = [p.name for p in (saves / "run").iterdir() if ".tmp-" in p.name or p.name == f".{newest}.old"]
        assert debris == [], where
    # the injected points always kill inside a save (random moments may find the child finished)
    assert figures["killed_mid_save"] >= len(POINTS)
    record("test_fault_crash.py::test_sigkill_at_random_moments_never_corrupts_a_save", **figures)
    print(figures)
