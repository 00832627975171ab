"""train.ema: a running average of the weights is what evaluations, snapshots, chat and saves see, while the
optimizer steps the weights as trained; a save resumes both exactly."""

import numpy as np
import pytest

from core.config import ConfigError, load_config
from core.trainer import Trainer, load_model

TINY = ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32", "train.batch_size=4",
        "data.n_eval=3", "train.eval_interval=5", "train.max_steps=12", "model.dropout=0.1"]


def averaged_by_hand(weights, decay):
    """The average of a list of weights after steps 0, 1, 2, ... as the docs define it, in float64."""
    ema = weights[0].astype(np.float64)
    for s, w in enumerate(weights[1:], start=1):
        d = min(decay, (1 + s) / (10 + s))
        ema = d * ema + (1 - d) * w.astype(np.float64)
    return ema


def test_the_average_follows_its_definition_and_is_what_evaluation_sees():
    tr = Trainer(load_config("qa", overrides=[*TINY, "train.ema=0.5"]))
    weights = [tr.model.flat.copy()]
    for _ in range(8):
        tr.step()
        weights.append(tr.model.flat.copy())
    np.testing.assert_allclose(tr.ema, averaged_by_hand(weights, 0.5), rtol=1e-12, atol=1e-12)
    avg = tr.averaged()
    assert avg is not tr.model and np.array_equal(avg.flat, tr.ema.astype(np.float32))
    assert not np.array_equal(avg.flat, tr.model.flat)  # the decay is low enough for them to differ
    got = tr.evaluate()
    want = tr.task.evaluate(avg, np.random.default_rng(0))  # the same model object: the same float path
    assert got["val_loss"] == want["val_loss"] and got["answer_exact"] == want["answer_exact"]
    probe = tr.attention_probe()["maps"]
    avg.forward(tr.task.probe(None)[0])
    np.testing.assert_array_equal(probe, avg.attention_maps()[:, 0])
    tr.step()  # the next step moves the average, and averaged() shows the move
    assert np.array_equal(tr.averaged().flat, tr.ema.astype(np.float32))


def test_without_ema_the_trained_weights_are_the_ones_seen_and_saved(tmp_path):
    tr = Trainer(load_config("qa", overrides=TINY))
    tr.step()
    assert tr.ema is None and tr.averaged() is tr.model
    tr.save("plain", saves_dir=tmp_path)
    from core.checkpoint import load_checkpoint
    ck = load_checkpoint("plain", "last", saves_dir=tmp_path)
    assert not any(k.startswith(("raw/", "ema/")) for k in ck.opt_state)


def test_a_save_holds_the_average_and_resumes_bitwise(tmp_path):
    cfg = load_config("chat", overrides=[*TINY, "model.smear=true", "train.ema=0.9"])
    straight = Trainer(cfg)
    a = [straight.step()["loss"] for _ in range(9)]
    first = Trainer(cfg)
    b = [first.step()["loss"] for _ in range(4)]
    first.save("run", saves_dir=tmp_path)
    model, _, _, meta = load_model("run", saves_dir=tmp_path)  # what chat, sample and eval load
    assert meta["step"] == 4 and np.array_equal(model.flat, first.ema.astype(np.float32))
    assert not np.array_equal(model.flat, first.model.flat)
    again = Trainer.from_save("run", saves_dir=tmp_path)
    np.testing.assert_array_equal(again.model.flat, first.model.flat)  # training goes on from its own weights
    np.testing.assert_array_equal(again.ema, first.ema)  # (float64, exactly)
    b += [again.step()["loss"] for _ in range(5)]
    assert a == b
    np.testing.assert_array_equal(straight.model.flat, again.model.flat)
    np.testing.assert_array_equal(straight.ema, again.ema)


def test_switching_ema_on_or_off_at_resume(tmp_path):
    plain = Trainer(load_config("qa", overrides=TINY))
    for _ in range(3):
        plain.step()
    plain.save("plain", saves_dir=tmp_path)
    on = Trainer.from_save("plain", saves_dir=tmp_path,
                           overrides=lambda c: load_config("qa", overrides=[*TINY, "train.ema=0.99"]))
    np.testing.assert_array_equal(on.ema, plain.model.flat.astype(np.float64))  # it starts from the save's weights
    on.step()
    on.save("on", saves_dir=tmp_path)
    off = Trainer.from_save("on", saves_dir=tmp_path, overrides=lambda c: load_config("qa", overrides=TINY))
    assert off.ema is None
    np.testing.assert_array_equal(off.model.flat, on.model.flat)  # the trained weights, not the average


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1"])
def test_an_ema_outside_0_to_1_is_refused(value):
    with pytest.raises(ConfigError, match="train.ema"):
        load_config("qa", overrides=[f"train.ema={value}"])


def test_the_average_never_changes_the_training_itself():
    """Same seed with and without train.ema: the same losses and trained weights, evaluations in between."""
    runs = [Trainer(load_config("qa", overrides=[*TINY, f"train.ema={d}"])) for d in (0, 0.9)]
    losses = [[], []]
    for i in range(6):
        for tr, out in zip(runs, losses):
            out.append(tr.step()["loss"])
            if i % 3 == 2:
                tr.evaluate()
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(runs[0].model.flat, runs[1].model.flat)
