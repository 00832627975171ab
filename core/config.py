"""Run configuration: frozen dataclasses, YAML presets, user files and `section.key=value` overrides.

Defaults live only in the dataclasses below; a preset (core/presets/<task>.yaml) sets what its task
changes. Every error is a ConfigError whose one-line message names where, which key, and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, get_type_hints

from core.text import safe_text
from core.yamlsafe import YamlRefused, load_yaml_text, read_limited

TASKS = ("reversal", "qa", "dialogue", "chat")
PRESETS_DIR = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A configuration problem, described in one line: where, which key, what is wrong, how to fix it."""

    def __init__(self, message: str):
        super().__init__(safe_text(message))  # user text is echoed in messages: never raw controls


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 0      # filled from the tokenizer at run time (0 = not yet known)
    block_size: int = 64     # context window T
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    causal: bool = True      # False = bidirectional encoder (reversal)
    pos: str = "learned"     # positions: "learned" embeddings (GPT-2) or "rope" (rotary, relative)
    smear: bool = False      # each head's key mixes in the previous position's key (learned taps
                             # h.i.attn.smear): one layer can then match two characters at once
    tie_weights: bool = True  # lm_head shares wte
    dropout: float = 0.0     # residual + attention-prob dropout, train only


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    max_steps: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0   # 0 = no clipping
    eval_interval: int = 100
    eval_batches: int = 8
    seed: int = 1337
    threads: int = 1
    max_seconds: float = 0.0  # 0 = no limit
    patience: int = 0        # evals without val improvement before early stop; 0 = off
    ema: float = 0.0         # evaluate, show and save a running average of the weights with this decay
                             # (at most; early on it is (1 + step) / (10 + step), about the last ninth of
                             # the steps so far); 0 = off, the weights as trained
    restart_at: int = 0      # a warm restart: the first cosine ends at this step and a second one runs from
                             # restart_lr down to restart_min_lr at max_steps (no warmup); 0 = one cosine
    restart_lr: float = 1e-3
    restart_min_lr: float = 1e-4
    teachers: str = ""       # saves (NAME or NAME:TAG, tag best by default; commas between) whose mean next-character
                             # probabilities are the training targets (distillation): one model learns what
                             # several answer together. "" = the corpus' characters alone
    teacher_weight: float = 1.0  # the teachers' share of each target; the rest is the corpus' own next character


@dataclass(frozen=True)
class DataConfig:
    corpus: str = ""         # path; "" = the task's own corpus in corpora/
    val_corpus: str = ""
    val_fraction: float = 0.1
    seq_len: int = 6         # reversal length
    n_train: int = 0         # reversal train set size, 0 = sample fresh each batch
    n_eval: int = 1000       # held-out examples for metrics
    fresh_fraction: float = 0.5  # dialogue: share of training windows whose slot values are made up
    letter_words: float = 0.0    # dialogue: share of made-up values that are random letters (else
                                 # half syllable words, half words of the training text)
    text_letters: float = 0.0    # dialogue: share of those random-letter values whose letters are drawn as
                                 # often as they occur in the training text ("tohladrpo"), not uniformly
                                 # ("qzvkjw"): common letters and repeats, as real words have, to copy exactly
    dense_fraction: float = 0.5  # dialogue: share of the made-up-value dialogues built densely (facts, then
                                 # each asked back), the rest corpus dialogues with their values replaced
    ask_noise: float = 0.0   # dialogue: share of the made-up-value dialogues' questions (all but the facts)
                             # with one or two made-up words put between their words, so a question with
                             # words never seen is still read by the words it knows
    ask_swap: float = 0.0    # dialogue: in those questions, the chance that each of their own words (but a
                             # number) is replaced by a made-up word, so no frame is a sure sign of the slot
                             # asked, and the answer is the fact the chat holds ("Zup name kel I tove you?")
    ood_madeup: float = 0.0  # dialogue: share of the made-up-value dialogues' out-of-domain questions asked
                             # about made-up things ("Who zorb Kelavu?"), still answered don't-know: a
                             # question naming nothing taught gets it, whatever its words
    fact_noise: float = 0.0  # dialogue: the same for the facts they state, so the value is found by the
                             # acknowledgement after it (a frame the model knows), not by the fact's phrasing
    cue_fraction: float = 0.0  # dialogue: share of the dense dialogues' facts stated and asked around one
                               # made-up word ("My zuvo is X." / "What is my zuvo?"): the slot is read from
                               # the acknowledgement of the fact whose words the question repeats
    answers_only: bool = False  # qa, dialogue, chat: training loss on answer characters alone; questions and
                                # the facts they state are read, never predicted (the dialogue and chat
                                # presets set it)
    level_weights: str = ""  # qa: how often training windows hold each corpus level, e.g. "facts=3, usage=2":
                             # a pair of a listed level is drawn that many times as often as one of
                             # weight 1 (unlisted levels). Levels come from the .levels file beside the
                             # corpus; a corpus without one draws every pair alike, as "" does


