"""`attnlab export`: the exported tensors are the saved ones bit for bit, and the metadata rebuilds the run."""

import json

import numpy as np
import pytest

from core.checkpoint import load_checkpoint
from core.config import config_from_dict, load_config
from core.export import NPZ_META
from core.tokenizer import CharTokenizer
from core.trainer import Trainer
from tui.cli import main


@pytest.fixture
def saved(saves):
    tr = Trainer(load_config("reversal", overrides=["train.max_steps=3", "model.n_layer=2"]))
    tr.run(lambda ev: None)
    tr.save("rev", "best")
    return load_checkpoint("rev", "best")


def same_bits(exported, ck):
    assert sorted(exported) == sorted(ck.params)
    for name, a in ck.params.items():
        b = exported[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert b.tobytes() == a.tobytes(), name  # bitwise, not approximately


def check_meta(meta, ck):
    assert meta["task"] == "reversal" and meta["step"] == "3" and meta["source"] == "rev/best"
    assert config_from_dict(json.loads(meta["config"])) == config_from_dict(ck.config)
    assert CharTokenizer.from_dict(json.loads(meta["tokenizer"])).chars == \
        CharTokenizer.from_dict(ck.meta["tokenizer"]).chars


def test_safetensors_export_loads_with_the_safetensors_numpy_api(saved, tmp_path, capsys):
    st = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file
    out = tmp_path / "rev.safetensors"
    assert main(["export", "rev", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    same_bits(load_file(str(out)), saved)
    with st.safe_open(str(out), framework="np") as f:
        check_meta(f.metadata(), saved)
    assert [p.name for p in tmp_path.iterdir()] == ["rev.safetensors", "saves"]  # no temporary left behind


def test_npz_export_needs_no_extra_and_reads_without_pickle(saved, tmp_path):
    out = tmp_path / "rev.npz"
    assert main(["export", "rev", "--format", "npz", "--tag", "best", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        meta = json.loads(str(z[NPZ_META]))
        same_bits({k: z[k] for k in z.files if k != NPZ_META}, saved)
    check_meta(meta, saved)


def test_export_mistakes_are_one_line(saved, tmp_path, capsys):
    for argv, says in [(["nope", "--format", "npz"], "no saved run named 'nope'"),
                       (["rev", "--format", "npz", "--tag", "last"], "has no tag 'last'"),
                       (["rev", "--format", "npz", "--out", str(tmp_path)], "is a directory"),
                       (["rev", "--format", "npz", "--out", str(tmp_path / "no" / "x.npz")], "could not write")]:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (argv, err)


def test_a_missing_extra_names_the_install_command(monkeypatch, capsys):
    from tui.cli import reach
    monkeypatch.setattr(reach.importlib.util, "find_spec", lambda name: None)
    for argv, extra in [(["export", "rev"], "export"), (["sweep", "reversal"], "sweep"), (["serve"], "web")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"pip install 'attnlab[{extra}]'" in err and "Traceback" not in err
