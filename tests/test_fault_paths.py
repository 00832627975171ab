"""Promise 3: saves stay in saves/.

Hostile run names (random text, '..', absolute paths, separators, control characters) are refused
with a message, by the library and by the CLI; symlinks out of saves/ are never followed when writing
or deleting, so the directory they point to stays byte-for-byte untouched.
"""
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.checkpoint import SaveError, delete_run, load_checkpoint, run_dir, save_checkpoint
from core.config import load_config
from core.trainer import Trainer
from tests.fault_helpers import TINY_REVERSAL, assert_one_error_line, cli, cli_inproc, record

PARAMS = {"wte.w": np.ones((3, 2), np.float32)}  # (V, C)
OPT = {"t": np.array(1, np.int64)}


def snapshot(root):
    """Every path under root with its bytes (files) or link target: to prove nothing changed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = (os.readlink(p) if p.is_symlink()
                                              else p.read_bytes() if p.is_file() else None)
    return out


NAME_CHARS = st.sampled_from(list("./\\-_ aZ09~$*?:\x00\x1b\n\r\t\x7f\u202e\u2215\uff0e\u00e9"))
NAMES = st.one_of(st.text(NAME_CHARS, max_size=12), st.text(max_size=70),
                  st.builds(lambda a, b: a + b, st.sampled_from(["..", "../", "/", "./", "~/", "a/../"]),
                            st.text(NAME_CHARS, max_size=8)))
TRIED = {"names": 0, "accepted": 0}


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_any_name_is_refused_or_stays_a_direct_child_of_saves(tmp_path, name):
    sandbox = tmp_path / "sandbox"
    saves = sandbox / "saves"
    saves.mkdir(parents=True, exist_ok=True)
    TRIED["names"] += 1
    try:
        d = run_dir(name, saves)
    except SaveError as e:
        assert "\x1b" not in str(e) and "\n" not in str(e) and "\x00" not in str(e)
        with pytest.raises(SaveError):
            save_checkpoint(name, "last", PARAMS, OPT, {}, {}, saves_dir=saves)
    else:
        TRIED["accepted"] += 1
        assert d.parent == saves and d.name == name and not name.startswith(".")
        assert save_checkpoint(name, "last", PARAMS, OPT, {}, {}, saves_dir=saves) == d / "last"
        delete_run(name, saves_dir=saves)
    assert [p.name for p in sandbox.iterdir()] == ["saves"]  # nothing written beside saves/


def test_name_figures():
    record("test_fault_paths.py::test_any_name_is_refused_or_stays_a_direct_child_of_saves", **TRIED)


HOSTILE = ["../x", "../../etc/passwd", "/tmp/abs", "a/b", "a\\b", "..", ".", "\x1b[2Jclear", "tab\tname",
           "new\nline", "nul\x00", "", "x" * 65, "caf\u00e9", "\u202erev"]


def test_cli_refuses_hostile_save_names(tmp_path, monkeypatch, capsys):
    saves = tmp_path / "saves"
    for bad in HOSTILE:
        for args in (["train", "reversal", "--save", bad, "--steps", "1"] + sum((["--set", o] for o in TINY_REVERSAL), []),
                     ["eval", bad], ["sample", bad, "--prompt", "AB"], ["train", "reversal", "--resume", bad]):
            if args[0] == "train" and bad in ("", "nul\x00"):
                continue  # '' means "no name given"; argv cannot hold NUL (the library test covers both)
            rc, out, err = cli_inproc(args, saves, monkeypatch, capsys)
            assert_one_error_line(rc, err, "name")
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs").exists()
    assert [p.name for p in tmp_path.iterdir()] in ([], ["saves"])
    assert not saves.exists() or list(saves.iterdir()) == []
    # and as a real process
    rc, out, err = cli(["train", "reversal", "--save", "../x", "--steps", "1"], saves)
    assert_one_error_line(rc, err, "run name", "'/'")
    assert [p.name for p in tmp_path.iterdir()] in ([], ["saves"])
    record("test_fault_paths.py::test_cli_refuses_hostile_save_names", names=len(HOSTILE), commands=len(HOSTILE) * 4 + 1)


@pytest.fixture
def outside(tmp_path):
    out = tmp_path / "outside"
    out.mkdir()
    (out / "precious.txt").write_text("do not touch")
    (out / "last").mkdir()
    (out / "last" / "weights.npz").write_bytes(b"not yours")
    return out


def test_symlinked_run_dir_is_not_followed_by_the_cli(tmp_path, outside):
    saves = tmp_path / "saves"
    saves.mkdir()
    (saves / "evil").symlink_to(outside)
    before = snapshot(outside)
    rc, out, err = cli(["train", "reversal", "--save", "evil", "--steps", "2",
                        *sum((["--set", o] for o in TINY_REVERSAL), [])], saves)
    assert_one_error_line(rc, err, "symbolic link")
    assert snapshot(outside) == before


def _save(tr, name, tag, saves):
    return tr.save(name, tag, saves_dir=saves)


def test_links_inside_a_run_are_never_written_through(tmp_path, outside):
    """Symlinked tag, .old and temp directories, and a symlinked file inside a tag."""
    saves = tmp_path / "saves"
    tr = Trainer(load_config("reversal", overrides=TINY_REVERSAL))
    tr.step()
    _save(tr, "run", "last", saves)
    before = snapshot(outside)
    run = saves / "run"
    for link in ("best", ".best.old", ".last.old"):
        (run / link).symlink_to(outside)
        with pytest.raises(SaveError, match="symbolic link"):
            _save(tr, "run", "best" if "best" in link else "last", saves)
        (run / link).unlink()
    # a temp dir name this process would use, pointing outside: removed as a link, never entered
    (run / f".last.tmp-{os.getpid()}").symlink_to(outside)
    # a file inside the current save replaced by a link to an outside file
    (run / "last" / "weights.npz").unlink()
    (run / "last" / "weights.npz").symlink_to(outside / "precious.txt")
    _save(tr, "run", "last", saves)
    assert load_checkpoint("run", "last", saves_dir=saves).meta["step"] == 1
    # deleting a run whose tag is a link removes the link, not what it points to
    (run / "best").symlink_to(outside)
    delete_run("run", saves_dir=saves)
    assert not run.exists()
    assert snapshot(outside) == before
