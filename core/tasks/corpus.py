"""Read Q:/A: text (the TinyTalks format) into conversations, with errors that name file and line.

A conversation is a run of `Q: ...` / `A: ...` line pairs; a blank line ends it. TinyTalks holds one
pair per conversation; the dialogue corpora hold several.
"""

from pathlib import Path

MAX_LINE = 10_000  # a longer line is not Q&A text


class CorpusError(ValueError):
    """A corpus that cannot be used, in one line: which file, where, what, how to fix."""


def read_text(path):
    """The file's text; a missing, unreadable or non-UTF-8 file is a CorpusError."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus {path}: no such file; pass an existing TinyTalks-format file (Q:/A: lines)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"corpus {path}: cannot be read ({e.strerror})") from None
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark some editors write is not text
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus {path}: not UTF-8 text (bad byte at offset {e.start}); "
                          "save it as UTF-8") from None


def parse_conversations(text, source="corpus"):
    """[[(question, answer), ...], ...] from Q:/A: text; raises CorpusError on anything else."""
    lines = enumerate(text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n"), start=1)
    return list(_parse(lines, source))


def _parse(lines, source):
    """Conversations one at a time from (line number, line) pairs; CorpusError names the line."""
    turns, pending, found = [], None, False
    for n, line in lines:
        if len(line) > MAX_LINE:
            raise CorpusError(f"{source}:{n}: line of {len(line)} characters; Q:/A: lines should be short")
        if not line.strip():
            if pending is not None:
                raise CorpusError(f"{source}:{n}: question without an answer; add an 'A: ...' line after it")
            if turns:
                found = True
                yield turns
                turns = []
            continue
        if line.startswith("Q:"):
            if pending is not None:
                raise CorpusError(f"{source}:{n}: two questions in a row; each 'Q:' line needs an 'A:' line")
            pending = line[2:].strip()
        elif line.startswith("A:"):
            if pending is None:
                raise CorpusError(f"{source}:{n}: answer without a question; put a 'Q: ...' line before it")
            turns.append((pending, line[2:].strip()))
            pending = None
        else:
            shown = line[:40].encode("unicode_escape").decode("ascii")
            raise CorpusError(f"{source}:{n}: expected a line starting 'Q:' or 'A:', got '{shown}'")
    if pending is not None:
        raise CorpusError(f"{source}: ends with a question without an answer; add an 'A: ...' line")
    if turns:
        found = True
        yield turns
    if not found:
        raise CorpusError(f"{source}: no Q:/A: pairs found; the format is a 'Q: ...' line, an 'A: ...' line, "
                          "and a blank line between conversations")


def _file_lines(path):
    """(line number, line) of a corpus file, read a line at a time (a large corpus is never held whole)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus {path}: no such file; pass an existing TinyTalks-format file (Q:/A: lines)")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CorpusError(f"corpus {path}: cannot be read ({e.strerror})") from None
    limit = 4 * MAX_LINE + 2  # bytes: the longest line allowed, in the widest UTF-8
    with f:
        _check_utf8(f, path)  # a binary or foreign-encoded file is named as such, before any parse error
        f.seek(0)
        offset = 0
        for n, raw in enumerate(iter(lambda: f.readline(limit), b""), start=1):
            if len(raw) == limit and not raw.endswith(b"\n"):
                raise CorpusError(f"{path}:{n}: line of more than {MAX_LINE} characters; Q:/A: lines should be short")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(f"corpus {path}: not UTF-8 text (bad byte at offset {offset + e.start}); "
                                  "save it as UTF-8") from None
            offset += len(raw)
            if n == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write is not text
            yield n, line.removesuffix("\n").removesuffix("\r")


def _check_utf8(f, path, chunk=1 << 20):
    """Read the whole file once in chunks through an incremental decoder; bad UTF-8 is a CorpusError."""
    import codecs
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        while True:
            data = f.read(chunk)
            decoder.decode(data, final=not data)
            if not data:
                return
            offset += len(data)
    except UnicodeDecodeError as e:
        at = offset - len(data) + e.start if data else offset
        raise CorpusError(f"corpus {path}: not UTF-8 text (bad byte at offset {max(at, 0)}); "
                          "save it as UTF-8") from None


def iter_conversations(path):
    """The conversations of a corpus file, one at a time, read as a stream."""
    return _parse(_file_lines(path), str(path))


def load_conversations(path):
    return list(iter_conversations(path))


def format_turn(question, answer=None):
    """One turn as training text; without an answer, the prompt the model completes."""
    if answer is None:
        return f"Q: {question}\nA:"
    return f"Q: {question}\nA: {answer}\n"


def format_conversation(turns):
    return "".join(format_turn(q, a) for q, a in turns)


def join_corpus(convs):
    """The training stream: conversations separated by a blank line."""
    return "\n".join(format_conversation(c) for c in convs)