@dataclass(frozen=True)
class SampleConfig:
    temperature: float = 0.8
    top_k: int = 0           # 0 = off
    top_p: float = 1.0
    max_new_tokens: int = 200
    seed: int = 0
    unsure_below: float = 0.0  # answer a question (ending in "?") "I don't know that yet." when the model's
                               # likeliest character at one of its reply's first 4 is less likely than this
                               # (0 = off): one it was never taught is begun as a guess (core.sample.Unsure)
    unsure_reply_below: float = 0.0  # the same when its likeliest character anywhere in the reply is less likely
                                     # than this (0 = off; the reply is then held back until it ends): a fact
                                     # never told is answered in a sure frame around a made-up value


@dataclass(frozen=True)
class Config:
    task: str = "qa"         # one of TASKS
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "train": TrainConfig, "data": DataConfig, "sample": SampleConfig,
}
_TYPES = {name: get_type_hints(cls) for name, cls in SECTIONS.items()}

CHOICES: dict[str, tuple[str, ...]] = {"model.pos": ("learned", "rope")}

# (low, high, low_inclusive, high_inclusive); None = unbounded on that side
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "model.vocab_size": (0, None, True, False),
    "model.block_size": (0, None, False, False),
    "model.n_layer": (0, None, False, False),
    "model.n_head": (0, None, False, False),
    "model.n_embd": (0, None, False, False),
    "model.dropout": (0, 1, True, False),
    "train.batch_size": (0, None, False, False),
    "train.lr": (0, None, False, False),
    "train.min_lr": (0, None, True, False),
    "train.warmup_steps": (0, None, True, False),
    "train.max_steps": (0, None, False, False),
    "train.weight_decay": (0, None, True, False),
    "train.beta1": (0, 1, True, False),
    "train.beta2": (0, 1, True, False),
    "train.grad_clip": (0, None, True, False),
    "train.eval_interval": (0, None, False, False),
    "train.eval_batches": (0, None, False, False),
    "train.seed": (0, None, True, False),
    "train.threads": (0, None, False, False),
    "train.max_seconds": (0, None, True, False),
    "train.patience": (0, None, True, False),
    "train.ema": (0, 1, True, False),
    "train.restart_at": (0, None, True, False),
    "train.restart_lr": (0, None, False, False),
    "train.restart_min_lr": (0, None, True, False),
    "train.teacher_weight": (0, 1, True, True),
    "data.val_fraction": (0, 1, True, False),
    "data.seq_len": (0, None, False, False),
    "data.n_train": (0, None, True, False),
    "data.n_eval": (0, None, False, False),
    "data.fresh_fraction": (0, 1, True, True),
    "data.letter_words": (0, 1, True, True),
    "data.text_letters": (0, 1, True, True),
    "data.dense_fraction": (0, 1, True, True),
    "data.ask_noise": (0, 1, True, True),
    "data.ask_swap": (0, 1, True, True),
    "data.ood_madeup": (0, 1, True, True),
    "data.fact_noise": (0, 1, True, True),
    "data.cue_fraction": (0, 1, True, True),
    "sample.temperature": (0, None, True, False),
    "sample.top_k": (0, None, True, False),
    "sample.top_p": (0, 1, False, True),
    "sample.max_new_tokens": (0, None, False, False),
    "sample.seed": (0, None, True, False),
    "sample.unsure_below": (0, 1, True, False),
    "sample.unsure_reply_below": (0, 1, True, False),
}


