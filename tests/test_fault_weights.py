"""Promise 2: a weights file cannot run code, and every damaged save is refused with a clear message.

Each case damages one file of a real trainer save, then checks the refusal twice: in-process
(load_checkpoint with the model's shapes, or Trainer.from_save for what only a resume reads) and
through the CLI (`python -m tui eval NAME`: exit 2, one `attnlab: error:` line, no traceback).
Payloads that would create a marker file prove that nothing in a save is ever executed.
"""
import io
import json
import pathlib
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from core.checkpoint import SaveError, load_checkpoint
from core.config import load_config
from core.trainer import Trainer
from tests.fault_helpers import TINY_REVERSAL, assert_one_error_line, cli_inproc, cli_many, record


class Payload:
    """Unpickling this calls Path.touch(marker): if the marker exists, a pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def read_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def edit_npz(fn):
    """A damage function that rewrites an .npz after fn(arrays) edits its dict of arrays."""
    def damage(path, marker):
        arrays = read_npz(path)
        fn(arrays)
        write_npz(path, arrays)
    return damage


def edit_json(fn):
    def damage(path, marker):
        meta = json.loads(path.read_text())
        fn(meta)
        path.write_text(json.dumps(meta))
    return damage


def object_array(path, marker):
    arr = np.empty(1, dtype=object)  # (1,)
    arr[0] = Payload(marker)
    arrays = read_npz(path)
    arrays[next(iter(arrays))] = arr
    write_npz(path, arrays)


def raw_pickle(path, marker):
    path.write_bytes(pickle.dumps(Payload(marker)))


def pickle_as_zip_member(path, marker):
    """A zip whose member is named like an array but holds a bare pickle, not an .npy."""
    names = list(read_npz(path))
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n + ".npy", pickle.dumps(Payload(marker)))


def npy_with_pickle_flag(path, marker):
    """A well-formed .npy header declaring dtype object, followed by the pickle numpy would run."""
    buf = io.BytesIO()
    arr = np.empty(2, dtype=object)  # (2,)
    arr[:] = [Payload(marker), 1]
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    arrays = read_npz(path)
    with zipfile.ZipFile(path, "w") as z:
        for n in arrays:
            z.writestr(n + ".npy", buf.getvalue())


def set_first(value_fn):
    def fn(arrays):
        k = sorted(arrays)[0]
        arrays[k] = value_fn(arrays[k])
    return fn


def flip_byte(path, marker):
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


W, O, M, C = "weights.npz", "optim.npz", "meta.json", "config.yaml"
SYSTEM = "!!python/object/apply:os.system"
# (case id, file damaged, damage(path, marker), words the message must contain, in-process check)
CASES = [
    ("pickled-object-array-weights", W, object_array, ["weights.npz", "pickled"], "load"),
    ("pickled-object-array-optim", O, object_array, ["optim.npz", "pickled"], "load"),
    ("npy-header-asking-for-pickle", W, npy_with_pickle_flag, ["weights.npz", "pickled"], "load"),
    ("bare-pickle-file", W, raw_pickle, ["weights.npz", "not an .npz"], "load"),
    ("bare-pickle-as-zip-member", W, pickle_as_zip_member, ["weights.npz"], "load"),
    ("not-an-npz", W, lambda p, m: p.write_text("hello, I am a text file\n"), ["weights.npz", "not an .npz"], "load"),
    ("empty-file", W, lambda p, m: p.write_bytes(b""), ["weights.npz", "not an .npz"], "load"),
    ("truncated-half", W, lambda p, m: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), ["weights.npz"], "load"),
    ("truncated-after-header", O, lambda p, m: p.write_bytes(p.read_bytes()[:64]), ["optim.npz"], "load"),
    ("flipped-byte", W, flip_byte, ["weights.npz"], "load"),
    ("missing-file", W, lambda p, m: p.unlink(), ["weights.npz", "missing"], "load"),
    ("extra-array", W, edit_npz(lambda a: a.update({"evil.w": np.ones(3, np.float32)})), ["unexpected", "evil.w"], "load"),
    ("missing-array", W, edit_npz(lambda a: a.pop("wpe.w")), ["missing", "wpe.w"], "load"),
    ("int-weights", W, edit_npz(set_first(lambda x: x.astype(np.int32))), ["dtype", "int32"], "load"),
    ("float16-weights", W, edit_npz(set_first(lambda x: x.astype(np.float16))), ["dtype", "float16"], "load"),
    ("bytes-member", W, edit_npz(set_first(lambda x: np.full(x.shape, b"abcd", dtype="S4"))), ["dtype"], "load"),
    ("transposed-weight", W, edit_npz(lambda a: a.update({"wpe.w": a["wpe.w"].T.copy()})), ["shape", "wpe.w"], "load"),
    ("nan-weight", W, edit_npz(set_first(lambda x: np.full_like(x, np.nan))), ["nan"], "load"),
    ("inf-moment", O, edit_npz(lambda a: a.update({k: np.full_like(v, np.inf) for k, v in a.items() if k.startswith("v/")})), ["optim.npz", "inf"], "load"),
    ("moment-wrong-shape", O, edit_npz(lambda a: a.update({"m/wpe.w": np.zeros(3, np.float32)})), ["m/wpe.w", "shape"], "load"),
    ("future-format-version", M, edit_json(lambda m: m.update(format_version=99)), ["format_version 99", "upgrade"], "load"),
    ("meta-not-json", M, lambda p, m: p.write_text("{not json"), ["meta.json", "json"], "load"),
    ("meta-a-list", M, lambda p, m: p.write_text("[1, 2]"), ["meta.json", "object"], "load"),
    ("meta-without-tokenizer", M, edit_json(lambda m: m.pop("tokenizer")), ["tokenizer"], "resume"),
    ("meta-bad-tokenizer", M, edit_json(lambda m: m.update(tokenizer={"chars": ["ab"]})), ["single-character"], "resume"),
    ("meta-garbage-rng-state", M, edit_json(lambda m: m.update(rng_state={"bit_generator": "Nope"})), ["damaged"], "resume"),
    ("meta-garbage-history", M, edit_json(lambda m: m.update(history={"train": [1, 2]})), ["damaged"], "resume"),
    ("meta-step-not-a-number", M, edit_json(lambda m: m.update(step="many")), ["damaged"], "resume"),
    ("optim-without-step-count", O, edit_npz(lambda a: a.pop("t")), ["lacks", "t"], "resume"),
    ("optim-without-moment", O, edit_npz(lambda a: a.pop("m/wpe.w")), ["lacks", "m/wpe.w"], "resume"),
    ("config-python-tag", C, lambda p, m: p.write_text(f"{SYSTEM} ['touch {m}']\n"), ["config.yaml", "yaml"], "load"),
    ("config-python-tag-in-key", C, lambda p, m: p.write_text(f"model:\n  n_embd: {SYSTEM} ['touch {m}']\n"), ["config.yaml", "yaml"], "load"),
    ("config-bad-date", C, lambda p, m: p.write_text("model: {n_embd: 2001-13-45}\n"), ["config.yaml", "yaml"], "load"),
    ("config-wrong-value", C, lambda p, m: p.write_text("task: reversal\nmodel: {n_embd: -4}\n"), ["config.yaml", "n_embd"], "resume"),
    ("config-shape-mismatch", C, lambda p, m: p.write_text("task: reversal\nmodel: {n_embd: 64, causal: false}\n"), ["shape"], "resume"),
]
SAMPLING_READS = {"meta-without-tokenizer", "meta-bad-tokenizer", "config-wrong-value", "config-shape-mismatch"}


@pytest.fixture(scope="module")
def good_save(tmp_path_factory):
    """A real 2-step reversal save under saves/good/best, and the model's parameter shapes."""
    saves = tmp_path_factory.mktemp("saves")
    tr = Trainer(load_config("reversal", overrides=TINY_REVERSAL))
    tr.step()
    tr.step()
    tr.save("good", "best", saves_dir=saves)
    return saves, dict(tr.model.shapes)


