"""The dashboard keeps the run promises too: a taken name is never overwritten (a free one is used),
a run locked by another process is refused with its pid, and SIGTERM/SIGHUP save `last` like quitting."""

import os
import signal
import threading

import pytest
from textual.widgets import Input

from core.runs import list_runs
from tests.test_runs import TINY, hold_lock, tree
from tests.test_tui_app import SIZE, record_notes, wait_for
from tui.app import AttnLab
from tui.screens import saves as saves_screen
from tui.cli import main
from tui.widgets import StatsPanel


async def test_a_taken_name_is_not_overwritten_a_free_one_is_used(saves):
    assert main(["train", "reversal", "--save", "taken", "--steps", "3", *TINY]) == 0
    before = tree(saves / "taken")
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app)
        app.query_one("#run-name", Input).value = "taken"
        await pilot.press("s")
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) >= 2, what="steps")
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="stop")
        assert app.run_name == "taken-2"
        assert any("saves/taken exists" in n and "taken-2" in n for n, _ in notes)
    assert tree(saves / "taken") == before
    assert {r.name for r in list_runs()} == {"taken", "taken-2"}


async def test_resuming_a_run_another_process_writes_is_refused_with_its_pid(saves):
    assert main(["train", "reversal", "--save", "busy", "--steps", "3", *TINY]) == 0
    holder = hold_lock("busy", saves)
    try:
        app = AttnLab()
        async with app.run_test(size=SIZE) as pilot:
            notes = record_notes(app)
            await pilot.press("5")
            await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="saves list")
            await pilot.press("r")
            await wait_for(pilot, lambda: any("in use by pid" in n for n, _ in notes), what="refusal")
            assert any(f"pid {holder.pid}" in n for n, _ in notes) and app.trainer is None
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
async def test_sigterm_and_sighup_save_last_and_exit(saves, sig):
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#run-name", Input).value = "term"
        await pilot.press("s")
        await wait_for(pilot, lambda: app.query_one(StatsPanel).stats.get("step", 0) >= 3, what="steps")
        os.kill(os.getpid(), sig)
        await wait_for(pilot, lambda: not app.is_running, timeout=10, what="exit")
    [run] = list_runs()
    assert run.name == "term" and "last" in run.tags and run.step >= 3
    assert not (saves / "term" / ".lock").exists()


async def test_no_file_is_read_on_the_ui_thread(saves, monkeypatch):
    """Starting (corpus), resuming (save) and loading to chat (save) all read in thread workers."""
    import threading

    import tui.app
    from core import checkpoint
    assert main(["train", "qa", "--save", "q", "--steps", "1", "--set", "model.n_layer=1",
                 "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set", "data.n_eval=2",
                 "--set", "train.batch_size=4"]) == 0
    readers = []
    load, build = checkpoint.load_checkpoint, tui.app.GuardedTrainer.__init__

    def spy_load(*args, **kwargs):
        readers.append(("load", threading.current_thread() is threading.main_thread()))
        return load(*args, **kwargs)

    def spy_build(self, *args, **kwargs):
        readers.append(("build", threading.current_thread() is threading.main_thread()))
        return build(self, *args, **kwargs)
    monkeypatch.setattr(checkpoint, "load_checkpoint", spy_load)
    monkeypatch.setattr(tui.app.GuardedTrainer, "__init__", spy_build)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")  # a new run: the reversal preset
        await wait_for(pilot, lambda: app.training, what="training")
        await pilot.press("S")
        await wait_for(pilot, lambda: not app.training, what="stop")
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="saves list")
        pane = app.query_one("#saves-pane")
        pane.query_one("DataTable").move_cursor(row=[r.name for r in pane.runs].index("q"))
        await pilot.press("c")
        await wait_for(pilot, lambda: app.loaded is not None, what="loaded for chat")
    kinds = {k for k, _ in readers}
    assert kinds == {"load", "build"} and not any(on_ui for _, on_ui in readers), readers


