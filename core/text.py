"""Make untrusted text safe to show in a terminal.

Model output, corpus tokens and user input can hold ESC and other control characters; shown raw they
would be interpreted by the terminal. Everything here turns them into visible escapes instead.
"""

from __future__ import annotations

import unicodedata

# bidi overrides / isolates and a few invisible format characters that can reorder or hide text
_FORMAT_CONTROLS = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2028\u2029\u2060\u2066\u2067\u2068\u2069\ufeff"
)

_LABEL_NAMES = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def _escape_char(ch: str) -> str:
    """Visible escape for one unsafe character, e.g. '\\x1b' or '\\u202e'."""
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if unicodedata.category(ch) == "Cs":  # lone surrogate: not encodable at all
        return "\ufffd"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _is_unsafe(ch: str) -> bool:
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if ch in _FORMAT_CONTROLS:
        return True
    return unicodedata.category(ch) == "Cs"


def safe_text(s: str, keep_newlines: bool = False) -> str:
    """Return s with control characters and escape sequences replaced by visible escapes.

    With keep_newlines, '\\n' is kept as a line break and '\\t' becomes four spaces; every other
    control character (ESC, CR, BEL, DEL, C1, bidi overrides, ...) is always escaped.
    """
    if not isinstance(s, str):
        s = str(s)
    if s.isprintable() and not any(ch in _FORMAT_CONTROLS for ch in s):
        return s  # fast path: the common case
    out = []
    for ch in s:
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif keep_newlines and ch == "\t":
            out.append("    ")
        elif _is_unsafe(ch):
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)


def safe_label(token: str) -> str:
    """A token made readable as an axis label: space -> '␣', newline -> '⏎', controls escaped."""
    if token in _LABEL_NAMES:
        return _LABEL_NAMES[token]
    return "".join(_LABEL_NAMES.get(ch) or safe_text(ch) for ch in str(token))