def damaged(saves, case, tmp_path):
    cid, fname, damage, _, _ = case
    shutil.copytree(saves / "good", saves / cid)
    marker = tmp_path / f"marker-{cid}"
    damage(saves / cid / "best" / fname, marker)
    return marker


def test_payloads_are_live(tmp_path):
    """Control: with pickles allowed, the object array does run its payload, so the refusals mean something."""
    marker = tmp_path / "marker"
    path = tmp_path / "w.npz"
    write_npz(path, {"a": np.zeros(2, np.float32)})
    object_array(path, marker)
    with np.load(path, allow_pickle=True) as z:
        z["a"]
    assert marker.exists()
    marker.unlink()
    write_npz(path, {"a": np.zeros(2, np.float32)})
    npy_with_pickle_flag(path, marker)
    with np.load(path, allow_pickle=True) as z:
        z["a"]
    assert marker.exists()


def test_every_damaged_save_is_refused_in_process_and_by_the_cli(good_save, tmp_path, monkeypatch, capsys):
    saves, shapes = good_save
    markers = {case[0]: damaged(saves, case, tmp_path) for case in CASES}
    refusals = 0
    for cid, _, _, words, how in CASES:
        with pytest.raises(SaveError) as info:
            if how == "load":
                load_checkpoint(cid, "best", saves_dir=saves, expected_shapes=shapes)
            Trainer.from_save(cid, "best", saves_dir=saves)
        msg = str(info.value).lower()
        assert all(w.lower() in msg for w in words), (cid, msg)
        assert "\x1b" not in msg and "\n" not in msg
        commands = [["eval", cid]]
        if how == "load" or cid in SAMPLING_READS:  # sampling never reads the RNG, history or moments
            commands += [["sample", cid, "--prompt", "AB"], ["chat", cid]]
        for args in commands:
            rc, out, err = cli_inproc(args, saves, monkeypatch, capsys, stdin="hello\n")
            line = assert_one_error_line(rc, err, *(words if args[0] == "eval" else []))
            assert out == b"" and cid in line, (args, out, line)
            refusals += 1
    assert not any(m.exists() for m in markers.values()), "a payload ran"
    assert not list(tmp_path.glob("marker*"))
    record("test_fault_weights.py::test_every_damaged_save_is_refused_in_process_and_by_the_cli",
           damaged_saves=len(CASES), refusals_checked=refusals + len(CASES), payloads_executed=0)


