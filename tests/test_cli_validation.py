"""Command-line input is validated where it is read: one line naming the flag (or the command a user
can type), exit status 2, nothing trained or written; `attnlab runs | head` ends quietly."""

import os
import subprocess
import sys
import threading

import pytest

from tests.fault_helpers import REPO, child_env
from tui.cli import main

TINY_QA = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
           "--set", "data.n_eval=2", "--set", "train.batch_size=4"]


def one_line_error(capsys, *words):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("attnlab: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "Warning" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize("args, words", [
    (["--steps", "0"], ["--steps 0"]),
    (["--steps", "-5"], ["--steps -5"]),
    (["--until", "foo>=1"], ["--until", "foo", "accuracy"]),
    (["--until", "accuracy>=.."], ["--until", ".."]),
    (["--until", "accuracy>=nan"], ["--until", "nan"]),
])
def test_train_flags_are_refused_naming_the_flag(capsys, saves, args, words):
    assert main(["train", "reversal", "--save", "r", *args]) == 2
    one_line_error(capsys, *words)
    assert not (saves / "r").exists()


@pytest.fixture
def tiny_qa(capsys, saves):
    assert main(["train", "qa", "--save", "q", "--steps", "1", *TINY_QA]) == 0
    capsys.readouterr()
    return "q"


@pytest.mark.parametrize("flag, value", [("--temperature", "nan"), ("--temperature", "-1"),
                                         ("--temperature", "1e-320"), ("--temperature", "inf"),
                                         ("--top-p", "7"), ("--top-p", "0"), ("--top-k", "-3"),
                                         ("--seed", "-1"), ("--max-new", "0")])
def test_sampling_flags_are_refused_naming_the_flag(capsys, tiny_qa, flag, value):
    for command in ("sample", "chat"):
        extra = ["--prompt", "Q: hi\nA:"] if command == "sample" else []
        assert main([command, tiny_qa, "--tag", "last", *extra, flag, value]) == 2
        one_line_error(capsys, f"{flag} {float(value) if flag == '--temperature' else value}"
                       if flag == "--temperature" else f"{flag} {value}")
        assert capsys.readouterr().out == ""


def test_messages_name_commands_not_functions(capsys, tiny_qa):
    assert main(["eval", "nosuch"]) == 2
    err = one_line_error(capsys, "`attnlab runs`")
    assert "list_runs" not in err
    assert main(["sample", tiny_qa, "--tag", "last", "--prompt", "Q: \u263a\nA:"]) == 2
    err = one_line_error(capsys, "--prompt", "\u263a")
    assert "unknown=" not in err


def test_config_from_a_pipe_is_read(capsys, saves, tmp_path):
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as f:
            f.write("train:\n  max_steps: 2\n  eval_interval: 1\n")
    threading.Thread(target=write, daemon=True).start()
    assert main(["train", "reversal", "--save", "p", "--json", "--config", str(fifo),
                 "--set", "data.n_eval=4"]) == 0
    assert '"steps": 2' in capsys.readouterr().out


def test_runs_into_a_closed_pipe_is_quiet(saves):
    for i in range(1500):  # more lines than a pipe buffers, so the writer meets the closed pipe
        (saves / f"run-{i:04d}").mkdir(parents=True)
    p = subprocess.Popen(f"'{sys.executable}' -m tui runs | head -3", shell=True, cwd=REPO,
                         env=child_env(saves), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=120)
    assert len(out.splitlines()) == 3 and err == b"", err.decode()