async def test_the_saves_table_fits_80_columns_and_widens_again(saves):
    """Default names are 24 characters: at 80 columns the best metric and the date take their short forms."""
    for name in ("reversal-20261202-144612", "dialogue-20261202-150001"):
        assert main(["train", "reversal", "--save", name, "--steps", "3", *TINY]) == 0
    app = AttnLab()
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_tab("saves")
        pane = app.query_one("#saves-pane")
        await wait_for(pilot, lambda: pane.runs, what="saves list")
        table = pane.query_one("#runs-table")
        await pilot.pause()
        assert table.virtual_size.width <= table.size.width
        row = table.get_row_at(0)
        assert "(val" not in row[4] and row[5].count("-") == 1  # "0.812", "12-02 14:46"
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, lambda: "(val" in table.get_row_at(0)[4], what="long forms")
        assert table.get_row_at(0)[5].count("-") == 2 and table.virtual_size.width <= table.size.width
        for i, column in enumerate(table.ordered_columns):  # every cell shown whole
            assert column.get_render_width(table) - 2 >= max(len(table.get_row_at(r)[i]) for r in range(2))


async def test_quitting_while_the_saves_list_is_read_raises_nothing(saves, monkeypatch):
    """The listing worker finishes after the app began to quit (CI caught its callback finding no table)."""
    (saves / "x").mkdir(parents=True)  # not empty: the list is read in a worker
    release = threading.Event()

    def slow_list_runs():
        release.wait(10)
        return []
    monkeypatch.setattr(saves_screen, "list_runs", slow_list_runs)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one("#saves-pane")
        await pane.query_one("#runs-table").remove()  # as at quit: the children go before the pane
        release.set()
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers), what="the listing worker")
        await pilot.pause(0.2)
        assert app.is_running and pane.runs == []
    # run_test re-raises a worker's or a handler's failure on leaving: none came


async def test_quitting_while_a_run_starts_starts_nothing(saves, monkeypatch):
    """q while the corpus is read: the trainer built after it is dropped, never trained nor saved."""
    import tui.app_train
    release = threading.Event()
    build = tui.app_train.GuardedTrainer.__init__

    def slow_build(self, *args, **kwargs):
        release.wait(10)
        build(self, *args, **kwargs)
    monkeypatch.setattr(tui.app_train.GuardedTrainer, "__init__", slow_build)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#run-name", Input).value = "late"
        await pilot.press("s")
        await wait_for(pilot, lambda: app.starting, what="starting")
        await pilot.press("q")
        release.set()
    assert app.train_worker is None and app.trainer is None
    assert list_runs() == [] and not (saves / "late" / "last").exists()


async def test_a_save_read_as_the_app_quits_is_dropped_never_a_crash(saves, monkeypatch):
    """The load worker finishes after the app's panes are gone (as at quit): nothing runs, nothing raises."""
    from tui import app_saves
    assert main(["train", "reversal", "--save", "r", "--steps", "3", *TINY]) == 0
    release = threading.Event()
    load = app_saves.load_model

    def slow_load(*args, **kwargs):
        release.wait(10)
        return load(*args, **kwargs)
    monkeypatch.setattr(app_saves, "load_model", slow_load)
    app = AttnLab()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await wait_for(pilot, lambda: app.query_one("#saves-pane").runs, what="saves list")
        await pilot.press("c")
        await wait_for(pilot, lambda: any(w.is_running and w.group == "load" for w in app.workers), what="load")
        await app.query_one("#attention-pane").remove()  # as at quit: the panes go before the app
        release.set()
        await wait_for(pilot, lambda: not any(w.group == "load" and w.is_running for w in app.workers),
                       what="the load worker")
        await pilot.pause(0.2)
        assert app.is_running and app.loaded is None
    # run_test re-raises a worker's or a handler's failure on leaving: none came
