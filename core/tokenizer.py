"""Character-level tokenizer: one id per character, id 0 reserved for <unk>.

Ids follow sorted character order, so the same text always gives the same tokenizer. Unknown
characters are an error unless the caller asks to map them to <unk> or drop them.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

import numpy as np

_UNKNOWN_RULES = ("error", "unk", "drop")
_MAX_LISTED = 20  # unseen characters named in one error message


class TokenizerError(ValueError):
    """A text or saved vocabulary the tokenizer cannot handle, with the fix in the message."""


def _listing(chars: list[str]) -> str:
    shown = ", ".join(repr(c) for c in chars[:_MAX_LISTED])  # repr escapes control characters
    more = f" and {len(chars) - _MAX_LISTED} more" if len(chars) > _MAX_LISTED else ""
    return shown + more


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (N,)


class CharTokenizer:
    """Maps characters to ids 1..V-1 (in the given order) and back; id 0 is <unk>."""

    UNK_ID = 0
    UNK_TOKEN = "<unk>"
    UNK_TEXT = "\ufffd"  # what decode writes for <unk>

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        _check_chars(chars)
        self._chars = tuple(chars)
        self._stoi = {c: i + 1 for i, c in enumerate(chars)}
        cps = _codepoints("".join(chars))  # (V-1,)
        order = np.argsort(cps, kind="stable")  # (V-1,)
        self._sorted_cps = cps[order]  # (V-1,)
        self._sorted_ids = (order + 1).astype(np.int64)  # (V-1,)
        self._itos = np.array([self.UNK_TEXT, *chars], dtype=object)  # (V,)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted set of characters in `text`."""
        if not isinstance(text, str) or not text:
            raise TokenizerError("cannot build a tokenizer from an empty corpus; pass non-empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self._chars) + 1

    @property
    def chars(self) -> list[str]:
        return list(self._chars)

    def _ids(self, text: str) -> np.ndarray:
        cps = _codepoints(text)  # (N,)
        if len(self._sorted_cps) == 0:
            return np.full(cps.shape, -1, dtype=np.int64)  # (N,)
        pos = np.searchsorted(self._sorted_cps, cps)  # (N,)
        pos = np.minimum(pos, len(self._sorted_cps) - 1)  # (N,)
        found = self._sorted_cps[pos] == cps  # (N,)
        return np.where(found, self._sorted_ids[pos], -1)  # (N,) -1 where unknown

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of `text` not in the vocabulary, sorted."""
        return sorted(set(text) - self._stoi.keys())

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Text -> int64 ids (N,); unknown chars raise ('error'), map to 0 ('unk') or vanish ('drop')."""
        if unknown not in _UNKNOWN_RULES:
            raise TokenizerError(f"unknown={unknown!r} is not a rule; use one of {_UNKNOWN_RULES}")
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects str, got {type(text).__name__}")
        ids = self._ids(text)  # (N,)
        missing = ids < 0
        if missing.any():
            if unknown == "error":
                unseen = self.unknown_chars(text)
                raise TokenizerError(
                    f"{len(unseen)} character(s) not in the vocabulary: {_listing(unseen)}; "
                    f"retrain with a corpus containing them, or pass unknown='unk'")
            if unknown == "unk":
                ids[missing] = self.UNK_ID
            else:
                ids = ids[~missing]
        return ids

    def decode(self, ids: Any) -> str:
        """Ids -> text; id 0 becomes U+FFFD. Raises TokenizerError on ids outside [0, V)."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if arr.dtype.kind not in "iu":
            raise TokenizerError(f"decode expects integer ids, got dtype {arr.dtype}")
        arr = arr.reshape(-1).astype(np.int64)  # (N,)
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise TokenizerError(f"ids {sorted(set(arr[bad].tolist()))[:_MAX_LISTED]} are outside "
                                 f"[0, {self.vocab_size}); the ids come from a different vocabulary")
        return "".join(self._itos[arr].tolist())

    def to_dict(self) -> dict:
        """Plain JSON-safe data; from_dict(to_dict()) gives the same ids."""
        return {"type": "char", "unk": self.UNK_TOKEN, "chars": list(self._chars)}

    @classmethod
    def from_dict(cls, d: Mapping) -> CharTokenizer:
        """Rebuild from to_dict() output, keeping its id order; raises TokenizerError if malformed."""
        if not isinstance(d, Mapping):
            raise TokenizerError(f"saved tokenizer must be a mapping, got {type(d).__name__}")
        if d.get("type", "char") != "char":
            raise TokenizerError(f"saved tokenizer type {d.get('type')!r} is not 'char'")
        if "chars" not in d:
            raise TokenizerError("saved tokenizer has no 'chars' list; the save is damaged")
        if not isinstance(d["chars"], list):
            raise TokenizerError(f"saved tokenizer 'chars' must be a list of characters, "
                                 f"got {type(d['chars']).__name__}")
        return cls(d["chars"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _check_chars(chars: list) -> None:
    """Vocabulary must be unique single-character strings, with <unk> left implicit."""
    if CharTokenizer.UNK_TOKEN in chars:
        raise TokenizerError("'<unk>' must not be in chars: id 0 is reserved for it implicitly; "
                             "remove it from the list")
    bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
    if bad:
        raise TokenizerError(f"tokenizer chars must be single-character strings; bad entries: "
                             f"{', '.join(repr(b) for b in bad[:_MAX_LISTED])}")
    dupes = sorted(c for c, n in Counter(chars).items() if n > 1)
    if dupes:
        raise TokenizerError(f"tokenizer chars repeat: {_listing(dupes)}; each character needs one id")
