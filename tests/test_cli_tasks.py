"""Task-aware CLI commands (sample, chat) and the run registry commands (runs --json, compare)."""

import json

import pytest

from core.config import load_config
from core.trainer import Trainer
from tui.cli import main

TINY_QA = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=64",
           "train.batch_size=8", "model.dropout=0.0"]


@pytest.fixture
def rev(capsys, saves):
    assert main(["train", "reversal", "--json", "--save", "rev", "--until", "accuracy>=0.99"]) == 0
    capsys.readouterr()
    return "rev"


def test_sample_on_a_reversal_save_prints_the_reversal(rev, capsys):
    assert main(["sample", rev, "--prompt", "PYTHON"]) == 0
    assert capsys.readouterr().out.strip() == "NOHTYP"
    assert main(["sample", rev, "--prompt", "python"]) == 0  # letters in any case
    assert capsys.readouterr().out.strip() == "NOHTYP"


def test_sample_on_a_reversal_save_refuses_what_it_cannot_read(rev, capsys):
    assert main(["sample", rev, "--prompt", "PY 3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab: error:") and "A-Z" in err and "'3'" in err and "Traceback" not in err


def test_chat_on_a_reversal_save_refuses_before_reading_input(rev, capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("chat read input from a reversal model"))
    assert main(["chat", rev]) == 2
    err = capsys.readouterr().err
    assert "reversal" in err and f"attnlab sample {rev} --prompt" in err


def test_sample_prints_newlines_as_line_breaks(saves, capsys, monkeypatch):
    tr = Trainer(load_config("qa", overrides=TINY_QA))
    tr.save("tq", "best")
    monkeypatch.setattr("core.sample.stream_text", lambda *a, **k: iter("A: 7.\nQ: hi\x1b"))
    assert main(["sample", "tq", "--prompt", "Q: What is 3 plus 4?\nA:", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert "A: 7.\nQ: hi" in out and "\\x0a" not in out and "\x1b" not in out and "\\x1b" in out


def test_readme_sample_example_runs(saves, capsys):
    tr = Trainer(load_config("qa", overrides=TINY_QA))
    tr.save("qa", "best")
    assert main(["sample", "qa", "--prompt", "Q: What is 3 plus 4?\nA:", "--temperature", "0",
                 "--max-new", "40"]) == 0
    assert "\\x0a" not in capsys.readouterr().out


def test_runs_json_and_compare(rev, capsys, saves):
    assert main(["train", "reversal", "--json", "--save", "rev2", "--steps", "10", "--set", "train.lr=0.01"]) == 0
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    runs = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(runs) == {"rev", "rev2"} and runs["rev2"]["step"] == 10
    assert runs["rev"]["metrics_jsonl"].endswith("rev/metrics.jsonl")
    assert main(["compare", "rev", "rev2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["runs"]] == ["rev", "rev2"] and out["runs"][1]["steps"] == 10
    assert out["config_diff"]["train.lr"] == {"rev": 0.02, "rev2": 0.01}
    assert main(["compare", "rev", "rev2"]) == 0
    text = capsys.readouterr().out
    assert "best accuracy" in text and "train.lr" in text and "rev2" in text


def test_compare_refuses_unknown_runs_and_a_single_run(rev, capsys):
    assert main(["compare", rev, "nope"]) == 2
    assert "no saved run named 'nope'" in capsys.readouterr().err
    assert main(["compare", rev]) == 2
    assert "at least two" in capsys.readouterr().err
