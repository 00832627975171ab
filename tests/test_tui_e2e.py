"""End to end: the real `attnlab` command in a real terminal (tmux), driven by keys, read from the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def command() -> str:
    exe = Path(sys.executable).with_name("attnlab")
    return str(exe) if exe.exists() else f"{sys.executable} -m tui"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True, timeout=10).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, text: str, timeout: float = 30.0) -> str:
    end = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < end:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{shown}")


@pytest.fixture
def session(tmp_path):
    name = f"attnlab-test-{uuid.uuid4().hex[:8]}"
    env = f"ATTNLAB_SAVES={tmp_path / 'saves'} TERM=xterm-256color"
    tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30", "-c", str(ROOT), f"env {env} {command()}")
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=10)


def test_launch_train_reversal_and_quit(session, tmp_path):
    wait_screen(session, "Reversal")
    wait_screen(session, "Start/resume")  # the footer shows the keys
    tmux("send-keys", "-t", session, "s")
    wait_screen(session, "accuracy")  # the train view with the task metric
    wait_screen(session, "step")
    tmux("send-keys", "-t", session, "3")
    wait_screen(session, "head 1/2")  # the attention map has data
    tmux("send-keys", "-t", session, "2")
    tmux("send-keys", "-t", session, "S")
    wait_screen(session, "stopped at step")
    tmux("send-keys", "-t", session, "q")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("attnlab did not exit on q")
    runs = [p.name for p in (tmp_path / "saves").iterdir()]
    assert len(runs) == 1 and (tmp_path / "saves" / runs[0] / "last" / "meta.json").is_file()
