"""The UI survives its workers (issue 5, item 6): a failing sampling worker, and quitting during a save.

(The training worker's failure is tests/test_tui_app.py::test_worker_exception_is_a_notification_and_the_last_save_survives;
quitting mid-training is ::test_quit_during_training_saves_last.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core import checkpoint
from core.checkpoint import list_runs, load_checkpoint
from tests.fault_helpers import record
from tests.test_tui_app import SIZE, record_notes, save_tiny_qa, set_hp, wait_for
from tui.app import AttnLab
from tui.screens.chat import ChatView
from tui.widgets import StatsPanel


@pytest.fixture
def tiny_qa(saves):
    return save_tiny_qa(5)


@pytest.mark.parametrize("where", ["mid-reply", "before the first character"])
async def test_sampling_worker_exception_is_a_notification_and_chat_works_again(tiny_qa, monkeypatch, where):
    import tui.worker
    real = tui.worker.stream_text

    def broken(model, tokenizer, prompt, **kwargs):
        if where == "mid-reply":
            yield ("a", [("a", 1.0)] * kwargs.get("topk", 0)) if kwargs.get("topk") else "a"
        raise RuntimeError("injected sampling fault")
    monkeypatch.setattr("tui.worker.stream_text", broken)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app)
        await pilot.pause()
        app.load_for_chat("tinyqa", "best")
        chat = app.query_one(ChatView)
        await wait_for(pilot, lambda: app.focused is chat.pane.input, what="chat input focus")
        app.query_one("#sample-max_new_tokens").value = "15"
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: any(sev == "error" for _, sev in notes), what="error notification")
        error = next(m for m, sev in notes if sev == "error")
        assert "sampling failed" in error and "injected sampling fault" in error
        await wait_for(pilot, lambda: not chat.pane.busy, what="the reply to end")
        assert app.is_running and chat.question is None and chat.history == []
        assert any(r == "system" and "injected sampling fault" in t for r, t in chat.pane.transcript())
        assert list(chat.pane.query("ChatTurn"))[-2].note == "failed"  # the broken reply is marked
        # the user can chat again
        monkeypatch.setattr("tui.worker.stream_text", real)
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: chat.history, what="a reply after the failure")
        assert chat.history[0][0] == "hi"
        assert sum(sev == "error" for _, sev in notes) == 1
    record("test_tui_faults::sampling", where=where, faults_injected=1, app_survived=True)


async def test_quitting_during_a_save_loses_nothing(saves, monkeypatch):
    """Quit while a slow 'save now' is being written during training: every save finishes, whole and loadable."""
    real_write, real_save = checkpoint._write_npz, checkpoint.save_checkpoint
    writing, inflight, lock = threading.Event(), [0], threading.Lock()

    def slow_write(path, arrays):  # a slow disk: the quit lands in the middle of the save
        writing.set()
        time.sleep(0.3)
        real_write(path, arrays)

    def counted_save(*args, **kwargs):
        with lock:
            inflight[0] += 1
        try:
            return real_save(*args, **kwargs)
        finally:
            with lock:
                inflight[0] -= 1
    monkeypatch.setattr(checkpoint, "_write_npz", slow_write)
    monkeypatch.setattr(checkpoint, "save_checkpoint", counted_save)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        for key, value in (("train.eval_interval", 1000), ("train.max_steps", 5000)):
            set_hp(app, key, value)
        await pilot.pause()
        app.query_one("#task-picker").focus()
        app.action_start()  # calls, not presses, while training: Pilot waits for an idle CPU after a press
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) >= 3, what="steps")
        app.action_save_now()
        await wait_for(pilot, writing.is_set, what="the save to start")
        started = time.monotonic()
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, timeout=8, what="exit")
        quit_s = time.monotonic() - started
        tr, name = app.trainer, app.run_name
    # a save still being written finishes: the process joins its worker threads before it exits
    end = time.monotonic() + 10
    while inflight[0] and time.monotonic() < end:
        time.sleep(0.05)
    assert inflight[0] == 0
    assert quit_s < 5  # the slow disk makes each save take 0.6 s
    runs = list_runs()
    assert [r.name for r in runs] == [name] and runs[0].tags == ["last"]
    ck = load_checkpoint(name, "last")  # whole, loadable, and the final state: nothing lost
    assert ck.meta["step"] == tr.step_count
    for key, value in tr.model.params.items():
        np.testing.assert_array_equal(ck.params[key], value, err_msg=key)
    assert not [p for p in (saves / name).iterdir() if p.name.startswith(".")]  # no temporary left behind
    record("test_tui_faults::quit_during_save", quit_s=round(quit_s, 2), final_step=tr.step_count,
           bytes_lost=0)


@pytest.mark.parametrize("every", [0.0, None])
def test_the_dashboard_saves_last_at_evaluations_so_a_killed_app_loses_little(saves, every):
    """The training worker's pump saves `last` at an evaluation at most once a minute (every one here with
    a period of 0), so killing the app outright (no quit, no final save) keeps a recent state."""
    from core.checkpoint import Autosave
    from core.config import load_config
    from tui.worker import EventPump, GuardedTrainer
    tr = GuardedTrainer(load_config("reversal", overrides=["train.eval_interval=10"]))
    posted = []
    pump = EventPump(tr, posted.append, lambda: False, run_name="k")
    if every is not None:
        pump.autosave = Autosave(every)
    tr.run(pump, max_steps=20)  # the training alone: train_job's save at the end never happens
    tags = list_runs()[0].tags if list_runs() else []
    if every is None:  # a run of a second or two: nothing due yet
        assert "last" not in tags
    else:
        assert load_checkpoint("k", "last").meta["step"] == 20


def test_the_end_of_a_dashboard_run_does_not_save_last_twice(saves, monkeypatch):
    """When the final evaluation's autosave already holds the end state, train_job reports it and does not
    write it again."""
    from core.checkpoint import Autosave
    from core.config import load_config
    from tui.messages import TrainDone
    from tui.worker import EventPump, GuardedTrainer, train_job
    tr = GuardedTrainer(load_config("reversal", overrides=["train.eval_interval=10"]))
    lasts = []
    real = GuardedTrainer.save

    def counted(self, name, tag):
        if tag == "last":
            lasts.append(self.step_count)
        return real(self, name, tag)
    monkeypatch.setattr(GuardedTrainer, "save", counted)
    posted = []
    pump = EventPump(tr, posted.append, lambda: False, run_name="e")
    pump.autosave = Autosave(0.0)
    train_job(pump, max_steps=20)
    assert lasts == [10, 20]
    [done] = [m for m in posted if isinstance(m, TrainDone)]
    assert done.saved == "last" and load_checkpoint("e", "last").meta["step"] == 20
