"""Promise 5: every bad input has a message, and terminal escapes are never echoed raw.

Property tests (hypothesis, derandomized so CI is reproducible; ATTNLAB_FUZZ_EXAMPLES=N explores
more) feed random and hostile text to the config loader, the corpus reader, the tokenizer, the chat
prompt builder and safe_text: each returns a result or raises its own error class, whose message is
one line with no control characters. The CLI turns bad corpora into one error line.
"""
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import SECTIONS, Config, ConfigError, load_config
from core.tasks.corpus import MAX_LINE, CorpusError, parse_conversations, read_text
from core.tasks.lm import REPLY_ROOM, PromptTooLong, build_prompt
from core.tokenizer import CharTokenizer, TokenizerError
from core.text import safe_text
from tests.fault_helpers import assert_one_error_line, cli_inproc, cli_many, record

N = int(os.environ.get("ATTNLAB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TRIED = {}


def tried(what):
    TRIED[what] = TRIED.get(what, 0) + 1


def clean_message(e):
    """An error message is one line, with no control or C1 characters (so no raw ESC)."""
    msg = str(e)
    assert msg and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in msg), repr(msg)


# every character class, with the hostile ones over-represented
HOSTILE_CHARS = st.one_of(st.characters(codec="utf-8"),
                          st.sampled_from(list("\x00\x1b\x07\x08\x7f\x85\x9b\r\n\t\u202e\u2028\ufeff:QA")))
TEXT = st.text(HOSTILE_CHARS, max_size=200)

# ---- config

KEYS = [f"{sec}.{k}" for sec, cls in SECTIONS.items() for k in cls.__dataclass_fields__]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(HOSTILE_CHARS, max_size=20),
                    st.integers(min_value=10**300, max_value=10**400))
YAML_VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=8)
YAML_DOCS = st.one_of(
    TEXT,
    st.dictionaries(st.sampled_from(["task", *SECTIONS, "x"]),
                    st.one_of(YAML_VALUES, st.dictionaries(st.sampled_from([k.split(".")[1] for k in KEYS] + ["zz"]),
                                                           YAML_VALUES, max_size=4)),
                    max_size=4).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.sampled_from(["model: {n_embd: 2001-13-45}", "train: {lr: !!float x}",
                     "!!python/object/apply:os.system ['true']", "a: &x [*x]", "\x00", "model: [1, 2]"]))
OVERRIDES = st.lists(st.one_of(
    TEXT,
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS + ["task", "model", "x.y", "."]),
              st.one_of(TEXT, st.sampled_from(["1e400", ".nan", "-.inf", "0x10", "1" + "0" * 400, "[1]", "{a: 1}",
                                               "!!python/name:os.system", "&a 1", "*a", "'", "2001-13-45"])))),
    max_size=4)


@FUZZ
@given(doc=YAML_DOCS, overrides=OVERRIDES)
def test_config_loader_returns_config_or_config_error(tmp_path, doc, overrides):
    tried("config")
    path = tmp_path / "c.yaml"
    path.write_text(doc, encoding="utf-8", errors="surrogatepass")
    for args in ({"path": path}, {"overrides": overrides}, {"path": path, "overrides": overrides}):
        try:
            assert isinstance(load_config("reversal", **args), Config)
        except ConfigError as e:
            clean_message(e)


def test_config_nesting_too_deep(tmp_path):
    for doc in ["[" * 2000, "{a: " * 1000, "model:\n" + "".join(" " * i + "a:\n" for i in range(1, 800))]:
        (tmp_path / "c.yaml").write_text(doc)
        try:
            load_config("reversal", path=tmp_path / "c.yaml")
        except ConfigError as e:
            clean_message(e)


@FUZZ
@given(data=st.binary(max_size=300))
def test_config_file_of_random_bytes(tmp_path, data):
    tried("config_bytes")
    (tmp_path / "c.yaml").write_bytes(data)
    try:
        load_config("qa", path=tmp_path / "c.yaml")
    except ConfigError as e:
        clean_message(e)


# ---- corpus

LINES = st.lists(st.one_of(st.builds(lambda q: "Q:" + q, TEXT), st.builds(lambda a: "A:" + a, TEXT),
                           st.just(""), st.just("  "), TEXT), max_size=12)


