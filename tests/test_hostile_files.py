"""Hostile or broken files are refused cheaply and never crash the app: bad meta.json values, YAML alias
bombs, .npz headers and zip bombs checked before allocation, config upper bounds, terminal escapes,
symlinks, a UTF-8 byte-order mark."""

import json
import shutil
import time
import tracemalloc
import zipfile

import pytest

from core.checkpoint import SaveError, load_checkpoint
from core.config import ConfigError, load_config
from core.runs import list_runs, write_into_run
from core.tasks.corpus import load_conversations
from core.trainer import Trainer, load_model
from tests.fault_helpers import record
from tui.cli import main

TINY_QA = ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "data.n_eval=2", "train.batch_size=4",
           "train.max_steps=2"]


@pytest.fixture
def good(saves):
    """A tiny trained qa run saved as `good`."""
    tr = Trainer(load_config("qa", overrides=TINY_QA))
    tr.step()
    tr.save("good", "last")
    return saves / "good"


def bomb(levels=6):
    """A YAML 'billion laughs': each level lists the previous one 9 times (9**levels strings)."""
    lines = ['  lr: [&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"],']
    for i in range(1, levels):
        lines.append(f"    &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "],")
    lines[-1] = lines[-1].rstrip(",") + "]"
    return "train:\n" + "\n".join(lines) + "\n"


META_ATTACKS = {
    "created-1e300": {"created": 1e300},
    "created-nan": {"created": float("nan")},
    "created-10e400": "10" + "0" * 400,
    "deep-nesting": "deep",
    "task-dict": {"task": {"qa": 1}},
    "task-escape": {"task": "\x1b[2J\x1b[31mqa"},
    "step-text": {"step": "\x1b]0;pwned\x07"},
}


def plant_meta_attacks(good):
    meta = json.loads((good / "last" / "meta.json").read_text())
    for name, attack in META_ATTACKS.items():
        shutil.copytree(good, good.parent / name)
        path = good.parent / name / "last" / "meta.json"
        if attack == "deep":
            text = '{"format_version": 1, "task": ' + "[" * 100_000 + "]" * 100_000 + "}"
        elif isinstance(attack, str):
            text = json.dumps(meta).replace('"created": ', f'"created": {attack}, "x": ', 1)
        else:
            text = json.dumps({**meta, **attack})  # NaN is written as the bare word NaN
        path.write_text(text)


def test_bad_meta_values_list_as_damaged_and_runs_prints_no_escapes(capsys, good):
    plant_meta_attacks(good)
    runs = {r.name: r for r in list_runs()}
    assert runs["good"].error is None and runs["good"].task == "qa"
    for name in META_ATTACKS:
        assert runs[name].error, name
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and len(out.splitlines()) == len(META_ATTACKS) + 1
    record("hostile_meta", files=len(META_ATTACKS), crashes=0)


async def test_dashboard_starts_and_lists_with_hostile_meta(good):
    from tests.test_tui_app import wait_for
    from tui.app import AttnLab
    from tui.screens.saves import SavesPane
    plant_meta_attacks(good)
    app = AttnLab()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        pane = app.query_one(SavesPane)
        await wait_for(pilot, lambda: len(pane.runs) == len(META_ATTACKS) + 1, what="the saves list")
        assert app.is_running


