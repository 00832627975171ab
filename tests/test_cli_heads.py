"""`attnlab heads` and `attnlab sample --show-probs`, driven through main() with saves in tmp_path."""

import json

import pytest

from tui.cli import main
from tui.cli.generate import show_probs


@pytest.fixture
def rev(capsys):
    assert main(["train", "reversal", "--json", "--save", "rev", "--until", "accuracy>=0.99"]) == 0
    capsys.readouterr()
    return "rev"


def test_heads_json_and_ablation_table(capsys, rev):
    assert main(["heads", rev, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "reversal" and out["ablated"] is None and out["metric"] == "accuracy"
    assert len(out["scores"]["antidiagonal"]) == 1 and len(out["scores"]["antidiagonal"][0]) == 2
    assert max(out["scores"]["antidiagonal"][0]) > 0.9 and out["base"]["accuracy"] >= 0.99
    assert main(["heads", rev, "--ablate", "0.0,0.1", "--mode", "mean"]) == 0
    text = capsys.readouterr().out
    assert "L0H0" in text and "L0H1" in text and "(ablated)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("accuracy "))
    base, after = (float(v) for v in line.split()[1:4:2])  # 'accuracy 1.0000 -> 0.0xx without ...'
    assert base >= 0.99 and after < 0.1 and line.endswith("without L0H0, L0H1 (mean ablation)")


@pytest.mark.parametrize("bad,says", [("x", "LAYER.HEAD"), ("0.1,", "LAYER.HEAD"), ("1.0", "does not exist"),
                                      ("0.2", "heads 0-1")])
def test_bad_ablate_text_is_one_line_naming_the_flag(capsys, rev, bad, says):
    assert main(["heads", rev, "--ablate", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab: error: --ablate") and says in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_heads_of_a_missing_save_is_an_error(capsys):
    assert main(["heads", "nothing"]) == 2
    assert "nothing" in capsys.readouterr().err


def test_causal_heads_and_sample_show_probs(capsys):
    assert main(["train", "qa", "--json", "--save", "q", "--steps", "3", "--set", "model.n_layer=1",
                 "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set", "data.n_eval=2",
                 "--set", "train.batch_size=4"]) == 0
    capsys.readouterr()
    assert main(["heads", "q", "--json", "--ablate", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["scores"]) == ["prev_token", "induction", "sink"]
    assert out["heads"] == [[0, 1]] and "answer_exact" in out["ablated"]
    assert main(["sample", "q", "--prompt", "Q: Hi\nA:", "--max-new", "6", "--seed", "1", "--show-probs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].lstrip().startswith("#") and lines[-1].startswith("text: ") and len(lines) == 8
    for ln in lines[1:-1]:
        assert len([t for t in ln.split() if t.replace(".", "").isdigit() and "." in t]) == 5  # five probabilities


def test_show_probs_shows_newlines_and_controls_visibly(capsys):
    items = [("\n", [("\n", 0.6), ("\x1b", 0.3), (" ", 0.1)]), ("a", [("b", 0.5), ("a", 0.4)])]
    assert show_probs(iter(items)) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "[⏎ 0.600]" in out and "\\x1b 0.300" in out and "␣ 0.100" in out
    assert "[a 0.400]" in out and out.rstrip().endswith("text: ⏎a")
