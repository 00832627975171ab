"""CharTokenizer: deterministic ids, round trips, the unknown-character rule, dict validation."""
import json

import numpy as np
import pytest

from core.tokenizer import CharTokenizer, TokenizerError


def test_ids_follow_sorted_chars_and_zero_is_unk():
    tok = CharTokenizer.from_text("banana!")
    assert tok.chars == ["!", "a", "b", "n"]
    assert tok.vocab_size == 5
    assert CharTokenizer.UNK_ID == 0
    ids = tok.encode("banana")
    assert ids.dtype == np.int64
    assert ids.tolist() == [3, 2, 4, 2, 4, 2]


def test_same_text_same_tokenizer_regardless_of_order():
    a = CharTokenizer.from_text("hello world")
    b = CharTokenizer.from_text("dlrow olleh")
    assert a == b and a.chars == b.chars
    assert a.encode("world").tolist() == b.encode("world").tolist()


def test_round_trip_unicode():
    text = "Q: Où est le café? ☕\nA: 東京 😀\t"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text)) + 1


def test_decode_accepts_lists_arrays_and_2d():
    tok = CharTokenizer.from_text("abc")
    assert tok.decode([1, 2, 3]) == "abc"
    assert tok.decode(np.array([[3, 2], [1, 1]], dtype=np.int32)) == "cbaa"
    assert tok.decode([]) == ""
    assert tok.decode(np.int64(2)) == "b"


def test_unknown_error_names_chars_escaped_and_fix():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError) as info:
        tok.encode("ab\x1bz\x1bé")
    msg = str(info.value)
    assert "'\\x1b'" in msg and "\x1b" not in msg   # escaped, never raw
    assert "'z'" in msg and "'é'" in msg
    assert "3 character" in msg
    assert "retrain with a corpus containing them" in msg and "unknown='unk'" in msg


def test_unknown_unk_and_drop():
    tok = CharTokenizer.from_text("abc")
    assert tok.encode("axb", unknown="unk").tolist() == [1, 0, 2]
    assert tok.encode("axb", unknown="drop").tolist() == [1, 2]
    assert tok.decode(tok.encode("axb", unknown="unk")) == "a\ufffdb"
    assert tok.encode("", unknown="error").tolist() == []
    assert tok.encode("xyz", unknown="drop").tolist() == []


def test_unknown_chars_lists_sorted_distinct():
    tok = CharTokenizer.from_text("abc")
    assert tok.unknown_chars("zzaxyb") == ["x", "y", "z"]
    assert tok.unknown_chars("abc") == []


def test_codepoints_above_and_between_vocab_are_unknown():
    tok = CharTokenizer.from_text("bd")
    assert tok.encode("abcde", unknown="unk").tolist() == [0, 1, 0, 2, 0]
    assert tok.encode("\U0001F600", unknown="unk").tolist() == [0]


def test_bad_unknown_rule():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match="unknown='ignore'.*error"):
        tok.encode("a", unknown="ignore")


def test_decode_out_of_range():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TokenizerError, match=r"\[4\].*\[0, 4\)"):
        tok.decode([1, 4])
    with pytest.raises(TokenizerError, match="-1"):
        tok.decode([-1])
    with pytest.raises(TokenizerError, match="integer"):
        tok.decode([1.0])


def test_empty_corpus_refused():
    with pytest.raises(TokenizerError, match="empty"):
        CharTokenizer.from_text("")


def test_dict_round_trip_is_json_safe_and_keeps_order():
    tok = CharTokenizer.from_text("the quick brown fox\n")
    d = json.loads(json.dumps(tok.to_dict()))
    tok2 = CharTokenizer.from_dict(d)
    assert tok2 == tok
    assert tok2.encode("quick fox").tolist() == tok.encode("quick fox").tolist()
    odd = CharTokenizer.from_dict({"chars": ["z", "a"]})  # saved order is kept, not re-sorted
    assert odd.encode("az").tolist() == [2, 1]


def test_chars_property_is_a_copy():
    tok = CharTokenizer.from_text("abc")
    tok.chars.append("d")
    assert tok.vocab_size == 4


@pytest.mark.parametrize("d, word", [
    ({"chars": ["a", "a"]}, "repeat"),
    ({"chars": ["ab"]}, "single-character"),
    ({"chars": [""]}, "single-character"),
    ({"chars": [7]}, "single-character"),
    ({"chars": ["a", "<unk>"]}, "<unk>"),
    ({"chars": "abc"}, "list"),
    ({}, "chars"),
    ({"type": "bpe", "chars": ["a"]}, "bpe"),
    ([["a"]], "mapping"),
])
def test_from_dict_validates(d, word):
    with pytest.raises(TokenizerError, match=word):
        CharTokenizer.from_dict(d)