def test_yaml_alias_bombs_are_refused_at_once(capsys, good, tmp_path):
    text = bomb()
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="alias") as e:
        load_config("qa", cfg)
    assert len(str(e.value)) < 300
    with pytest.raises(ConfigError, match="alias"):
        load_config("qa", overrides=["train.lr=" + text.split("lr: ", 1)[1]])
    (good / "last" / "config.yaml").write_text(text)
    with pytest.raises(SaveError, match="alias"):
        load_checkpoint("good", "last")
    elapsed = time.perf_counter() - t0
    assert main(["train", "qa", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "alias" in err and len(err) < 400
    record("yaml_bombs", bombs=4, bytes=len(text), refused_in_s=round(elapsed, 4))


def npy_header(shape, dtype="<f4"):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    h = repr(header).encode("latin1")
    h += b" " * (63 - (len(h) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h


def replace_member(npz, key, header, payload_bytes, compress):
    """Rewrite one member of an .npz: a hand-made header followed by payload_bytes zero bytes."""
    with zipfile.ZipFile(npz) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(npz, "w", mode) as z:
        for name, data in members.items():
            if name != key + ".npy":
                z.writestr(name, data)
        with z.open(key + ".npy", "w", force_zip64=True) as m:
            m.write(header)
            chunk = bytes(1 << 20)
            for start in range(0, payload_bytes, len(chunk)):
                m.write(chunk[:min(len(chunk), payload_bytes - start)])


def test_npz_header_claiming_a_huge_array_is_refused_before_allocating(capsys, good):
    replace_member(good / "last" / "weights.npz", "wte.w", npy_header((10**6, 10**6)), 64, False)
    with pytest.raises(SaveError, match="wte.w"):
        load_checkpoint("good", "last")  # no config shapes: the declared member size alone refuses it
    with pytest.raises(SaveError, match="wrong shapes"):
        load_model("good", "last")
    assert main(["sample", "good", "--tag", "last", "--prompt", "Q:"]) == 2
    assert "MemoryError" not in capsys.readouterr().err


def test_zip_bomb_member_is_refused_with_little_memory(good):
    weights = good / "last" / "weights.npz"
    model_bytes = sum(a.nbytes for a in load_checkpoint("good", "last").params.values())
    inflated = 64 << 20
    replace_member(weights, "wte.w", npy_header((inflated // 4,)), inflated, True)
    assert weights.stat().st_size < 2 << 20  # a small file on disk
    tracemalloc.start()
    try:
        with pytest.raises(SaveError, match="wrong shapes"):
            load_model("good", "last")
        with pytest.raises(SaveError):
            Trainer.from_save("good", "last")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * model_bytes + (1 << 20), (peak, model_bytes)  # + the zip reader's own buffers
    record("zip_bomb", disk_bytes=weights.stat().st_size, claimed_bytes=inflated, peak_bytes=peak,
           model_bytes=model_bytes)


@pytest.mark.parametrize("override, words", [
    ("model.n_embd=100000", ["model.n_embd", "4096"]),
    ("train.batch_size=1000000", ["train.batch_size", "4096"]),
    ("data.n_eval=1000000000", ["data.n_eval"]),
    ("model.block_size=100000", ["model.block_size"]),
])
def test_config_upper_bounds(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("qa", overrides=[override])
    for w in words:
        assert w in str(e.value)


def test_a_model_too_big_for_this_machine_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match="GiB.*model.n_embd.*train.batch_size"):
        load_config("qa", overrides=["model.n_embd=4096", "model.n_layer=64", "train.batch_size=4096"])


def test_no_symlink_is_followed_inside_a_tag_or_by_export(good, tmp_path):
    outside = tmp_path / "outside.json"
    shutil.copy(good / "last" / "meta.json", outside)
    (good / "last" / "meta.json").unlink()
    (good / "last" / "meta.json").symlink_to(outside)
    with pytest.raises(SaveError, match="symbolic link"):
        load_checkpoint("good", "last")
    # chat export: never through a linked run folder, never re-creating a deleted run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (good.parent / "linked").symlink_to(elsewhere)
    with pytest.raises(SaveError, match="symbolic link"):
        write_into_run("linked", "chat-1.md", "hi")
    with pytest.raises(SaveError, match="does not exist"):
        write_into_run("deleted", "chat-1.md", "hi")
    assert not any(elsewhere.iterdir()) and not (good.parent / "deleted").exists()
    assert write_into_run("good", "chat-1.md", "hi").read_text() == "hi"
    # never replacing a file: refused, or with numbered=True the next free name (two exports in a second)
    with pytest.raises(SaveError, match="already exists"):
        write_into_run("good", "chat-1.md", "again")
    assert write_into_run("good", "chat-1.md", "two", numbered=True).name == "chat-1-2.md"
    assert write_into_run("good", "chat-1.md", "three", numbered=True).name == "chat-1-3.md"
    assert (good / "chat-1.md").read_text() == "hi" and (good / "chat-1-2.md").read_text() == "two"


def test_a_utf8_bom_at_the_start_of_a_corpus_is_stripped(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffQ: hi\nA: hello\n".encode("utf-8"))
    assert load_conversations(p) == [[("hi", "hello")]]