@FUZZ
@given(text=st.one_of(TEXT, LINES.map("\n".join), LINES.map("\r\n".join)))
def test_corpus_parser_returns_conversations_or_corpus_error(text):
    tried("corpus_text")
    try:
        convs = parse_conversations(text, "fuzz.txt")
    except CorpusError as e:
        clean_message(e)
        assert str(e).startswith("fuzz.txt")
    else:
        assert convs and all(turns and all(isinstance(q, str) and isinstance(a, str) for q, a in turns)
                             for turns in convs)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_corpus_file_of_random_bytes(tmp_path, data):
    tried("corpus_bytes")
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    try:
        parse_conversations(read_text(path), str(path))
    except CorpusError as e:
        clean_message(e)


def test_corpus_edge_cases():
    for text in ["", "\n\n\n", "Q: a\nQ: b\n", "A: no question\n", "hello\n", "Q:" + "x" * (MAX_LINE + 1),
                 "Q: x\nA: " + "y" * 10_000_000, "Q: \x1b[2J\nA: \x1b]0;title\x07\n\nQ: ok", "\ufeffQ: a\nA: b"]:
        try:
            parse_conversations(text, "edge.txt")
        except CorpusError as e:
            clean_message(e)
            assert len(str(e)) < 300


# ---- tokenizer

@FUZZ
@given(vocab=TEXT, text=TEXT, rule=st.sampled_from(["error", "unk", "drop", "bogus"]))
def test_tokenizer_gives_ids_or_tokenizer_error(vocab, text, rule):
    tried("tokenizer")
    try:
        tok = CharTokenizer.from_text(vocab)
    except TokenizerError as e:
        clean_message(e)
        assert vocab == ""
        return
    try:
        ids = tok.encode(text, unknown=rule)
    except TokenizerError as e:
        clean_message(e)
        assert rule == "bogus" or (rule == "error" and tok.unknown_chars(text))
        return
    assert ids.dtype.kind == "i" and ((ids >= 0) & (ids < tok.vocab_size)).all()
    if rule == "unk":
        assert len(ids) == len(text)
        assert all(c == d or c in tok.unknown_chars(text) for c, d in zip(text, tok.decode(ids)))
    if rule == "error":
        assert tok.decode(ids) == text
    assert CharTokenizer.from_dict(tok.to_dict()) == tok


# ---- chat input

@FUZZ
@given(history=st.lists(st.tuples(TEXT, TEXT), max_size=4), question=TEXT,
       block=st.integers(min_value=1, max_value=128))
