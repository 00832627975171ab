"""Checkpoints: bitwise round trips, atomic swaps, safe names, and refusal of damaged or hostile files."""
import json
import os
import pathlib
import pickle

import numpy as np
import pytest
import yaml

from core import checkpoint as ck
from core.checkpoint import (
    FORMAT_VERSION, SaveError, delete_run, list_runs, load_checkpoint, run_dir, save_checkpoint,
)
from core.config import config_from_dict, config_to_dict, load_config
from core.tokenizer import CharTokenizer


def make_state(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    params = {
        "wte.w": rng.standard_normal((5, 8)).astype(dtype),          # (V, C)
        "wpe.w": rng.standard_normal((4, 8)).astype(dtype),          # (T, C)
        "h.0.attn.c_attn.w": rng.standard_normal((8, 24)).astype(dtype),  # (C, 3C)
        "ln_f.b": np.zeros(8, dtype=dtype),                           # (C,)
    }
    opt = {f"{m}/{k}": rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()
           for m in ("m", "v")}
    opt["step"] = np.array(17, dtype=np.int64)
    return params, opt


def make_meta(step=17, rng=None):
    meta = {"task": "qa", "step": step, "best_metric": 1.25,
            "tokenizer": CharTokenizer.from_text("abcd").to_dict(),
            "history": {"loss": [3.0, 2.5, float(step)]}}
    if rng is not None:
        meta["rng_state"] = rng.bit_generator.state
    return meta


def shapes(params):
    return {k: v.shape for k, v in params.items()}


def save(tmp_path, name="run1", tag="last", seed=0, step=17, **kw):
    params, opt = make_state(seed)
    cfg = config_to_dict(load_config("qa"))
    save_checkpoint(name, tag, params, opt, make_meta(step, **kw), cfg, saves_dir=tmp_path)
    return params, opt, cfg


# ---- round trip

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_bitwise(tmp_path, dtype):
    params, opt = make_state(1, dtype)
    cfg = config_to_dict(load_config("reversal"))
    rng = np.random.default_rng(42)
    rng.random(3)
    path = save_checkpoint("run1", "last", params, opt, make_meta(rng=rng), cfg, saves_dir=tmp_path)
    assert path == tmp_path / "run1" / "last"
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "meta.json", "optim.npz",
                                                      "weights.npz"]
    c = load_checkpoint("run1", saves_dir=tmp_path, expected_shapes=shapes(params))
    assert c.params.keys() == params.keys() and c.opt_state.keys() == opt.keys()
    for k in params:
        assert c.params[k].dtype == dtype
        assert c.params[k].tobytes() == params[k].tobytes()
    for k in opt:
        assert c.opt_state[k].dtype == opt[k].dtype
        assert np.array_equal(c.opt_state[k], opt[k])
    assert c.opt_state["step"].shape == () and int(c.opt_state["step"]) == 17
    assert config_from_dict(c.config) == load_config("reversal")
    assert c.meta["format_version"] == FORMAT_VERSION
    assert c.meta["step"] == 17 and c.meta["best_metric"] == 1.25
    assert CharTokenizer.from_dict(c.meta["tokenizer"]) == CharTokenizer.from_text("abcd")
    restored = np.random.default_rng(0)
    restored.bit_generator.state = c.meta["rng_state"]
    assert np.array_equal(restored.random(5), rng.random(5))
    assert isinstance(c.meta["created"], float)


def test_config_written_as_yaml_and_meta_as_json(tmp_path):
    save(tmp_path)
    d = tmp_path / "run1" / "last"
    assert yaml.safe_load((d / "config.yaml").read_text())["model"]["n_embd"] == 128
    assert json.loads((d / "meta.json").read_text())["task"] == "qa"


def test_numpy_scalars_in_meta_are_written(tmp_path):
    params, opt = make_state()
    meta = {"step": np.int64(5), "best_metric": np.float32(0.5), "hist": np.arange(3)}
    save_checkpoint("r", "last", params, opt, meta, {}, saves_dir=tmp_path)
    m = load_checkpoint("r", saves_dir=tmp_path).meta
    assert (m["step"], m["best_metric"], m["hist"]) == (5, 0.5, [0, 1, 2])


