"""Config: defaults, presets, layering, overrides, round-trip, and one-line errors that name the key."""
import dataclasses

from pathlib import Path

import pytest
import yaml

from core.config import (
    PRESETS_DIR, SECTIONS, TASKS, Config, ConfigError, DataConfig, ModelConfig, SampleConfig,
    TrainConfig, config_from_dict, config_to_dict, load_config, parse_level_weights, replace_in,
)


def write(tmp_path, text, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def raises(fn, *words):
    """fn() raises ConfigError whose single-line message contains every word."""
    with pytest.raises(ConfigError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


# ---- defaults and presets

def test_defaults_match_contract():
    c = Config()
    assert c.task == "qa"
    assert (c.model.vocab_size, c.model.block_size, c.model.n_layer, c.model.n_head,
            c.model.n_embd, c.model.causal, c.model.tie_weights, c.model.dropout) == (
        0, 64, 2, 4, 64, True, True, 0.0)
    t = c.train
    assert (t.batch_size, t.lr, t.min_lr, t.warmup_steps, t.max_steps, t.weight_decay, t.beta1,
            t.beta2, t.grad_clip, t.eval_interval, t.eval_batches, t.seed, t.threads,
            t.max_seconds, t.patience) == (32, 1e-3, 1e-4, 20, 2000, 0.1, 0.9, 0.99, 1.0, 100, 8,
                                           1337, 1, 0.0, 0)
    d = c.data
    assert (d.corpus, d.val_corpus, d.val_fraction, d.seq_len, d.n_train, d.n_eval) == (
        "", "", 0.1, 6, 0, 1000)
    s = c.sample
    assert (s.temperature, s.top_k, s.top_p, s.max_new_tokens, s.seed) == (0.8, 0, 1.0, 200, 0)


def test_dataclasses_are_frozen():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.model.n_layer = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.task = "reversal"


@pytest.mark.parametrize("task", TASKS)
def test_preset_values_are_loaded(task):
    """Every key in the preset file reaches the Config (tuned numbers come from the file, not here)."""
    data = yaml.safe_load((PRESETS_DIR / f"{task}.yaml").read_text(encoding="utf-8"))
    c = load_config(task)
    assert c.task == task
    for sec, body in data.items():
        for key, value in body.items():
            got, default = getattr(getattr(c, sec), key), getattr(getattr(Config(), sec), key)
            assert type(got) is type(default), (sec, key)
            assert got == (float(value) if isinstance(default, float) else value), (sec, key)


def test_reversal_preset_shape():
    c = load_config("reversal")
    assert c.model.causal is False and c.model.tie_weights is False
    assert (c.model.n_layer, c.model.n_embd, c.model.block_size, c.model.dropout) == (1, 32, 16, 0.0)
    assert c.model.n_head in (2, 4)
    assert c.train.batch_size == 64 and c.train.weight_decay == 0.0
    assert c.data.seq_len == 6 <= c.model.block_size
    assert c.train.lr > Config().train.lr  # a tiny model on clean data takes a high rate


def test_qa_and_dialogue_preset_shape():
    qa, dia = load_config("qa"), load_config("dialogue")
    for c in (qa, dia):
        assert (c.model.n_layer, c.model.n_embd) == (4, 128) and c.model.n_embd % c.model.n_head == 0
        assert c.model.causal is True
        assert c.model.block_size * c.train.batch_size <= 4096  # a step stays a fraction of a second
    # the QA window holds every pair of the project's corpus, so no answer is generated past the window
    pairs = (Path(__file__).resolve().parent.parent / "corpora/qa/train.txt").read_text().split("\n\n")
    assert qa.model.block_size >= max(len(p) + 1 for p in pairs)
    # the preset's level weights name levels the corpus has
    levels = set((PRESETS_DIR.parent.parent / "corpora/qa/train.levels").read_text().split())
    assert qa.data.level_weights and set(parse_level_weights(qa.data.level_weights)) <= levels


@pytest.mark.parametrize("task", TASKS)
def test_presets_set_only_what_differs_with_a_reason(task):
    path = PRESETS_DIR / f"{task}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = config_to_dict(Config())
    assert set(data) <= set(SECTIONS)
    for sec, body in data.items():
        for key, value in body.items():
            assert value != defaults[sec][key], f"{task}: {sec}.{key} repeats the default"
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()
             if ln.startswith("  ") and ":" in ln]
    assert lines and all("#" in ln for ln in lines), "every preset key needs a '# why' comment"


def test_default_task_is_qa():
    assert load_config() == load_config("qa")


# ---- layering

def test_file_overrides_preset_and_overrides_win(tmp_path):
    p = write(tmp_path, "model:\n  n_layer: 3\ntrain:\n  lr: 5.0e-3\n  max_steps: 50\n")
    c = load_config("qa", p, ["train.max_steps=7"])
    assert c.model.n_layer == 3           # file over preset
    assert c.model.n_embd == 128          # preset kept
    assert c.train.lr == 5e-3
    assert c.train.max_steps == 7         # override over file
    assert c.train.beta1 == 0.9           # default kept


def test_task_from_file_and_precedence(tmp_path):
    p = write(tmp_path, "task: reversal\n")
    assert load_config(path=p).task == "reversal"
    assert load_config(path=p).model.causal is False
    assert load_config("dialogue", p).task == "dialogue"        # argument wins over the file
    assert load_config(path=p, overrides=["task=qa"]).task == "qa"  # override wins over the file


def test_empty_file_and_empty_sections_are_defaults(tmp_path):
    assert load_config("qa", write(tmp_path, "")) == load_config("qa")
    assert load_config("qa", write(tmp_path, "model:\n", "b.yaml")) == load_config("qa")


def test_overrides_parse_yaml_values():
    c = load_config("qa", overrides=["model.causal=false", "train.lr=3e-3", "train.min_lr=1e-5",
                                     "data.corpus=my corpus.txt", "sample.top_p=0.9",
                                     "train.max_seconds=10"])
    assert c.model.causal is False
    assert c.train.lr == 0.003 and isinstance(c.train.lr, float)
    assert c.train.min_lr == 1e-5
    assert c.data.corpus == "my corpus.txt"
    assert c.sample.top_p == 0.9
    assert c.train.max_seconds == 10.0 and isinstance(c.train.max_seconds, float)


def test_string_field_override_keeps_raw_text():
    c = load_config("qa", overrides=["data.corpus=123", "data.val_corpus="])
    assert c.data.corpus == "123"
    assert c.data.val_corpus == ""


def test_overrides_as_mapping():
    c = load_config(overrides={"model.n_layer": 6, "train.lr": "3e-3", "task": "dialogue"})
    assert (c.task, c.model.n_layer, c.train.lr) == ("dialogue", 6, 3e-3)


def test_numeric_string_in_file_becomes_float(tmp_path):
    c = load_config("qa", write(tmp_path, "train:\n  lr: 3e-3\n  weight_decay: 1\n"))
    assert c.train.lr == 3e-3 and isinstance(c.train.lr, float)
    assert c.train.weight_decay == 1.0 and isinstance(c.train.weight_decay, float)


# ---- round trip

def test_round_trip_through_dict_and_yaml():
    c = load_config("reversal", overrides=["train.lr=3e-3", "data.corpus=x.txt"])
    d = config_to_dict(c)
    assert d["model"]["causal"] is False and d["task"] == "reversal"
    assert config_from_dict(d) == c
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(d))) == c


