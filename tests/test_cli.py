"""The headless CLI, driven through main() with the saves folder in tmp_path."""

import json


from tui.cli import main


def events(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_train_reversal_json_until_target(capsys, saves):
    assert main(["train", "reversal", "--json", "--save", "rev", "--until", "accuracy>=0.99"]) == 0
    evs = events(capsys)
    assert {e["event"] for e in evs} >= {"step", "eval", "done"}
    done = evs[-1]
    assert done["event"] == "done" and done["reason"] == "target reached"
    assert done["metrics"]["accuracy"] >= 0.99 and done["steps"] == evs[-2]["step"]
    assert (saves / "rev" / "best" / "weights.npz").is_file() and (saves / "rev" / "last" / "meta.json").is_file()


def test_resume_continues_the_step_count_and_applies_set(capsys, saves):
    assert main(["train", "reversal", "--json", "--save", "r", "--steps", "10"]) == 0
    capsys.readouterr()
    assert main(["train", "reversal", "--json", "--resume", "r", "--steps", "14", "--set", "train.lr=1e-3"]) == 0
    evs = events(capsys)
    steps = [e["step"] for e in evs if e["event"] == "step"]
    assert steps == [11, 12, 13, 14]
    assert evs[0]["lr"] < 1e-3 + 1e-12  # the new peak rate is in force
    meta = json.loads((saves / "r" / "last" / "meta.json").read_text())
    assert meta["step"] == 14


def test_a_killed_run_resumes_from_best_with_tag(capsys, saves):
    """A run killed mid-training (SIGKILL, a machine restart) has `best` but no `last`: the refusal names
    --tag best, and --tag best continues from it."""
    import shutil
    assert main(["train", "reversal", "--json", "--save", "k", "--steps", "10"]) == 0
    best_step = json.loads((saves / "k" / "best" / "meta.json").read_text())["step"]
    shutil.rmtree(saves / "k" / "last")
    capsys.readouterr()
    assert main(["train", "reversal", "--json", "--resume", "k", "--steps", "14"]) == 2
    err = capsys.readouterr().err
    assert "no save 'last'" in err and "--tag best" in err and "Traceback" not in err
    assert not (saves / "k" / "last").exists()
    assert main(["train", "reversal", "--json", "--resume", "k", "--tag", "best", "--steps", "14"]) == 0
    steps = [e["step"] for e in events(capsys) if e["event"] == "step"]
    assert steps == list(range(best_step + 1, 15))
    assert json.loads((saves / "k" / "last" / "meta.json").read_text())["step"] == 14
    assert main(["train", "reversal", "--tag", "best"]) == 2  # --tag alone: it only qualifies --resume
    assert "--resume" in capsys.readouterr().err


def test_last_is_saved_at_evaluations_while_training(capsys, saves, monkeypatch):
    """A run killed outright keeps a recent `last`: it is saved at evaluations (at most once a minute;
    every evaluation here), and not again at the end when the end is such an evaluation."""
    import tui.cli.train as cli_train
    from core.checkpoint import Autosave
    from core.trainer import Trainer
    monkeypatch.setattr(cli_train, "Autosave", lambda: Autosave(0.0))
    saved = []
    real_save = Trainer.save

    def spy(self, name, tag):
        saved.append((tag, self.step_count, json.loads((saves / name / tag / "meta.json").read_text())["step"]
                      if (saves / name / tag).is_dir() else None))
        return real_save(self, name, tag)
    monkeypatch.setattr(Trainer, "save", spy)
    assert main(["train", "reversal", "--json", "--save", "a", "--steps", "30", "--set", "train.eval_interval=10"]) == 0
    lasts = [step for tag, step, _ in saved if tag == "last"]
    assert lasts == [10, 20, 30]  # at each evaluation, the last one being the end: not written twice
    assert [prev for tag, _, prev in saved if tag == "last"] == [None, 10, 20]  # each replaced the one before
    assert json.loads((saves / "a" / "last" / "meta.json").read_text())["step"] == 30


def test_bad_name_is_refused_before_training(capsys, saves):
    assert main(["train", "reversal", "--save", "../escape"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab: error:") and "escape" in err and "Traceback" not in err
    assert not saves.exists() or not any(saves.iterdir())
    assert main(["train", "reversal", "--save", ""]) == 2


def test_bad_until_and_unknown_key_are_one_line_errors(capsys):
    assert main(["train", "reversal", "--until", "accuracy>>1"]) == 2
    assert "METRIC>=VALUE" in capsys.readouterr().err
    assert main(["train", "reversal", "--set", "model.n_emb=32"]) == 2
    err = capsys.readouterr().err
    assert "n_emb" in err and "n_embd" in err and len(err.strip().splitlines()) == 1


def test_eval_sample_runs_and_chat(capsys, monkeypatch, saves, short_answers):
    assert main(["train", "qa", "--json", "--save", "q", "--steps", "3", "--set", "model.n_layer=1",
                 "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set", "data.n_eval=2",
                 "--set", "train.batch_size=4"]) == 0
    capsys.readouterr()
    assert main(["eval", "q", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert {"val_loss", "train_loss", "answer_exact", "train_answer_exact", "arith_exact_by_op"} <= set(ev)
    assert main(["eval", "q"]) == 0  # the text form: a line per level, arithmetic per operation
    text = capsys.readouterr().out
    assert "arith_plus " in text and "arith_minus " in text
    assert "by level: arithmetic " in text and "facts " in text and "greetings " in text
    assert main(["sample", "q", "--prompt", "Q: Hi\nA:", "--max-new", "12", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert 1 <= len(out.rstrip("\n")) <= 12 * 4  # control characters would be shown escaped
    assert main(["runs"]) == 0
    assert "q " in capsys.readouterr().out
    lines = iter(["Hello \u00e9!", "x" * 500, "/reset", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "q", "--max-new", "5"]) == 0
    out = capsys.readouterr().out
    assert "never seen" in out and "not sent" in out and out.count("bot> ") == 1
