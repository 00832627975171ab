"""Shared pieces of the fault suite: running the CLI in a subprocess, a crash-test child, figures.

Run as a script (`python tests/fault_helpers.py NAME STEPS FAULT`) it is the child process that
test_fault_crash.py kills: it trains a small reversal model and saves after every step.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES_ENV = "ATTNLAB_FAULT_FIGURES"  # a path: each test appends {"test", figures...} as a JSON line

# a reversal model big enough (0.12M parameters, ~1.4 MB per save) that a save takes a while to write
CRASH_OVERRIDES = ["model.n_embd=96", "model.n_layer=1", "model.n_head=4", "train.batch_size=16",
                   "data.n_eval=10"]
# a small reversal run for saves the weights/paths tests damage
TINY_REVERSAL = ["data.n_eval=20", "train.eval_interval=2"]


def record(test, **figures):
    """Append this test's figures (trials, inputs tried, ...) to $ATTNLAB_FAULT_FIGURES, if set."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, **figures}) + "\n")


def child_env(saves):
    env = {**os.environ, "ATTNLAB_SAVES": str(saves), "PYTHONPATH": str(REPO),
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop(FIGURES_ENV, None)
    return env


def cli_start(args, saves, stdin=None):
    """Start `python -m tui ARGS` with ATTNLAB_SAVES=saves; returns the Popen."""
    return subprocess.Popen([sys.executable, "-m", "tui", *args], cwd=REPO, env=child_env(saves),
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def cli_finish(proc, stdin=None, timeout=120):
    """(returncode, stdout bytes, stderr text) of a process from cli_start."""
    out, err = proc.communicate(stdin, timeout=timeout)
    return proc.returncode, out, err.decode("utf-8", "replace")


def cli(args, saves, stdin=None, timeout=120):
    return cli_finish(cli_start(args, saves, stdin), stdin, timeout)


def cli_many(jobs, width=4, timeout=120):
    """Run CLI invocations `width` at a time: jobs = [(args, saves, stdin)] -> [(rc, out, err)]."""
    results = []
    for start in range(0, len(jobs), width):
        procs = [(cli_start(a, s, i), i) for a, s, i in jobs[start:start + width]]
        results += [cli_finish(p, i, timeout) for p, i in procs]
    return results


def cli_inproc(args, saves, monkeypatch, capsys, stdin=""):
    """tui.cli.main(args) in this process (same code path as the command, minus start-up cost)."""
    import io
    from tui.cli import main
    monkeypatch.setenv("ATTNLAB_SAVES", str(saves))
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out.encode("utf-8", "surrogateescape"), err


def assert_one_error_line(rc, err, *words):
    """Exit status 2, one `attnlab: error:` line on stderr naming every word, and no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("attnlab: error:")]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0], err
    for w in words:
        assert w.lower() in errors[0].lower(), (w, errors[0])
    assert "\x1b" not in err
    return errors[0]


# ---- the crash-test child

def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _install_fault(fault):
    """Arrange for SIGKILL at one exact point inside the n-th save_checkpoint call (fault 'point:n')."""
    if fault == "none":
        return
    from core import checkpoint as ck
    point, n = fault.split(":")
    n = int(n)
    calls = {"save": 0, "npz": 0, "replace": 0}
    real_save, real_npz, real_file = ck.save_checkpoint, ck._write_npz, ck._write_file
    real_swap, real_replace, real_remove = ck._swap, os.replace, ck._remove

    def armed():
        return calls["save"] == n

    def save(*a, **k):
        calls["save"] += 1
        calls["npz"] = calls["replace"] = 0
        return real_save(*a, **k)

    def half_written(path, data):  # the kernel got half the bytes when the process died
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        _die()

    def write_npz(path, arrays):
        calls["npz"] += 1
        if armed() and point == "tmp_empty":
            _die()
        if armed() and (point, calls["npz"]) in (("weights_half", 1), ("optim_half", 2)):
            import io
            import numpy as np
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            half_written(path, buf.getvalue())
        return real_npz(path, arrays)

    def write_file(path, data):
        if armed() and point == "meta_half" and Path(path).name == ck.META:
            half_written(path, data)
        return real_file(path, data)

    def swap(*a):
        if armed() and point == "before_swap":
            _die()
        return real_swap(*a)

    def replace(src, dst):
        real_replace(src, dst)
        calls["replace"] += 1
        if armed() and (point, calls["replace"]) in (("between_renames", 1), ("after_renames", 2)):
            _die()

    def remove(path):
        if armed() and point == "removing_old" and Path(path).name.endswith(".old"):
            files = sorted(Path(path).iterdir())
            files[0].unlink()  # rmtree got one file in
            _die()
        return real_remove(path)

    ck.save_checkpoint, ck._write_npz, ck._write_file = save, write_npz, write_file
    ck._swap, ck._remove = swap, remove
    os.replace = replace


def child_main(name, steps, fault):
    """Train and save every step ('best' too on every third), printing 'begin'/'saved' lines."""
    from core.config import load_config
    from core.trainer import Trainer
    _install_fault(fault)
    tr = Trainer(load_config("reversal", overrides=CRASH_OVERRIDES))
    print("ready", flush=True)
    for i in range(1, steps + 1):
        tr.step()
        for tag in (("best", "last") if i % 3 == 0 else ("last",)):
            print(f"begin {i} {tag}", flush=True)
            tr.save(name, tag)
            print(f"saved {i} {tag}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    child_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