def test_config_from_dict_fills_defaults():
    c = config_from_dict({"task": "reversal", "model": {"n_layer": 5}})
    assert c.model.n_layer == 5 and c.model.n_embd == 64 and c.task == "reversal"


def test_replace_in():
    c = load_config("qa")
    c2 = replace_in(c, "model.vocab_size", 27)
    assert c2.model.vocab_size == 27 and c.model.vocab_size == 0
    assert c2.model.n_embd == c.model.n_embd
    assert replace_in(c, "task", "dialogue").task == "dialogue"
    raises(lambda: replace_in(c, "model.vocab_size", -1), "model.vocab_size", ">= 0")
    raises(lambda: replace_in(c, "model.vocab", 3), "model.vocab", "vocab_size")


# ---- errors

def test_malformed_yaml_names_line(tmp_path):
    p = write(tmp_path, "model:\n  n_layer: 2\n  n_head: [4\n")
    msg = raises(lambda: load_config("qa", p), str(p), "line ", "invalid YAML")
    assert "line 4" in msg or "line 3" in msg


def test_top_level_not_mapping(tmp_path):
    p = write(tmp_path, "- a\n- b\n")
    raises(lambda: load_config("qa", p), str(p), "top level", "mapping", "list")


def test_section_not_mapping(tmp_path):
    p = write(tmp_path, "model: 3\n")
    raises(lambda: load_config("qa", p), str(p), "'model'", "mapping")