def test_build_prompt_gives_a_prompt_or_prompt_too_long(history, question, block):
    tried("chat_prompt")
    budget = block - min(REPLY_ROOM, block // 4)
    try:
        prompt = build_prompt(history, question, block)
    except PromptTooLong as e:
        assert "\n" not in str(e) and "\x1b" not in str(e)
        # the advice is true: a message of the suggested length fits, when anything can
        if budget >= len("Q: x\nA:"):  # room for a one-character message
            limit = int(str(e).split("at most ")[1].split()[0])
            build_prompt(history, question[:limit], block)
        else:
            assert "too few" in str(e)
    else:
        assert prompt.endswith(f"Q: {question}\nA:") and len(prompt) <= budget


# ---- what reaches the terminal

@FUZZ
@given(s=st.text(st.characters(codec=None), max_size=200) | TEXT, keep=st.booleans())
def test_safe_text_never_returns_a_control_character(s, keep):
    tried("safe_text")
    out = safe_text(s, keep_newlines=keep)
    bad = [c for c in out if (ord(c) < 0x20 and not (keep and c == "\n")) or 0x7F <= ord(c) <= 0x9F]
    assert bad == [] and "\u202e" not in out
    out.encode("utf-8")  # no lone surrogates either
    if s.isascii() and s.isprintable():
        assert out == s  # nothing harmless is mangled


def test_fuzz_figures():
    record("test_fault_fuzz.py (property tests)", inputs_tried=dict(TRIED), total=sum(TRIED.values()))


# ---- the CLI with bad corpora

def test_cli_bad_corpora_exit_2_with_one_line(tmp_path):
    bad = {
        "non-utf8.txt": ("Q: caf\xe9\nA: ok\n".encode("latin-1"), ["not UTF-8", "offset"]),
        "empty.txt": (b"", ["no Q:/A: pairs"]),
        "one-line-10MB.txt": (b"Q: " + b"x" * 10_000_000, ["line of", "characters"]),
        "binary.bin": (bytes(range(256)) * 40, ["non-utf8" and "UTF-8"]),
        "no-answers.txt": (b"Q: one\nQ: two\n", ["two questions"]),
        "only-answers.txt": (b"A: one\nA: two\n", ["answer without a question"]),
        "escape-in-line.txt": (b"\x1b[2J\x1b]0;pwned\x07\n", ["expected a line"]),
    }
    jobs = []
    for fname, (data, _) in bad.items():
        (tmp_path / fname).write_bytes(data)
        jobs.append((["train", "qa", "--corpus", str(tmp_path / fname), "--save", "x", "--steps", "1"],
                     tmp_path / "saves", None))
    jobs.append((["train", "qa", "--corpus", str(tmp_path / "missing.txt")], tmp_path / "saves", None))
    jobs.append((["train", "qa", "--corpus", str(tmp_path)], tmp_path / "saves", None))
    results = cli_many(jobs)
    words = [w for _, w in bad.values()] + [["no such file"], ["no such file"]]
    for (args, _, _), w, (rc, out, err) in zip(jobs, words, results):
        line = assert_one_error_line(rc, err, *w)
        assert args[3] in line  # names the file
    assert not (tmp_path / "saves").exists()
    record("test_fault_fuzz.py::test_cli_bad_corpora_exit_2_with_one_line", corpora=len(jobs))


def test_cli_bad_config_and_overrides(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\xff\xfe model: [")
    cases = [["train", "reversal", "--config", str(cfg)],
             ["train", "reversal", "--set", "train.lr=" + "1" + "0" * 400],
             ["train", "reversal", "--set", "model.n_embd=2001-13-45"],
             ["train", "reversal", "--set", "x\x1b[2J.y=1"],
             ["train", "reversal", "--set", "train.lr"]]
    for args in cases:
        rc, out, err = cli_inproc(args, tmp_path / "saves", monkeypatch, capsys)
        assert_one_error_line(rc, err)


# ---- escapes in a corpus or in chat are never echoed raw

ESC_CORPUS = "".join(f"Q: say {w}\nA: \x1b[2J{w}\x1b[31m!\x07\n\n" for w in
                     ["hi", "yo", "ok", "no", "up", "go", "be", "do"] * 4)


def test_escapes_in_corpus_and_chat_never_reach_the_terminal(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "esc.txt"
    corpus.write_text(ESC_CORPUS)
    saves = tmp_path / "saves"
    overrides = ["model.block_size=32", "model.n_layer=1", "model.n_embd=16", "model.n_head=2",
                 "train.batch_size=8", "train.eval_interval=5", "data.n_eval=4"]
    rc, out, err = cli_inproc(["train", "qa", "--corpus", str(corpus), "--save", "esc", "--steps", "5",
                               *sum((["--set", o] for o in overrides), [])], saves, monkeypatch, capsys)
    assert rc == 0, err
    chat_in = b"say \x1b[2Jhi\x1b]0;pwned\x07\nsay hi\n/quit\n"
    (rc1, out1, err1), (rc2, out2, err2) = cli_many([
        (["sample", "esc", "--tag", "last", "--prompt", "Q: say hi\nA:", "--temperature", "2",
          "--max-new", "300", "--seed", "1"], saves, None),
        (["chat", "esc", "--tag", "last", "--temperature", "2", "--max-new", "60"], saves, chat_in)])
    assert rc1 == 0 and rc2 == 0, err1 + err2
    for stream in (out1, err1.encode(), out2, err2.encode()):
        assert not any(b in stream for b in (b"\x1b", b"\x07", b"\x9b")), stream[:200]
    assert b"\\x1b" in out1  # control: the model did produce ESC, shown escaped
    record("test_fault_fuzz.py::test_escapes_in_corpus_and_chat_never_reach_the_terminal",
           esc_shown_escaped=out1.count(b"\\x1b") + out2.count(b"\\x1b"), raw_esc_bytes=0)
