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
    convs, turns, pending = [], [], None
    for n, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if len(line) > MAX_LINE:
            raise CorpusError(f"{source}:{n}: line of {len(line)} characters; Q:/A: lines should be short")
        if not line.strip():
            if pending is not None:
                raise CorpusError(f"{source}:{n}: question without an answer; add an 'A: ...' line after it")
            if turns:
                convs.append(turns)
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
        convs.append(turns)
    if not convs:
        raise CorpusError(f"{source}: no Q:/A: pairs found; the format is a 'Q: ...' line, an 'A: ...' line, "
                          "and a blank line between conversations")
    return convs


def load_conversations(path):
    return parse_conversations(read_text(path), str(path))


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