def test_unknown_section_suggests(tmp_path):
    p = write(tmp_path, "modle:\n  n_layer: 2\n")
    raises(lambda: load_config("qa", p), str(p), "modle", "did you mean 'model'", "train")


def test_unknown_key_lists_allowed_and_suggests(tmp_path):
    p = write(tmp_path, "model:\n  n_layers: 2\n")
    raises(lambda: load_config("qa", p), str(p), "model.n_layers", "did you mean 'model.n_layer'",
           "block_size", "dropout")


@pytest.mark.parametrize("text, key, word", [
    ("model:\n  causal: 1\n", "model.causal", "true or false"),
    ("model:\n  n_layer: true\n", "model.n_layer", "integer"),
    ("model:\n  n_layer: 2.5\n", "model.n_layer", "integer"),
    ("model:\n  n_layer: '2'\n", "model.n_layer", "integer"),
    ("train:\n  lr: fast\n", "train.lr", "number"),
    ("train:\n  lr: true\n", "train.lr", "number"),
    ("train:\n  lr: .nan\n", "train.lr", "finite"),
    ("train:\n  lr: [1]\n", "train.lr", "number"),
    ("data:\n  corpus: 12\n", "data.corpus", "string"),
    ("train:\n  lr:\n", "train.lr", "number"),
])
def test_wrong_types(tmp_path, text, key, word):
    p = write(tmp_path, text)
    raises(lambda: load_config("qa", p), str(p), key, word)


@pytest.mark.parametrize("override, key, word", [
    ("model.n_layer=0", "model.n_layer", "> 0"),
    ("model.n_head=-1", "model.n_head", "> 0"),
    ("model.n_embd=0", "model.n_embd", "> 0"),
    ("model.block_size=0", "model.block_size", "> 0"),
    ("train.batch_size=0", "train.batch_size", "> 0"),
    ("train.max_steps=-5", "train.max_steps", "> 0"),
    ("train.lr=0", "train.lr", "> 0"),
    ("train.warmup_steps=-1", "train.warmup_steps", ">= 0"),
    ("data.seq_len=0", "data.seq_len", "> 0"),
    ("model.dropout=1.0", "model.dropout", "[0, 1)"),
    ("model.dropout=-0.1", "model.dropout", "[0, 1)"),
    ("sample.top_p=0", "sample.top_p", "(0, 1]"),
    ("sample.top_p=1.5", "sample.top_p", "(0, 1]"),
    ("sample.top_k=-1", "sample.top_k", ">= 0"),
    ("train.beta2=1", "train.beta2", "[0, 1)"),
])
def test_ranges(override, key, word):
    raises(lambda: load_config("qa", overrides=[override]), override, key, word)


def test_boundaries_accepted():
    c = load_config("qa", overrides=["model.dropout=0", "sample.top_p=1", "sample.top_k=0",
                                     "train.warmup_steps=0"])
    assert (c.model.dropout, c.sample.top_p, c.sample.top_k, c.train.warmup_steps) == (0.0, 1.0, 0, 0)


def test_n_embd_not_divisible_by_n_head():
    msg = raises(lambda: load_config("qa", overrides=["model.n_head=3"]),
                 "model.n_embd", "model.n_head", "divisible")
    assert "model.n_head=3" in msg  # blames the layer that set the later value


def test_reversal_seq_len_must_fit_block():
    raises(lambda: load_config("reversal", overrides=["data.seq_len=17"]),
           "data.seq_len", "block_size")
    assert load_config("reversal", overrides=["data.seq_len=16"]).data.seq_len == 16