def test_resave_replaces_and_tags_are_separate(tmp_path):
    save(tmp_path, seed=0, step=1)
    p2, _, _ = save(tmp_path, seed=2, step=2)
    p3, _, _ = save(tmp_path, tag="best", seed=3, step=3)
    last = load_checkpoint("run1", "last", saves_dir=tmp_path)
    best = load_checkpoint("run1", "best", saves_dir=tmp_path)
    assert last.meta["step"] == 2 and np.array_equal(last.params["wte.w"], p2["wte.w"])
    assert best.meta["step"] == 3 and np.array_equal(best.params["wte.w"], p3["wte.w"])
    assert sorted(p.name for p in (tmp_path / "run1").iterdir()) == ["best", "last"]


def test_env_var_overrides_saves_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_SAVES", str(tmp_path / "envsaves"))
    assert run_dir("x") == tmp_path / "envsaves" / "x"
    assert run_dir("x", saves_dir=tmp_path) == tmp_path / "x"
    monkeypatch.delenv("ATTNLAB_SAVES")
    assert run_dir("x") == ck.SAVES_DIR / "x"
    assert ck.SAVES_DIR == pathlib.Path(ck.__file__).resolve().parent.parent / "saves"


def test_refuses_to_save_nan_or_object_arrays(tmp_path):
    params, opt = make_state()
    params["wte.w"][0, 0] = np.nan
    with pytest.raises(SaveError, match="wte.w.*NaN"):
        save_checkpoint("r", "last", params, opt, {}, {}, saves_dir=tmp_path)
    params, opt = make_state()
    opt["junk"] = np.array([object()], dtype=object)
    with pytest.raises(SaveError, match="junk.*object"):
        save_checkpoint("r", "last", params, opt, {}, {}, saves_dir=tmp_path)
    params["wte.w"] = params["wte.w"].astype(np.int32)
    with pytest.raises(SaveError, match="wte.w.*int32"):
        save_checkpoint("r", "last", params, {}, {}, {}, saves_dir=tmp_path)
    assert not (tmp_path / "r" / "last").exists()


# ---- atomicity

def test_crash_mid_swap_keeps_previous_save(tmp_path, monkeypatch):
    old_params, _, _ = save(tmp_path, seed=0, step=1)
    real_replace = os.replace

    def crash_on_tmp(src, dst):
        if ".tmp-" in str(src):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", crash_on_tmp)
    with pytest.raises(SaveError, match="could not write"):
        save(tmp_path, seed=5, step=2)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    c = load_checkpoint("run1", saves_dir=tmp_path)
    assert c.meta["step"] == 1
    assert np.array_equal(c.params["wte.w"], old_params["wte.w"])


def test_crash_between_renames_recovers_from_old(tmp_path, monkeypatch):
    old_params, _, _ = save(tmp_path, seed=0, step=1)
    real_replace = os.replace
    calls = []

    def first_then_crash(src, dst):  # the rollback fails too: as if the process died mid-swap
        calls.append((src, dst))
        if len(calls) == 1:
            return real_replace(src, dst)  # last -> .last.old
        raise OSError(5, "I/O error")

    monkeypatch.setattr(ck.os, "replace", first_then_crash)
    with pytest.raises(SaveError):
        save(tmp_path, seed=5, step=2)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    run = tmp_path / "run1"
    assert not (run / "last").exists() and (run / ".last.old").is_dir()
    c = load_checkpoint("run1", saves_dir=tmp_path)   # recovered from .last.old
    assert c.meta["step"] == 1
    assert np.array_equal(c.params["wte.w"], old_params["wte.w"])
    assert [r.tags for r in list_runs(tmp_path)] == [["last"]]
    save(tmp_path, seed=7, step=3)  # the next save completes the swap
    assert sorted(p.name for p in run.iterdir()) == ["last"]
    assert load_checkpoint("run1", saves_dir=tmp_path).meta["step"] == 3


