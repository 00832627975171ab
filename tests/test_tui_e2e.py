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
# a tmux server of the tests' own: a person's `tmux kill-server` (or their sessions) never meets the tests'
TMUX = ["tmux", "-L", "attnlab-tests"]


def command() -> str:
    exe = Path(sys.executable).with_name("attnlab")
    return str(exe) if exe.exists() else f"{sys.executable} -m tui"


def tmux(*args: str) -> str:
    return subprocess.run([*TMUX, *args], check=True, capture_output=True, text=True, timeout=10).stdout


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
    subprocess.run([*TMUX, "kill-session", "-t", name], capture_output=True, timeout=10)


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
        if subprocess.run([*TMUX, "has-session", "-t", session], capture_output=True).returncode != 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("attnlab did not exit on q")
    runs = [p.name for p in (tmp_path / "saves").iterdir()]
    assert len(runs) == 1 and (tmp_path / "saves" / runs[0] / "last" / "meta.json").is_file()


def press_until(session, key, text, tries=3):
    """Send a key until `text` shows (a key landing mid-redraw on a loaded machine is sent again)."""
    for _ in range(tries):
        tmux("send-keys", "-t", session, key)
        try:
            return wait_screen(session, text, timeout=8)
        except AssertionError:
            continue
    return wait_screen(session, text, timeout=1)


def quit_and_wait(session):
    """q quits; pressed again if the first press landed while focus was still moving (a loaded machine)."""
    for _ in range(3):
        time.sleep(0.5)  # an Esc followed at once by q would read as alt+q
        tmux("send-keys", "-t", session, "q")
        end = time.monotonic() + 8
        while time.monotonic() < end:
            if subprocess.run([*TMUX, "has-session", "-t", session], capture_output=True).returncode != 0:
                return
            time.sleep(0.2)
    raise AssertionError(f"attnlab did not exit on q; the screen was:\n{screen(session)}")


def test_digits_after_typing_in_chat_switch_tabs(session):
    wait_screen(session, "Start/resume")
    press_until(session, "4", "ask the model")
    tmux("send-keys", "-t", session, "-l", "what is 3 plus 4")  # digits are text while typing
    wait_screen(session, "what is 3 plus 4")
    wait_screen(session, "esc Leave field")  # the footer says how to get out
    time.sleep(0.3)
    tmux("send-keys", "-t", session, "Escape")
    time.sleep(0.5)  # an Esc followed at once by 2 would read as one key
    press_until(session, "2", "idle — press s")  # the Train tab
    press_until(session, "4", "Regenerate")
    tmux("send-keys", "-t", session, "-l", "x")
    press_until(session, "F5", "no saves yet")  # a function key switches tabs even from inside the field
    press_until(session, "4", "Regenerate")
    press_until(session, "F2", "idle — press s")
    quit_and_wait(session)


@pytest.fixture
def two_saves(tmp_path):
    env = {**__import__("os").environ, "ATTNLAB_SAVES": str(tmp_path / "saves")}
    for name, lr in (("first", "0.02"), ("second", "0.01")):
        subprocess.run([sys.executable, "-m", "tui", "train", "reversal", "--save", name, "--steps", "15",
                        "--set", f"train.lr={lr}"], cwd=ROOT, env=env, check=True, capture_output=True,
                       timeout=120)


def test_compare_two_saves(two_saves, session):
    wait_screen(session, "Start/resume")
    tmux("send-keys", "-t", session, "5")
    wait_screen(session, "2 saved run(s)")
    tmux("send-keys", "-t", session, "m", "Down", "m")
    wait_screen(session, "marked 2")
    tmux("send-keys", "-t", session, "v")
    wait_screen(session, "comparing 2 runs")
    shown = wait_screen(session, "train.lr")  # the table can land a frame after the status line
    assert "first" in shown and "second" in shown
    tmux("send-keys", "-t", session, "Escape")  # ends the comparison
    end = time.monotonic() + 10
    while "comparing 2 runs" in screen(session) and time.monotonic() < end:
        time.sleep(0.2)
    assert "comparing 2 runs" not in screen(session)
    quit_and_wait(session)
