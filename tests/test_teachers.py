"""train.teachers: a run trained on the mean next-character probabilities of saved models (distillation)."""
import json

import numpy as np
import pytest

from core.config import ConfigError, apply_overrides, load_config
from core.trainer import Trainer, load_model

TINY = ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32", "train.batch_size=4",
        "data.n_eval=3", "train.eval_interval=5", "train.max_steps=20", "train.warmup_steps=2"]


@pytest.fixture
def saves(saves):
    """Two qa saves of different seeds, trained a few steps, in the test's own saves folder (ATTNLAB_SAVES)."""
    for seed in (1, 2):
        tr = Trainer(load_config("qa", overrides=TINY + [f"train.seed={seed}"]))
        for _ in range(3):
            tr.step()
        tr.save(f"t{seed}", "best", saves_dir=saves)
        tr.save(f"t{seed}", "last", saves_dir=saves)
    return saves


def student(saves, *extra):
    return Trainer(load_config("qa", overrides=TINY + ["train.seed=5", *extra]), saves_dir=saves)


def test_the_loss_is_the_cross_entropy_against_the_teachers_mean(saves):
    tr = student(saves, "train.teachers=t1,t2:last")
    assert len(tr.teachers) == 2
    rng_state = tr.rng.bit_generator.state
    x, y, mask = tr.task.batch("train", tr.cfg.train.batch_size, tr.rng)
    tr.rng.bit_generator.state = rng_state  # step() draws the same batch
    teachers = [load_model(n, g, saves)[0] for n, g in (("t1", "best"), ("t2", "last"))]
    probs = [np.exp(m.forward(x)[0] - np.log(np.exp(m.forward(x)[0]).sum(-1, keepdims=True))) for m in teachers]
    q = (probs[0] + probs[1]) / 2  # (B, T, V)
    logits = tr.model.forward(x)[0].astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    keep = y != -1
    want = float(-(q * logp).sum(-1)[keep].mean())
    assert tr.step()["loss"] == pytest.approx(want, rel=1e-4)  # float32 model, float64 reference


def test_teacher_weight_zero_trains_on_the_corpus_alone(saves):
    plain, taught = student(saves), student(saves, "train.teachers=t1", "train.teacher_weight=0")
    assert [plain.step()["loss"] for _ in range(3)] == [taught.step()["loss"] for _ in range(3)]
    np.testing.assert_array_equal(plain.model.flat, taught.model.flat)


def test_distillation_draws_the_student_to_the_teacher(saves):
    """Trained on t1's probabilities alone, the student's predictions move towards t1's, more than a
    student trained as long on the corpus' characters."""
    teacher = load_model("t1", "best", saves)[0]
    runs = {w: student(saves, "train.teachers=t1", f"train.teacher_weight={w}", "train.lr=3e-3") for w in (1.0, 0.0)}
    x, _, _ = runs[1.0].task.batch("val", 4, np.random.default_rng(0))

    def kl(m):
        p = teacher.forward(x)[0].astype(np.float64)
        p = np.exp(p - p.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        lg = m.forward(x)[0].astype(np.float64)
        logq = lg - lg.max(-1, keepdims=True); logq -= np.log(np.exp(logq).sum(-1, keepdims=True))
        return float((p * (np.log(p) - logq)).sum(-1).mean())
    before = kl(runs[1.0].model)
    for tr in runs.values():
        for _ in range(15):
            tr.step()
    assert kl(runs[1.0].model) < 0.5 * before
    assert kl(runs[1.0].model) < kl(runs[0.0].model)


def test_a_taught_run_resumes_bitwise(saves):
    straight = student(saves, "train.teachers=t1,t2")
    a = [straight.step()["loss"] for _ in range(5)]
    first = student(saves, "train.teachers=t1,t2")
    b = [first.step()["loss"] for _ in range(2)]
    first.save("s", saves_dir=saves)
    again = Trainer.from_save("s", saves_dir=saves)
    assert len(again.teachers) == 2
    b += [again.step()["loss"] for _ in range(3)]
    assert a == b


@pytest.mark.parametrize("spec,words", [
    ("nosuch", ["train.teachers", "nosuch:best", "attnlab runs", "without teachers: --set train.teachers= (nothing after"]),
    ("t1:middle", ["train.teachers", "'t1:middle' is not a save", "NAME:TAG"]),
    ("t1,,t2", ["train.teachers", "'' is not a save"]),
])
def test_teachers_that_cannot_teach_are_refused_with_the_fix(saves, spec, words):
    with pytest.raises(ConfigError) as info:
        student(saves, f"train.teachers={spec}")
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_a_teacher_of_another_window_or_task_is_refused(saves):
    wide = Trainer(load_config("qa", overrides=TINY + ["model.block_size=48"]))
    wide.save("wide", "best", saves_dir=saves)
    rev = Trainer(load_config("reversal", overrides=["train.max_steps=5"]))
    rev.save("rev", "best", saves_dir=saves)
    with pytest.raises(ConfigError, match="train.teachers: wide:best reads 48 characters at once"):
        student(saves, "train.teachers=t1,wide")
    with pytest.raises(ConfigError, match="train.teachers: rev:best is a reversal save and this run a qa save"):
        student(saves, "train.teachers=rev")
    cfg = load_config("qa", overrides=TINY)
    with pytest.raises(ConfigError, match="train.teacher_weight"):
        apply_overrides(cfg, ["train.teacher_weight=1.5"])


def test_a_run_never_saves_over_its_teacher(saves):
    from core.checkpoint import SaveError, load_checkpoint
    before = load_checkpoint("t1", "best", saves).params["wte.w"].copy()
    tr = student(saves, "train.teachers=t1")
    tr.step()
    with pytest.raises(SaveError, match="not saved as t1: it is one of this run's teachers"):
        tr.save("t1", "best", saves_dir=saves)
    np.testing.assert_array_equal(load_checkpoint("t1", "best", saves).params["wte.w"], before)


def test_cli_trains_a_taught_run_under_another_name_only(capsys, saves):
    from tui.cli import main
    tiny = [a for s in ("model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32",
                        "train.batch_size=4", "data.n_eval=3", "train.warmup_steps=2") for a in ("--set", s)]
    assert main(["train", "qa", "--save", "r", "--steps", "4", *tiny]) == 0
    assert main(["train", "qa", "--resume", "r", "--steps", "6", "--set", "train.teachers=r:last"]) == 2
    assert "--resume r: that run is one of train.teachers" in capsys.readouterr().err
    assert main(["train", "qa", "--save", "r", "--overwrite", "--steps", "4", "--set", "train.teachers=r:last", *tiny]) == 2
    assert "--save r: that run is one of train.teachers" in capsys.readouterr().err
    assert (saves / "r" / "last" / "weights.npz").is_file()  # refused before anything was replaced
    assert main(["train", "qa", "--resume", "r", "--save", "r2", "--json", "--steps", "8", "--set", "train.teachers=r:last",
                 "--set", "train.restart_at=4"]) == 0
    steps = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = [e for e in steps if e["event"] == "step"]
    assert [e["step"] for e in steps] == [5, 6, 7, 8] and steps[0]["lr"] == pytest.approx(1e-3)  # restarted
