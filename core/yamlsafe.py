"""YAML that attnlab reads from files, `--set` values and saves: safe_load with limits (no aliases, so
no 'billion laughs'; bounded nesting and size), and files or pipes read with a size cap, never hanging.
"""
from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path

import yaml


class YamlRefused(ValueError):
    """YAML that attnlab never reads: aliases (the 'billion laughs' bomb), deep nesting, huge text."""


MAX_YAML_BYTES = 1 << 20
_MAX_YAML_DEPTH = 32


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses aliases and deep nesting while composing, before anything is expanded."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise YamlRefused("uses a YAML alias (*name); attnlab files never need them, so write the value out")
        self.depth += 1
        if self.depth > _MAX_YAML_DEPTH:
            raise YamlRefused(f"nests more than {_MAX_YAML_DEPTH} levels deep; a config has sections of keys")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml_text(text: str):
    """yaml.safe_load with limits (size, aliases, depth); a bad file raises YamlRefused with one line."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlRefused(f"is {len(text)} characters long; a config is at most {MAX_YAML_BYTES}")
    text = text.removeprefix("\ufeff")
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        ctx, ctx_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if ctx and ctx_mark is not None:
            problem += f", {ctx} started at line {ctx_mark.line + 1}"
        err = YamlRefused(f"is not valid YAML{' at' + at if at else ''} ({problem})")
        err.syntax = (at, problem)
        raise err from None
    except (ValueError, RecursionError, OverflowError) as e:  # a bad date or number tag
        raise YamlRefused(f"holds an unreadable YAML value ({type(e).__name__}: {str(e)[:80]}); "
                          f"write plain numbers, true/false and text") from None


def read_limited(path: Path, timeout: float = 10.0) -> bytes:
    """The bytes of a regular file or a pipe (`--config <(...)`), at most MAX_YAML_BYTES; never hangs."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise ValueError("is not a file (a directory); pass a .yaml file")
    if stat.S_ISREG(st.st_mode):
        if st.st_size > MAX_YAML_BYTES:
            raise ValueError(f"is {st.st_size} bytes; a config is at most {MAX_YAML_BYTES}")
        return path.read_bytes()
    if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise ValueError("is not a file or a pipe; pass a .yaml file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    chunks, size, deadline = [], 0, time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ValueError(f"is a pipe that sent nothing for {timeout:.0f} s; pass a file instead")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_YAML_BYTES:
                raise ValueError(f"sends more than {MAX_YAML_BYTES} bytes; a config is smaller")
    finally:
        os.close(fd)