def test_stale_tmp_dirs_ignored_and_cleaned(tmp_path):
    save(tmp_path, step=1)
    stale = tmp_path / "run1" / ".last.tmp-999999999"
    stale.mkdir()
    (stale / "weights.npz").write_bytes(b"half")
    assert load_checkpoint("run1", saves_dir=tmp_path).meta["step"] == 1
    assert [r.tags for r in list_runs(tmp_path)] == [["last"]]
    save(tmp_path, step=2)
    assert not stale.exists()
    assert load_checkpoint("run1", saves_dir=tmp_path).meta["step"] == 2


# ---- names and symlinks

@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "a\\b", "a\x1b", "", ".hidden", "..",
                                 "x" * 65, "sp ace", "tab\t", "nul\x00", 5, None])
def test_bad_names_refused(tmp_path, bad):
    with pytest.raises(SaveError) as info:
        run_dir(bad, saves_dir=tmp_path)
    msg = str(info.value)
    assert "letters, digits" in msg
    assert "\x1b" not in msg and "\x00" not in msg
    params, opt = make_state()
    with pytest.raises(SaveError):
        save_checkpoint(bad, "last", params, opt, {}, {}, saves_dir=tmp_path)
    with pytest.raises(SaveError):
        load_checkpoint(bad, saves_dir=tmp_path)
    with pytest.raises(SaveError):
        delete_run(bad, saves_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_good_names_and_bad_tag(tmp_path):
    for name in ["run-1", "A.b_c", "x" * 64, "1"]:
        assert run_dir(name, saves_dir=tmp_path) == tmp_path / name
    params, opt = make_state()
    with pytest.raises(SaveError, match="tag"):
        save_checkpoint("r", "../last", params, opt, {}, {}, saves_dir=tmp_path)
    with pytest.raises(SaveError, match="tag"):
        load_checkpoint("r", "../last", saves_dir=tmp_path)


def test_symlinked_run_dir_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    saves = tmp_path / "saves"
    saves.mkdir()
    (saves / "evil").symlink_to(outside)
    params, opt = make_state()
    with pytest.raises(SaveError, match="symbolic link"):
        save_checkpoint("evil", "last", params, opt, {}, {}, saves_dir=saves)
    assert list(outside.iterdir()) == []
    with pytest.raises(SaveError, match="symbolic link"):
        delete_run("evil", saves_dir=saves)
    assert outside.is_dir()
    with pytest.raises(SaveError, match="symbolic link"):
        load_checkpoint("evil", saves_dir=saves)
    runs = list_runs(saves)
    assert [(r.name, "symbolic link" in r.error) for r in runs] == [("evil", True)]


def test_symlinked_tag_dir_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    saves = tmp_path / "saves"
    (saves / "run1").mkdir(parents=True)
    (saves / "run1" / "last").symlink_to(outside)
    params, opt = make_state()
    with pytest.raises(SaveError, match="symbolic link"):
        save_checkpoint("run1", "last", params, opt, {}, {}, saves_dir=saves)
    with pytest.raises(SaveError, match="symbolic link"):
        load_checkpoint("run1", saves_dir=saves)
    assert (outside / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


# ---- damaged and hostile files

class Payload:
    """Unpickling this calls Path.touch(marker): proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _write_object_npz(path, marker):
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    with open(path, "wb") as f:
        np.savez(f, **{"wte.w": arr})


def test_payload_is_live(tmp_path):
    """Control: with pickles allowed the file does run its payload, so the refusal tests mean something."""
    marker = tmp_path / "control_marker"
    _write_object_npz(tmp_path / "w.npz", marker)
    with np.load(tmp_path / "w.npz", allow_pickle=True) as z:
        z["wte.w"]
    assert marker.exists()


@pytest.mark.parametrize("fname", ["weights.npz", "optim.npz"])
def test_pickled_object_array_refused_and_never_runs(tmp_path, fname):
    save(tmp_path)
    marker = tmp_path / "pwned"
    _write_object_npz(tmp_path / "run1" / "last" / fname, marker)
    with pytest.raises(SaveError) as info:
        load_checkpoint("run1", saves_dir=tmp_path)
    assert fname in str(info.value) and "pickled" in str(info.value)
    assert not marker.exists()


def test_raw_pickle_file_refused_and_never_runs(tmp_path):
    save(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "run1" / "last" / "weights.npz").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(SaveError, match="weights.npz.*not an .npz"):
        load_checkpoint("run1", saves_dir=tmp_path)
    assert not marker.exists()


def test_truncated_npz(tmp_path):
    save(tmp_path)
    w = tmp_path / "run1" / "last" / "weights.npz"
    data = w.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        w.write_bytes(data[:cut])
        with pytest.raises(SaveError, match="weights.npz.*damaged"):
            load_checkpoint("run1", saves_dir=tmp_path)


def test_foreign_file(tmp_path):
    save(tmp_path)
    w = tmp_path / "run1" / "last" / "optim.npz"
    w.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SaveError, match="optim.npz.*not an .npz"):
        load_checkpoint("run1", saves_dir=tmp_path)
    w.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(4096))  # zip-looking garbage
    with pytest.raises(SaveError, match="optim.npz.*not a readable"):
        load_checkpoint("run1", saves_dir=tmp_path)


def test_npy_instead_of_npz(tmp_path):
    save(tmp_path)
    w = tmp_path / "run1" / "last" / "weights.npz"
    with open(w, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(SaveError, match="weights.npz.*not an .npz"):
        load_checkpoint("run1", saves_dir=tmp_path)


def _rewrite_weights(tmp_path, arrays):
    with open(tmp_path / "run1" / "last" / "weights.npz", "wb") as f:
        np.savez(f, **arrays)


def test_missing_and_extra_arrays(tmp_path):
    params, _, _ = save(tmp_path)
    exp = shapes(params)
    fewer = dict(params)
    del fewer["wpe.w"]
    _rewrite_weights(tmp_path, fewer)
    with pytest.raises(SaveError, match=r"weights.npz.*missing \['wpe.w'\]"):
        load_checkpoint("run1", saves_dir=tmp_path, expected_shapes=exp)
    _rewrite_weights(tmp_path, {**params, "lm_head.w": np.zeros((8, 5), np.float32)})
    with pytest.raises(SaveError, match=r"unexpected \['lm_head.w'\].*config.yaml"):
        load_checkpoint("run1", saves_dir=tmp_path, expected_shapes=exp)
    # without expected_shapes the caller gets whatever is there
    assert "lm_head.w" in load_checkpoint("run1", saves_dir=tmp_path).params


def test_wrong_shapes(tmp_path):
    params, _, _ = save(tmp_path)
    exp = {**shapes(params), "wte.w": (6, 8)}
    with pytest.raises(SaveError, match=r"wte.w saved \(5, 8\) expected \(6, 8\)"):
        load_checkpoint("run1", saves_dir=tmp_path, expected_shapes=exp)


def test_optimizer_moment_shape_must_match_param(tmp_path):
    _, opt, _ = save(tmp_path)
    opt["m/wte.w"] = np.zeros((2, 2), np.float32)
    with open(tmp_path / "run1" / "last" / "optim.npz", "wb") as f:
        np.savez(f, **opt)
    with pytest.raises(SaveError, match="optim.npz.*m/wte.w"):
        load_checkpoint("run1", saves_dir=tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights(tmp_path, bad):
    params, _, _ = save(tmp_path)
    params["h.0.attn.c_attn.w"][3, 4] = bad
    _rewrite_weights(tmp_path, params)
    with pytest.raises(SaveError, match="h.0.attn.c_attn.w.*NaN or inf"):
        load_checkpoint("run1", saves_dir=tmp_path)


def test_integer_weights_refused(tmp_path):
    params, _, _ = save(tmp_path)
    params["wte.w"] = params["wte.w"].astype(np.int64)
    _rewrite_weights(tmp_path, params)
    with pytest.raises(SaveError, match="wte.w.*int64"):
        load_checkpoint("run1", saves_dir=tmp_path)


def _meta_path(tmp_path):
    return tmp_path / "run1" / "last" / "meta.json"


@pytest.mark.parametrize("text, word", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"step": 3}', "format_version"),
    ('{"format_version": "1"}', "format_version"),
    ('{"format_version": 0}', "format_version"),
])
def test_bad_meta(tmp_path, text, word):
    save(tmp_path)
    _meta_path(tmp_path).write_text(text)
    with pytest.raises(SaveError) as info:
        load_checkpoint("run1", saves_dir=tmp_path)
    assert "meta.json" in str(info.value) and word in str(info.value)


def test_future_version(tmp_path):
    save(tmp_path)
    meta = json.loads(_meta_path(tmp_path).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    _meta_path(tmp_path).write_text(json.dumps(meta))
    with pytest.raises(SaveError, match="meta.json.*newer.*upgrade attnlab"):
        load_checkpoint("run1", saves_dir=tmp_path)


@pytest.mark.parametrize("text, word", [("model: [1\n", "not valid YAML at line"),
                                        ("- 1\n", "mapping")])
def test_bad_config_yaml(tmp_path, text, word):
    save(tmp_path)
    (tmp_path / "run1" / "last" / "config.yaml").write_text(text)
    with pytest.raises(SaveError, match=f"config.yaml.*{word}"):
        load_checkpoint("run1", saves_dir=tmp_path)


def test_missing_file_in_save(tmp_path):
    save(tmp_path)
    (tmp_path / "run1" / "last" / "optim.npz").unlink()
    with pytest.raises(SaveError, match="optim.npz.*missing"):
        load_checkpoint("run1", saves_dir=tmp_path)


def test_missing_run_and_tag(tmp_path):
    with pytest.raises(SaveError, match="no saved run named 'nope'"):
        load_checkpoint("nope", saves_dir=tmp_path)
    save(tmp_path)
    with pytest.raises(SaveError, match=r"no tag 'best' \(has: last\)"):
        load_checkpoint("run1", "best", saves_dir=tmp_path)


# ---- listing and deleting

def test_list_runs_newest_first_with_broken_reported(tmp_path):
    assert list_runs(tmp_path / "absent") == []
    params, opt = make_state()
    for name, created in [("old", 100.0), ("new", 300.0), ("mid", 200.0)]:
        meta = {**make_meta(step=int(created)), "created": created}
        save_checkpoint(name, "last", params, opt, meta, {}, saves_dir=tmp_path)
    save_checkpoint("new", "best", params, opt, {**make_meta(), "created": 300.0}, {},
                    saves_dir=tmp_path)
    (tmp_path / "broken" / "last").mkdir(parents=True)
    (tmp_path / "broken" / "last" / "meta.json").write_text("{")
    (tmp_path / ".gitkeep").write_text("")
    (tmp_path / "stray.txt").write_text("not a run")
    runs = list_runs(tmp_path)
    good = [r for r in runs if r.error is None]
    assert [(r.name, r.step, r.created, r.task) for r in good] == [
        ("new", 300, 300.0, "qa"), ("mid", 200, 200.0, "qa"), ("old", 100, 100.0, "qa")]
    assert good[0].tags == ["best", "last"] and good[0].best_metric == 1.25
    broken = [r for r in runs if r.error is not None]
    assert [r.name for r in broken] == ["broken"]
    assert "missing" in broken[0].error


def test_list_runs_reads_trainer_best_key(tmp_path):
    params, opt = make_state()
    save_checkpoint("t", "last", params, opt, {"task": "reversal", "step": 9, "best": 0.75}, {},
                    saves_dir=tmp_path)
    [info] = list_runs(tmp_path)
    assert (info.task, info.step, info.best_metric, info.error) == ("reversal", 9, 0.75, None)


def test_delete_run(tmp_path):
    save(tmp_path, name="a")
    save(tmp_path, name="b")
    delete_run("a", saves_dir=tmp_path)
    assert not (tmp_path / "a").exists() and (tmp_path / "b" / "last").is_dir()
    assert [r.name for r in list_runs(tmp_path)] == ["b"]
    with pytest.raises(SaveError, match="no saved run named 'a'"):
        delete_run("a", saves_dir=tmp_path)


def test_autosave_is_due_at_most_once_per_period():
    t = [100.0]
    a = ck.Autosave(60.0, clock=lambda: t[0])
    assert not a.due()  # not at once: a run's first minute has nothing worth a save
    t[0] = 159.9
    assert not a.due()
    t[0] = 160.0
    assert a.due() and not a.due()  # and then not again until another period has passed
    t[0] = 219.0
    assert not a.due()
    t[0] = 500.0
    assert a.due()