# upper bounds that fit a machine like this one: a larger request is refused before anything is allocated
_LIMITS: dict[str, int] = {
    "model.vocab_size": 1_114_112,
    "model.block_size": 4096,
    "model.n_layer": 64,
    "model.n_head": 64,
    "model.n_embd": 4096,
    "train.batch_size": 4096,
    "train.eval_batches": 10_000,
    "data.seq_len": 4096,
    "data.n_eval": 1_000_000,
    "data.n_train": 100_000_000,
    "sample.max_new_tokens": 100_000,
    "sample.top_k": 1_114_112,
}


def suggest(word: str, allowed: Sequence[str], prefix: str = "") -> str:
    """"did you mean 'X'? " for the closest allowed word (written after prefix, "train." for a key, so
    it can be typed as the error names it), or "" when none is close."""
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f"did you mean '{prefix}{close[0]}'? " if close else ""


def _unknown(where: str, what: str, word: str, allowed: Sequence[str], prefix: str = "") -> ConfigError:
    return ConfigError(f"{where}: unknown {what}; {suggest(word, allowed, prefix)}"
                       f"allowed: {', '.join(allowed)}")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _coerce(where: str, key: str, value: Any, typ: type) -> Any:
    """Check one value against its field type; ints pass as floats and numeric strings become floats."""
    bad = f"{where}: {key} = {value!r} ({_type_name(value)})"
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{bad} must be true or false")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{bad} must be an integer (write it without a decimal point or quotes)")
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{bad} must be a number, not true/false")
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 as a string
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{bad} must be a number, e.g. 0.003 or 3.0e-3") from None
        if isinstance(value, (int, float)):
            if isinstance(value, int) and abs(value) > 1e308:  # float() would raise OverflowError
                raise ConfigError(f"{where}: {key} is an integer of about {int(value.bit_length() * 0.30103)} "
                                  f"digits; it must be a finite number")
            if not math.isfinite(value):
                raise ConfigError(f"{bad} must be a finite number")
            return float(value)
        raise ConfigError(f"{bad} must be a number, e.g. 0.003 or 3.0e-3")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{bad} must be a string (quote it)")
    raise TypeError(f"unsupported field type {typ!r}")  # pragma: no cover


def _check_task(where: str, task: Any) -> str:
    if not isinstance(task, str) or task not in TASKS:
        raise ConfigError(f"{where}: task = {task!r} is not a known task; {suggest(str(task), TASKS)}"
                          f"allowed: {', '.join(TASKS)}")
    return task


