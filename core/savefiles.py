"""Reading a save's files without trusting them: one tag directory opened once (so a load never mixes
two saves), no symlink followed, sizes capped, and each .npy header checked before its data is allocated.

core/checkpoint.py writes and loads saves; this module only reads bytes safely and says what is wrong.
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip
_DIRFD = os.name == "posix" and os.open in os.supports_dir_fd
# what a save may hold, checked before reading: a hostile file is refused before it can take the memory
_MAX_META, _MAX_CONFIG = 64 << 20, 1 << 20  # bytes (meta.json carries the loss history)
_MAX_NPZ = 8 << 30  # bytes on disk of one .npz
_MAX_NPZ_TOTAL = 4 << 30  # bytes all members of one .npz claim to inflate to
_MAX_MEMBER = 2 << 30  # bytes of one array (the config's bounds keep a model's far below)
_MAX_MEMBERS = 10_000
_MAX_NPY_HEADER = 10_000
# what zipfile and the .npy reader raise on damaged or foreign files
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


class SaveError(ValueError):
    """A save that cannot be written or read, with the file and the fix in the message."""


def _err(path: Path, problem: str, fix: str = "") -> SaveError:
    fix = fix or "the save is damaged; load another tag or delete the run and train again"
    return SaveError(f"{path}: {problem}; {fix}")


def json_object(text: str, bad) -> dict:
    """A JSON object from a save's text file; bad(problem) makes the error for anything else."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"is not valid JSON (line {e.lineno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:  # a number of thousands of digits, or nesting too deep
        raise bad(f"holds an unreadable JSON value ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise bad(f"must hold a JSON object, got {type(obj).__name__}")
    return obj


class _Tag:
    """One tag directory opened once: every file is read through this descriptor, so a load never mixes
    two saves even while a writer swaps the tag, and no file symlink is ever followed."""

    def __init__(self, src: Path, files: tuple[str, ...] = ()):
        self.src = src
        self.fd = None
        self._held: dict[str, int] = {}  # name -> an fd opened at once, so a removal after the swap cannot hit
        if _DIRFD:
            try:
                self.fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except FileNotFoundError:
                raise _Vanished(src) from None
            except OSError as e:
                if e.errno == errno.ELOOP or e.errno == errno.ENOTDIR:
                    raise _err(src, "is a symbolic link or not a directory; saves never follow links") from None
                raise _err(src, f"cannot be opened ({e.strerror})") from None
            for fname in files:  # open every file now: a file unlinked later stays readable through its fd
                try:
                    self._held[fname] = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.fd)
                except OSError:
                    pass  # reported with its reason when it is read

    def open(self, fname: str, limit: int):
        """A binary file object for one member; missing, a link, not a file or over `limit` bytes: SaveError."""
        path = self.src / fname
        try:
            if fname in self._held:
                fd = self._held.pop(fname)
            elif self.fd is not None:
                fd = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.fd)
            else:  # pragma: no cover - no dir_fd on this platform
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise _err(path, "file is missing") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _err(path, "is a symbolic link; saves never follow links",
                           "replace it with the file itself, or delete the run") from None
            raise _err(path, f"cannot be read ({e.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            os.close(fd)
            why = "is not a regular file" if not stat.S_ISREG(st.st_mode) else \
                f"is {st.st_size} bytes, more than the {limit} a save of this kind can hold"
            raise _err(path, why)
        return os.fdopen(fd, "rb")

    def read_text(self, fname: str, limit: int) -> str:
        with self.open(fname, limit) as f:
            data = f.read()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _err(self.src / fname, "is not UTF-8 text") from None

    def same_as(self, src: Path) -> bool:
        """Whether `src` is still the directory this was opened on (no writer swapped it since)."""
        if self.fd is None:
            return True
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(src, follow_symlinks=False))
        except OSError:
            return False

    def close(self) -> None:
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "_Tag":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Vanished(Exception):
    """The tag directory disappeared between choosing and opening it (a concurrent save swapped it)."""


def _npy_header(m, path: Path, key: str):
    """(shape, fortran, dtype, header bytes) of one .npy member, read without touching its data."""
    try:
        version = np.lib.format.read_magic(m)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"npy format version {version}")
        shape, fortran, dtype = reader(m, max_header_size=_MAX_NPY_HEADER)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise _err(path, f"array {key!r} has an unreadable header ({e})") from None
    if dtype.hasobject:
        raise _err(path, "contains pickled Python objects, which are never loaded",
                   "only plain numeric arrays are accepted; delete it, or re-save from a trusted run")
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise _err(path, f"array {key!r} has dtype {dtype}, not a plain number type")
    return tuple(shape), fortran, dtype, m.tell()


def _read_member(zf, info, path: Path, key: str, expected: tuple | None) -> np.ndarray:
    """One array, its header checked against `expected` and the zip's declared size before allocating."""
    with zf.open(info) as m:
        shape, fortran, dtype, header = _npy_header(m, path, key)
        if expected is not None and shape != tuple(expected):
            raise _err(path, f"wrong shapes: {key} saved {shape} expected {tuple(expected)}",
                       "load it with the config saved next to it (config.yaml), or train a new run")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if header + nbytes != info.file_size or nbytes > _MAX_MEMBER:
            raise _err(path, f"array {key!r} claims {shape} {dtype} ({nbytes} bytes) but its member "
                             f"holds {info.file_size - header} bytes")
        arr = np.empty(count, dtype=dtype)
        view = memoryview(arr).cast("B")
        pos = 0
        while pos < nbytes:
            chunk = m.read(min(1 << 20, nbytes - pos))
            if not chunk:
                raise _err(path, f"array {key!r} is truncated")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
    return arr.reshape(shape, order="F" if fortran else "C")


def _load_npz(tag: "_Tag | Path", fname: str | None = None, expected: Mapping[str, tuple] | None = None,
              exact: bool = True) -> dict[str, np.ndarray]:
    """Every array of an .npz, read without pickle, each header checked before its data is allocated."""
    if isinstance(tag, Path):  # a plain path (tests, tools): open its directory
        with _Tag(tag.parent) as t:
            return _load_npz(t, tag.name, expected)
    path = tag.src / fname
    with tag.open(fname, _MAX_NPZ) as f:
        if f.read(4) not in _ZIP_MAGIC:
            raise _err(path, "is not an .npz archive (it does not start like a zip file)")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
                keys = [i.filename[:-4] if i.filename.endswith(".npy") else None for i in infos]
                if None in keys or len(set(keys)) != len(keys) or len(keys) > _MAX_MEMBERS:
                    raise _err(path, "holds members that are not one .npy array per name")
                if expected is not None and exact and set(keys) != set(expected):
                    raise _err(path, f"arrays do not match the model: missing "
                                     f"{sorted(set(expected) - set(keys))}, unexpected {sorted(set(keys) - set(expected))}",
                               "load it with the config saved next to it (config.yaml), or train a new run")
                if sum(i.file_size for i in infos) > _MAX_NPZ_TOTAL:
                    raise _err(path, "would inflate to more memory than any model this machine trains")
                return {k: _read_member(zf, i, path, k, None if expected is None else expected.get(k))
                        for k, i in zip(keys, infos)}
        except SaveError:
            raise
        except _READ_ERRORS as e:
            raise _err(path, f"is not a readable .npz file ({type(e).__name__}: {e})") from None