PROCESS_CASES = ["pickled-object-array-weights", "npy-header-asking-for-pickle", "truncated-half",
                 "nan-weight", "future-format-version", "config-python-tag"]


def test_the_command_itself_exits_2_without_a_traceback(good_save, tmp_path):
    """`python -m tui eval NAME` (and sample, chat) as real processes: exit 2, one error line."""
    saves, _ = good_save
    cases = {c[0]: c for c in CASES}
    markers = [damaged(saves, (f"p-{cid}", *cases[cid][1:]), tmp_path) for cid in PROCESS_CASES]
    jobs = [(["eval", f"p-{cid}"], saves, None) for cid in PROCESS_CASES]
    jobs += [(["sample", "p-nan-weight", "--prompt", "AB"], saves, None),
             (["chat", "p-pickled-object-array-weights"], saves, b"hello\n")]
    results = cli_many(jobs)
    for (args, _, _), (rc, out, err) in zip(jobs, results):
        words = cases[args[1][2:]][3] if args[0] == "eval" else []
        line = assert_one_error_line(rc, err, *words)
        assert out == b"" and args[1] in line, (args, out, line)
    assert not any(m.exists() for m in markers)
    record("test_fault_weights.py::test_the_command_itself_exits_2_without_a_traceback", processes=len(jobs))
