"""Promise 4: training that diverges stops cleanly.

An absurd learning rate makes the loss (or the gradients, or the validation loss) non-finite: the
trainer stops within that step, names the step and the likely cause, and no save, least of all
'best', ever receives weights that cannot produce a finite loss.
"""
import dataclasses
import math

import numpy as np
import pytest

from core.checkpoint import list_runs, load_checkpoint
from core.config import load_config
from core.trainer import Trainer, TrainingDiverged, load_model
from tests.fault_helpers import TINY_REVERSAL, cli, cli_inproc, record

ABSURD = ["--set", "train.lr=1e30", "--set", "train.grad_clip=0", "--set", "train.warmup_steps=0"]


def files(saves, name, tag):
    d = saves / name / tag
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def assert_every_save_sound(saves):
    """Every tag of every run loads (finite arrays) and its weights give a finite loss."""
    n = 0
    for run in list_runs(saves):
        assert run.error is None, run.error
        for tag in run.tags:
            ck = load_checkpoint(run.name, tag, saves_dir=saves)
            assert all(np.isfinite(a).all() for a in ck.params.values())
            model, tok, cfg, _ = load_model(run.name, tag, saves_dir=saves)
            x = np.arange(1, 7)[None, :] % tok.vocab_size  # (1, T)
            with np.errstate(all="ignore"):
                _, loss = model.forward(x, x[:, ::-1].copy())
            assert math.isfinite(loss), (run.name, tag, loss)
            n += 1
    return n


def test_cli_absurd_lr_stops_with_step_and_cause(tmp_path):
    saves = tmp_path / "saves"
    rc, out, err = cli(["train", "reversal", "--save", "div", *ABSURD], saves)
    assert rc != 0 and "Traceback" not in err and "Warning" not in err, err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("attnlab: error: training diverged")
    assert "at step 2" in last or "by step 1" in last, last
    assert "learning rate (1e+30)" in last and "lower train.lr" in last
    checked = assert_every_save_sound(saves)
    record("test_fault_diverge.py::test_cli_absurd_lr_stops_with_step_and_cause", exit_code=rc,
           message=last, saves_checked=checked)


def test_diverging_rerun_never_overwrites_a_good_best(tmp_path, monkeypatch, capsys):
    """A good run saves 'best'; resuming it with lr=1e30 evaluating every step (so its first
    evaluation would be its 'best') must leave that save byte-for-byte alone."""
    saves = tmp_path / "saves"
    tiny = sum((["--set", o] for o in TINY_REVERSAL), [])
    rc, _, err = cli_inproc(["train", "reversal", "--save", "run", "--steps", "4", *tiny], saves,
                            monkeypatch, capsys)
    assert rc == 0, err
    good = files(saves, "run", "best")
    # a fresh run under the same name is refused outright (issue 10); a resumed one may diverge
    rc, _, err = cli_inproc(["train", "reversal", "--save", "run", *tiny, *ABSURD,
                             "--set", "train.eval_interval=1"], saves, monkeypatch, capsys)
    assert rc == 2 and "saves/run exists" in err, err
    rc, _, err = cli_inproc(["train", "reversal", "--resume", "run", "--steps", "40", *ABSURD,
                             "--set", "train.eval_interval=1"], saves, monkeypatch, capsys)
    assert rc == 1 and "diverged" in err.rstrip().splitlines()[-1], err
    assert files(saves, "run", "best") == good
    assert_every_save_sound(saves)


def test_nonfinite_gradient_is_caught_before_the_update():
    tr = Trainer(load_config("reversal", overrides=TINY_REVERSAL))
    tr.step()
    real = tr.model.backward

    def poisoned():
        grads = real()
        tr.model.grad_flat[3] = np.inf
        return grads
    tr.model.backward = poisoned
    before, m, v = tr.model.flat.copy(), tr.opt.m.copy(), tr.opt.v.copy()
    with pytest.raises(TrainingDiverged, match=r"at step 2: the gradient norm is (inf|nan).*learning rate"):
        tr.step()
    assert tr.step_count == 1
    np.testing.assert_array_equal(tr.model.flat, before)
    np.testing.assert_array_equal(tr.opt.m, m)
    np.testing.assert_array_equal(tr.opt.v, v)


def test_broken_weights_never_become_best():
    """Finite but absurd weights (one lr=1e30 step) give a NaN validation loss: evaluate refuses."""
    cfg = load_config("reversal", overrides=TINY_REVERSAL)
    tr = Trainer(cfg)
    tr.evaluate()
    best = tr.best
    tr.cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e30, warmup_steps=0,
                                                                 grad_clip=0.0))
    tr.step()  # applied: the loss before it was finite
    assert np.isfinite(tr.model.flat).all()
    with pytest.raises(TrainingDiverged, match="validation loss is nan"):
        tr.evaluate()
    assert tr.best == best and tr.best_step == 0