def _layer(d: Any, where: str) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Validate one layer (a preset, a file, a dict) -> (task or None, {section: {key: value}})."""
    if d is None:
        return None, {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: top level must be a mapping of sections "
                          f"(task:, {':, '.join(SECTIONS)}:), got {_type_name(d)}")
    task = None
    out: dict[str, dict[str, Any]] = {}
    allowed_top = ("task", *SECTIONS)
    for sec, body in d.items():
        if sec == "task":
            task = _check_task(where, body)
            continue
        if sec not in SECTIONS:
            raise _unknown(where, f"section '{sec}'", str(sec), allowed_top)
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ConfigError(f"{where}: section '{sec}' must be a mapping of key: value, "
                              f"got {_type_name(body)}")
        out[sec] = {}
        for key, value in body.items():
            _set(out, where, sec, key, value)
    return task, out


def _set(out: dict, where: str, sec: str, key: Any, value: Any) -> None:
    types = _TYPES[sec]
    if key not in types:
        raise _unknown(where, f"key '{sec}.{key}'", str(key), list(types), prefix=f"{sec}.")
    out.setdefault(sec, {})[key] = _coerce(where, f"{sec}.{key}", value, types[key])


def _in_range(value: float, lo, hi, lo_inc: bool, hi_inc: bool) -> bool:
    if lo is not None and (value < lo or (value == lo and not lo_inc)):
        return False
    return not (hi is not None and (value > hi or (value == hi and not hi_inc)))


def _range_text(lo, hi, lo_inc: bool, hi_inc: bool) -> str:
    if hi is None:
        return f">= {lo}" if lo_inc else f"> {lo}"
    return f"in {'[' if lo_inc else '('}{lo}, {hi}{']' if hi_inc else ')'}"


def parse_level_weights(text: str, where: str = "data.level_weights") -> dict[str, float]:
    """'facts=3, usage=2' (commas or spaces between items) -> {'facts': 3.0, 'usage': 2.0}."""
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, eq, raw = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"{where}: {item!r} is not level=weight; write e.g. \"facts=3, usage=2\"")
        try:
            weight = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: the weight of level '{name}' is {raw!r}, not a number; "
                              f"write e.g. {name}=3") from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{where}: the weight of level '{name}' is {raw}; it must be a finite number >= 0")
        if name in out:
            raise ConfigError(f"{where}: level '{name}' is given twice; keep one weight for it")
        out[name] = weight
    return out


def _validate(cfg: Config, origin: Mapping[str, tuple[int, str]]) -> None:
    """Range and cross-field checks; `origin` maps 'section.key' to (layer index, where it was set)."""
    def where(*keys: str) -> str:  # the layer that set the latest of these keys
        return max(origin.get(k, (-1, "defaults")) for k in keys)[1]

    for dotted, (lo, hi, lo_inc, hi_inc) in _RANGES.items():
        sec, key = dotted.split(".")
        value = getattr(getattr(cfg, sec), key)
        if not _in_range(value, lo, hi, lo_inc, hi_inc):
            raise ConfigError(f"{where(dotted)}: {dotted} = {value!r} is out of range; "
                              f"it must be {_range_text(lo, hi, lo_inc, hi_inc)}")
    for dotted, hi in _LIMITS.items():
        sec, key = dotted.split(".")
        value = getattr(getattr(cfg, sec), key)
        if value > hi:
            raise ConfigError(f"{where(dotted)}: {dotted} = {value} is above the limit of {hi}; "
                              f"a larger value cannot train on this machine")
    for dotted, allowed in CHOICES.items():
        sec, key = dotted.split(".")
        value = getattr(getattr(cfg, sec), key)
        if value not in allowed:
            raise _unknown(f"{where(dotted)}: {dotted} = {value!r}", "value", str(value), allowed)
    m, t = cfg.model, cfg.train
    if m.n_embd % m.n_head:
        raise ConfigError(f"{where('model.n_embd', 'model.n_head')}: model.n_embd = {m.n_embd} is not "
                          f"divisible by model.n_head = {m.n_head}; pick n_embd a multiple of n_head")
    if m.pos == "rope" and (m.n_embd // m.n_head) % 2:
        raise ConfigError(f"{where('model.pos', 'model.n_embd', 'model.n_head')}: model.pos = 'rope' turns "
                          f"channels in pairs, but a head has {m.n_embd // m.n_head} (n_embd / n_head); "
                          f"pick an even head size")
    _check_memory(cfg, where)
    if cfg.data.level_weights:
        parse_level_weights(cfg.data.level_weights,
                            f"{where('data.level_weights')}: data.level_weights = {cfg.data.level_weights!r}")
    if t.min_lr > t.lr:
        raise ConfigError(f"{where('train.min_lr', 'train.lr')}: train.min_lr = {t.min_lr} is above "
                          f"train.lr = {t.lr}; set min_lr <= lr")
    if t.teachers:
        teacher_specs(t.teachers, where("train.teachers"))
    if t.restart_at and not t.warmup_steps < t.restart_at < t.max_steps:
        raise ConfigError(f"{where('train.restart_at', 'train.max_steps', 'train.warmup_steps')}: train.restart_at = "
                          f"{t.restart_at} is not between train.warmup_steps = {t.warmup_steps} and train.max_steps = "
                          f"{t.max_steps}; restart inside the run (0 = no restart)")
    if t.restart_at and t.restart_min_lr > t.restart_lr:
        raise ConfigError(f"{where('train.restart_min_lr', 'train.restart_lr')}: train.restart_min_lr = "
                          f"{t.restart_min_lr} is above train.restart_lr = {t.restart_lr}; set restart_min_lr <= restart_lr")
    if cfg.task == "reversal" and cfg.data.seq_len > m.block_size:
        raise ConfigError(f"{where('data.seq_len', 'model.block_size')}: data.seq_len = "
                          f"{cfg.data.seq_len} exceeds model.block_size = {m.block_size}; "
                          f"reversal needs block_size >= seq_len")


def teacher_specs(text: str, where: str = "train.teachers") -> list[tuple[str, str]]:
    """[(save name, tag)] from train.teachers ("a,b:last"); a tag is best unless given."""
    specs = []
    for part in text.split(","):
        name, _, tag = part.strip().partition(":")
        tag = tag or "best"
        if not name or tag not in ("best", "last"):
            raise ConfigError(f"{where}: train.teachers = {text!r}: {part.strip()!r} is not a save; write "
                              f"NAME or NAME:TAG (TAG best or last), commas between, e.g. run1,run2:last")
        specs.append((name, tag))
    return specs


def training_bytes(cfg: Config) -> int:
    """A rough upper estimate of the memory one training step needs (weights, grads, AdamW, activations)."""
    m, t = cfg.model, cfg.train
    V, T, C, L, H, B = max(m.vocab_size, 256), m.block_size, m.n_embd, m.n_layer, m.n_head, t.batch_size
    params = V * C * (1 if m.tie_weights else 2) + T * C + L * (12 * C * C + 13 * C) + 2 * C
    acts = B * T * C * L * 16 + B * H * T * T * L * 3 + B * T * V * 2  # floats kept for backward
    return 4 * (4 * params + acts)


def machine_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 << 30


def _check_memory(cfg: Config, where) -> None:
    need, have = training_bytes(cfg), machine_bytes()
    if need > have // 2:
        keys = ("model.n_embd", "model.n_layer", "model.block_size", "train.batch_size")
        now = ", ".join(f"{k}={getattr(getattr(cfg, k.split('.')[0]), k.split('.')[1])}" for k in keys)
        raise ConfigError(f"{where(*keys)}: this model needs about {need / 2**30:.1f} GiB to train ({now}) "
                          f"but the limit on this machine is {have / 2**31:.1f} GiB (half its memory); "
                          f"lower model.n_embd, model.n_layer, model.block_size or train.batch_size")


def _build(task: str, layers: Sequence[tuple[dict, str]]) -> Config:
    """Merge validated layers over the dataclass defaults, then run the range checks."""
    merged: dict[str, dict[str, Any]] = {sec: {} for sec in SECTIONS}
    origin: dict[str, tuple[int, str]] = {}
    for i, (values, where) in enumerate(layers):
        for sec, body in values.items():
            for key, value in body.items():
                merged[sec][key] = value
                origin[f"{sec}.{key}"] = (i, where)
    cfg = Config(task=task, **{sec: SECTIONS[sec](**merged[sec]) for sec in SECTIONS})
    _validate(cfg, origin)
    return cfg


def config_from_dict(d: Mapping, where: str = "config") -> Config:
    """Build a Config from plain data (missing keys take their defaults); validates everything."""
    task, values = _layer(d, where)
    return _build(task if task is not None else Config.task, [(values, where)])


def config_to_dict(cfg: Config) -> dict:
    """Plain nested data (str, int, float, bool) that round-trips through config_from_dict."""
    return dataclasses.asdict(cfg)


def replace_in(cfg: Config, dotted: str, value: Any) -> Config:
    """A copy of cfg with one 'section.key' (or 'task') changed, validated like any other input."""
    d = config_to_dict(cfg)
    where = f"setting {dotted}"
    if dotted == "task":
        d["task"] = value
    else:
        sec, _, key = dotted.partition(".")
        if sec not in SECTIONS:
            raise _unknown(where, f"section '{sec}'", sec, ("task", *SECTIONS))
        if key not in _TYPES[sec]:
            raise _unknown(where, f"key '{sec}.{key}'", key, list(_TYPES[sec]), prefix=f"{sec}.")
        d[sec][key] = value
    return config_from_dict(d, where=where)


def _read_yaml(path: Path, what: str) -> Any:
    """Read and parse one YAML file with safe_load, turning every failure into a ConfigError."""
    if not path.exists():
        raise ConfigError(f"{path}: {what} not found; check the path")
    try:
        data = read_limited(path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror or e}); check permissions") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {what} {e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                          f"offset {e.start}); save it as UTF-8") from None
    try:
        return load_yaml_text(text)
    except YamlRefused as e:
        if getattr(e, "syntax", None):
            at, problem = e.syntax
            raise ConfigError(f"{path}:{at}: invalid YAML ({problem}); fix the syntax there "
                              f"(sections are 'name:' followed by indented 'key: value' lines)") from None
        raise ConfigError(f"{path}: {what} {e}") from None


def _parse_overrides(overrides: Sequence[str] | Mapping) -> tuple[str | None, dict]:
    """'section.key=value' strings (or a {dotted: value} mapping) -> (task, values, where per key)."""
    task = None
    values: dict[str, dict[str, Any]] = {}
    if isinstance(overrides, str):
        overrides = [overrides]
    items: list[tuple[str, Any, bool]] = []  # (dotted, value, value_is_raw_text)
    if isinstance(overrides, Mapping):
        items = [(str(k), v, False) for k, v in overrides.items()]
    else:
        for text in overrides:
            if not isinstance(text, str) or "=" not in text:
                raise ConfigError(f"override {text!r}: expected section.key=value, "
                                  f"e.g. train.lr=3e-3 or model.causal=false")
            dotted, _, raw = text.partition("=")
            items.append((dotted.strip(), raw, True))
    for dotted, value, raw in items:
        where = f"override {dotted}"
        if raw:
            shown = value if len(value) <= 60 else value[:60] + "..."
            where = f"override '{dotted}={shown}'"
        if dotted == "task":
            task = _check_task(where, value.strip() if raw else value)
            continue
        sec, dot, key = dotted.partition(".")
        if not dot or sec not in SECTIONS:
            raise ConfigError(f"{where}: '{dotted}' is not section.key; {suggest(sec, SECTIONS)}"
                              f"sections: {', '.join(SECTIONS)} (or task=NAME)")
        if raw and key in _TYPES[sec] and _TYPES[sec][key] is not str:
            try:
                value = load_yaml_text(value)
            except YamlRefused as e:
                raise ConfigError(f"{where}: the value {e}; write a plain number, true/false "
                                  f"or text") from None
        layer: dict[str, dict[str, Any]] = {}
        _set(layer, where, sec, key, value)
        values.setdefault(sec, {})[key] = (layer[sec][key], where)
    return task, values


def load_config(task: str | None = None, path: str | Path | None = None,
                overrides: Sequence[str] | Mapping = ()) -> Config:
    """Defaults <- task preset <- YAML file at `path` <- overrides. The task comes from, in order:
    the `task` argument, a `task=NAME` override, the file's `task:` key, the default ('qa')."""
    file_task, file_values, file_where = None, {}, ""
    if path is not None:
        p = Path(path)
        file_where = str(p)
        file_task, file_values = _layer(_read_yaml(p, "config file"), file_where)
    over_task, over_values = _parse_overrides(overrides)
    if task is not None:
        task = _check_task("task argument", task)
    else:
        task = over_task or file_task or Config.task
    preset = PRESETS_DIR / f"{task}.yaml"
    _, preset_values = _layer(_read_yaml(preset, "preset"), str(preset))
    layers = [(preset_values, str(preset)), (file_values, file_where)]
    for sec, body in over_values.items():
        for key, (value, where) in body.items():
            layers.append(({sec: {key: value}}, where))
    return _build(task, layers)


def apply_overrides(cfg: Config, overrides: Sequence[str] | Mapping) -> Config:
    """cfg with 'section.key=value' overrides on top, validated like load_config's (the task stays)."""
    task, values = _parse_overrides(overrides)
    if task is not None and task != cfg.task:
        raise ConfigError(f"task={task}: a run keeps its task ({cfg.task}); start a new run for {task}")
    d = config_to_dict(cfg)
    layers = [({sec: d[sec] for sec in SECTIONS}, "the saved config")]
    for sec, body in values.items():
        for key, (value, where) in body.items():
            layers.append(({sec: {key: value}}, where))
    return _build(cfg.task, layers)
