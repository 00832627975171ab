import threading

import numpy as np
import pytest

from core.config import load_config
from core.trainer import Trainer, TrainingDiverged, load_model

TINY_LM = ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32", "train.batch_size=4",
           "data.n_eval=3", "train.eval_interval=5", "model.dropout=0.1", "train.max_steps=12"]


@pytest.mark.parametrize("task,extra", [("reversal", []), ("qa", []), ("dialogue", []),
                                        ("chat", ["model.smear=true"])])
def test_resume_gives_bitwise_identical_losses(task, extra, tmp_path):
    ov = TINY_LM if task != "reversal" else ["train.max_steps=12", "train.eval_interval=5", "data.n_eval=50"]
    cfg = load_config(task, overrides=ov + extra)
    straight = Trainer(cfg)
    a = [straight.step()["loss"] for _ in range(10)]
    first = Trainer(cfg)
    b = [first.step()["loss"] for _ in range(4)]
    first.save("run", saves_dir=tmp_path)
    again = Trainer.from_save("run", saves_dir=tmp_path)
    assert again.step_count == 4
    b += [again.step()["loss"] for _ in range(6)]
    assert a == b  # bitwise: same floats, not merely close
    np.testing.assert_array_equal(straight.model.flat, again.model.flat)


def test_resuming_with_another_seed_branches_the_run(tmp_path):
    from core.config import apply_overrides
    cfg = load_config("qa", overrides=TINY_LM)
    first = Trainer(cfg)
    for _ in range(3):
        first.step()
    first.save("run", saves_dir=tmp_path)
    same = Trainer.from_save("run", saves_dir=tmp_path)
    branch = Trainer.from_save("run", saves_dir=tmp_path, overrides=lambda c: apply_overrides(c, {"train.seed": 7}))
    twin = Trainer.from_save("run", saves_dir=tmp_path, overrides=lambda c: apply_overrides(c, {"train.seed": 7}))
    np.testing.assert_array_equal(branch.model.flat, same.model.flat)  # the same weights to start from
    assert branch.step_count == 3 and branch.cfg.train.seed == 7
    base, other, again = ([tr.step()["loss"] for _ in range(3)] for tr in (same, branch, twin))
    assert other != base  # batches drawn afresh from seed 7 ...
    assert other == again  # ... and reproducibly
    branch.save("branch", saves_dir=tmp_path)  # a branch resumes bitwise like any run
    resumed = Trainer.from_save("branch", saves_dir=tmp_path)
    assert [resumed.step()["loss"] for _ in range(2)] == [twin.step()["loss"] for _ in range(2)]


def test_reversal_reaches_99_percent_and_attention_is_antidiagonal():
    cfg = load_config("reversal", overrides=["data.n_eval=500"])
    tr = Trainer(cfg)
    done = tr.run(lambda e: None, until=lambda e: e["accuracy"] >= 0.99)
    assert done["reason"] == "target reached"
    assert tr.last_eval["accuracy"] >= 0.99
    assert tr.last_eval["antidiagonal_best"] > 0.9
    ev = tr.attention_probe("PYTHON")
    assert ev["labels"] == list("PYTHON") and ev["maps"].shape == (1, 2, 6, 6)
    best = tr.last_eval["antidiagonal_best_head"]
    m = ev["maps"][best[0], best[1]]
    assert np.all(m.argmax(axis=1) == np.arange(6)[::-1])


def test_run_emits_events_and_stops_from_another_thread():
    cfg = load_config("reversal", overrides=["train.max_steps=100000", "train.eval_interval=50"])
    tr = Trainer(cfg)
    seen = []

    def emit(e):
        seen.append(e["event"])
        if len(seen) == 20:
            threading.Thread(target=tr.stop).start()
    done = tr.run(emit, attention_every=10)
    assert done["reason"] == "stopped" and done["steps"] < 1000
    assert "step" in seen and "attention" in seen