def test_position_encoding_choice():
    assert load_config("reversal").model.pos == "learned"  # the default
    assert load_config("qa").model.pos == "rope"  # the qa preset's choice
    assert load_config("qa", overrides=["model.pos=learned"]).model.pos == "learned"
    msg = raises(lambda: load_config("qa", overrides=["model.pos=rotary"]), "model.pos", "learned", "rope")
    assert "unknown value" in msg
    raises(lambda: load_config("qa", overrides=["model.pos=rope", "model.n_embd=12", "model.n_head=4"]),
           "model.pos", "even head size")


def test_min_lr_above_lr():
    raises(lambda: load_config("qa", overrides=["train.lr=1e-5"]), "train.min_lr", "train.lr")


def test_unknown_task():
    raises(lambda: load_config("reversl"), "reversl", "reversal", "qa", "dialogue")
    raises(lambda: load_config(overrides=["task=chatter"]), "chatter", "reversal, qa, dialogue, chat")
    raises(lambda: config_from_dict({"task": 3}), "task", "reversal")


@pytest.mark.parametrize("bad", ["train.lr", "lr=3", "train.lr.x=3", "nope.lr=3", "=3"])
def test_malformed_overrides(bad):
    msg = raises(lambda: load_config("qa", overrides=[bad]), "override")
    assert bad in msg


def test_override_unknown_key_and_bad_value():
    raises(lambda: load_config("qa", overrides=["train.lrr=3"]), "train.lrr", "did you mean 'train.lr'")
    raises(lambda: load_config("qa", overrides=["train.lr=[1"]), "train.lr=[1", "value")


def test_level_weights_are_parsed_and_checked(tmp_path):
    assert parse_level_weights("facts=3, usage=2 greetings=0.5") == {"facts": 3.0, "usage": 2.0, "greetings": 0.5}
    assert parse_level_weights("") == {}
    cfg = load_config("qa", overrides=["data.level_weights=facts=3"])
    assert cfg.data.level_weights == "facts=3"
    raises(lambda: load_config("qa", overrides=["data.level_weights=facts"]), "data.level_weights", "level=weight")
    raises(lambda: load_config("qa", overrides=["data.level_weights=facts=x"]), "'facts'", "not a number")
    raises(lambda: load_config("qa", overrides=["data.level_weights=facts=-1"]), ">= 0")
    raises(lambda: load_config("qa", overrides=["data.level_weights=facts=1,facts=2"]), "twice")
    p = write(tmp_path, "data:\n  level_weights: facts=nan\n")
    raises(lambda: load_config("qa", p), str(p), "data.level_weights", "finite")


def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    raises(lambda: load_config("qa", p), str(p), "not found")
    raises(lambda: load_config("qa", tmp_path), str(tmp_path), "not a file")


def test_not_utf8(tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"model:\n  n_layer: 2 # caf\xe9\n")
    raises(lambda: load_config("qa", p), str(p), "UTF-8", "0xe9")


def test_config_from_dict_errors():
    raises(lambda: config_from_dict([1, 2]), "top level")
    raises(lambda: config_from_dict({"model": {"n_layer": "x"}}), "model.n_layer", "integer")
    raises(lambda: config_from_dict({"model": {"zzz": 1}}), "model.zzz")


def test_section_classes_exposed():
    assert SECTIONS == {"model": ModelConfig, "train": TrainConfig, "data": DataConfig,
                        "sample": SampleConfig}


def test_restart_inside_the_run_and_its_floor_below_its_peak():
    raises(lambda: load_config("qa", overrides=["train.restart_at=5000"]), "train.restart_at", "train.max_steps",
           "0 = no restart")
    raises(lambda: load_config("qa", overrides=["train.restart_at=10"]), "train.restart_at", "train.warmup_steps")
    raises(lambda: load_config("qa", overrides=["train.restart_at=2000", "train.restart_lr=1e-5"]),
           "train.restart_min_lr", "train.restart_lr")
    c = load_config("qa", overrides=["train.restart_at=2000", "train.restart_lr=5e-4"])
    assert (c.train.restart_at, c.train.restart_lr, c.train.restart_min_lr) == (2000, 5e-4, 1e-4)
    load_config("qa", overrides=["train.restart_lr=1e-5"])  # no restart: its rates are not used, not checked