def test_pause_blocks_until_resume():
    cfg = load_config("reversal", overrides=["train.max_steps=100000"])
    tr = Trainer(cfg)
    tr.pause()
    th = threading.Thread(target=tr.run, args=(lambda e: None,))
    th.start()
    th.join(0.3)
    assert th.is_alive() and tr.step_count == 0 and tr.is_paused
    tr.stop()
    th.join(2)
    assert not th.is_alive()


def test_absurd_learning_rate_is_caught_before_the_update(tmp_path):
    cfg = load_config("reversal", overrides=["train.lr=1e30", "train.warmup_steps=0", "train.grad_clip=0"])
    tr = Trainer(cfg)
    with pytest.raises(TrainingDiverged, match="learning rate"):
        for _ in range(50):
            before = tr.model.flat.copy()
            tr.step()
    assert np.isfinite(tr.model.flat).all()
    np.testing.assert_array_equal(tr.model.flat, before)


def test_evaluate_tracks_best_and_saves_load_for_inference(tmp_path):
    cfg = load_config("qa", overrides=TINY_LM)
    tr = Trainer(cfg)
    first = tr.evaluate()
    assert first["best"] and set(first) >= {"val_loss", "train_loss", "answer_exact", "answer_by_level"}
    for _ in range(3):
        tr.step()
    tr.save("qa", "best", saves_dir=tmp_path)
    model, tok, cfg2, meta = load_model("qa", "best", saves_dir=tmp_path)
    assert meta["step"] == 3 and tok.chars == tr.task.tokenizer.chars
    np.testing.assert_array_equal(model.flat, tr.model.flat)
    ans = tr.task.answer(model, [], "What is 2 plus 3?")
    assert isinstance(ans, str)


def test_step_reports_epoch_for_corpus_tasks_only():
    qa = Trainer(load_config("qa", overrides=TINY_LM))
    ev = [qa.step() for _ in range(3)][-1]
    assert ev["epoch"] == pytest.approx(3 * 4 * 32 / len(qa.task.train_ids))
    assert Trainer(load_config("reversal")).step()["epoch"] is None


def test_warm_restart_schedule_and_adding_it_to_a_finished_run(tmp_path):
    """train.restart_at: the first cosine ends there, a second runs restart_lr -> restart_min_lr by max_steps.
    A finished run resumed with a restart (and more steps) trains what one run with that schedule trains."""
    from core.config import apply_overrides
    from core.optim import lr_at
    one = [lr_at(s, 3e-3, 3e-4, 2, 8) for s in range(12)]
    two = [lr_at(s, 3e-3, 3e-4, 2, 12, restart_at=8, restart_lr=1e-3, restart_min_lr=1e-4) for s in range(14)]
    assert two[:8] == one[:8]  # the first cycle is the one-cycle run's, to its end
    assert two[8] == 1e-3 and two[12] == two[13] == pytest.approx(1e-4)  # restarted, then decayed to the floor
    assert all(a > b for a, b in zip(two[8:12], two[9:13]))
    restart = ["train.warmup_steps=2", "train.max_steps=10", "train.restart_at=6", "train.restart_lr=2e-3", "train.restart_min_lr=2e-4"]
    straight = Trainer(load_config("chat", overrides=TINY_LM + ["model.smear=true"] + restart))
    a = [straight.step()["loss"] for _ in range(10)]
    first = Trainer(load_config("chat", overrides=TINY_LM + ["model.smear=true", "train.warmup_steps=2", "train.max_steps=6"]))
    b = [first.step()["loss"] for _ in range(6)]
    first.save("run", saves_dir=tmp_path)
    later = Trainer.from_save("run", saves_dir=tmp_path, overrides=lambda c: apply_overrides(c, restart))
    assert later.lr() == 2e-3
    b += [later.step()["loss"] for _ in range(4)]
    assert a == b  # bitwise
    np.testing.assert_array_equal(straight.model.flat, later.model.flat)
