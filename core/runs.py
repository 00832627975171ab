"""The run registry: list the runs under saves/, describe one, and lock a run while a process writes it.

The lock is advisory: saves/NAME/.lock holds the writer's pid under an flock, so a second writer is
refused at once ("in use by pid N") and a lock left by a dead process is simply taken over.
"""
from __future__ import annotations

import errno
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import checkpoint
from core.checkpoint import SaveError, run_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: fall back to pid files only
    fcntl = None

LOCK = ".lock"


@dataclass
class RunInfo:
    name: str
    task: str | None
    step: int | None
    best_metric: Any
    created: float  # seconds since the epoch
    tags: list[str] = field(default_factory=list)
    error: str | None = None  # set for a broken run; the other fields are then best effort
    metric: str | None = None  # the name of the task metric best_metric holds


_MAX_TIME = 4e10  # seconds since the epoch (year ~3200): anything later is not a real date


def _finite_number(x: Any) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an integer of hundreds of digits
        return False


def _meta_fields(src: Path, meta: dict) -> tuple:
    """(task, step, best, created, metric) from meta.json, each checked; a hostile value is a SaveError."""
    def bad(key: str, why: str) -> SaveError:
        return checkpoint._err(src / checkpoint.META, f"{key} {why}")
    task, step, metric = meta.get("task"), meta.get("step", 0), meta.get("metric")
    if not isinstance(task, str) or not checkpoint._NAME_RE.fullmatch(task) or len(task) > 32:
        raise bad("task", "is not a task name")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 10**12:
        raise bad("step", "is not a step count")
    if metric is not None and (not isinstance(metric, str) or not checkpoint._NAME_RE.fullmatch(metric)
                               or len(metric) > 32):
        raise bad("metric", "is not a metric name")
    best = meta.get("best_metric", meta.get("best"))  # the trainer writes "best"
    first = best[0] if isinstance(best, list) and best else best
    if first is not None and not _finite_number(first):
        raise bad("best", "is not a finite number")
    created = meta.get("created", 0.0)
    if isinstance(created, bool) or not isinstance(created, (int, float)) or \
            not (0 <= created <= _MAX_TIME):  # NaN fails both comparisons
        raise bad("created", "is not a date")
    return task, step, best, float(created), metric


def _run_info(root: Path, d: Path) -> RunInfo:
    try:
        created = d.stat().st_mtime
        checkpoint._refuse_symlinks(root, d)
        tags = checkpoint._tags(d)
        if not tags:
            raise SaveError(f"{d}: holds no saves; delete it")
        tag = "last" if "last" in tags else tags[0]
        src = checkpoint._tag_dir(root, d, d.name, tag)
        missing = [f for f in checkpoint._FILES if not (src / f).is_file()]
        if missing:
            raise checkpoint._err(src, f"missing {', '.join(missing)}")
        task, step, best, when, metric = _meta_fields(src, checkpoint._load_meta(src / checkpoint.META))
    except (SaveError, OSError) as e:
        return RunInfo(d.name, None, None, None, 0.0, [], error=str(e))
    return RunInfo(name=d.name, task=task, step=step, best_metric=best, created=when or created,
                   tags=tags, metric=metric)


def list_runs(saves_dir: str | Path | None = None) -> list[RunInfo]:
    """All runs, newest first; broken ones are listed with `error` set instead of being raised."""
    root = checkpoint._root(saves_dir)
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        if d.name.startswith(".") or not checkpoint._NAME_RE.fullmatch(d.name) or len(d.name) > checkpoint._MAX_NAME:
            continue
        if d.is_symlink():
            runs.append(RunInfo(d.name, None, None, None, 0.0, [],
                                error=f"{d} is a symbolic link; saves never follow links"))
        elif d.is_dir():
            info = _run_info(root, d)
            if info.error and "holds no saves" in info.error and ((d / LOCK).exists() or (d / METRICS).exists()):
                continue  # a run being started (locked), or one that ended before its first save
            runs.append(info)
    return sorted(runs, key=lambda r: (-r.created, r.name))


METRICS = "metrics.jsonl"  # core/metrics_log.py's history, written from a run's first step


class RunInUse(SaveError):
    """Another live process is writing this run."""

    def __init__(self, name: str, pid: int | None):
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"saves/{name} is in use by {who} (it is training or resuming that run); "
                         f"wait for it to finish, stop it, or pick another name")


class RunExists(SaveError):
    """`--save NAME` where NAME already holds a save, without --overwrite."""


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()[:20]
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class RunLock:
    """An exclusive, advisory lock on saves/NAME; release() (or process death) frees it."""

    def __init__(self, name: str, saves_dir: str | Path | None = None):
        self.name = name
        self.dir = run_dir(name, saves_dir)
        self.root = self.dir.parent
        self.path = self.dir / LOCK
        self.fd: int | None = None
        self.created_dir = False

    def acquire(self) -> "RunLock":
        """Take the lock now or raise RunInUse naming the holder's pid; never waits."""
        for _ in range(20):  # retried only when another process removes the directory or the file under us
            if self.dir.is_symlink():
                raise SaveError(f"{self.dir} is a symbolic link; saves never follow links, so remove it or "
                                f"pick another name")
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                self.dir.mkdir()
                self.created_dir = True
            except FileExistsError:
                pass
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise SaveError(f"cannot lock {self.dir} ({e.strerror or e}); check its permissions") from None
            if not self._lock_fd(fd):
                os.close(fd)
                raise RunInUse(self.name, self._holder_pid())
            try:  # the file we locked must still be the one at the path (not unlinked by a releaser)
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return self
        raise SaveError(f"cannot lock {self.dir}: it keeps changing under another process; try again")

    def _holder_pid(self, wait_s: float = 0.5) -> int | None:
        """The pid in the lock file; the holder writes it just after it locks, so an empty file is
        read again for a moment (else the refusal could not say who holds the run)."""
        end = time.monotonic() + wait_s
        while (pid := _read_pid(self.path)) is None and time.monotonic() < end:
            time.sleep(0.01)
        return pid

    def _lock_fd(self, fd: int) -> bool:
        if fcntl is None:  # pragma: no cover
            pid = _read_pid(self.path)
            return pid is None or pid == os.getpid() or not checkpoint._pid_alive(pid)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise

    def release(self) -> None:
        """Drop the lock and remove the lock file (and the run directory if nothing was saved in it)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        try:
            self.dir.rmdir()  # only succeeds when empty: a run that never saved leaves nothing behind
        except OSError:
            pass

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> "RunLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run(name: str, saves_dir: str | Path | None = None) -> RunLock:
    """An acquired RunLock on saves/NAME (raises RunInUse if a live process holds it)."""
    return RunLock(name, saves_dir).acquire()


def existing_run(name: str, saves_dir: str | Path | None = None) -> RunInfo | None:
    """The RunInfo of saves/NAME if it holds at least one save (or is unreadable), else None; a
    symlinked run directory is a SaveError."""
    d = run_dir(name, saves_dir)
    if d.is_symlink():
        raise SaveError(f"{d} is a symbolic link; saves never follow links, so remove it or pick another name")
    if not d.is_dir():
        return None
    info = _run_info(d.parent, d)
    if not info.tags and info.error and "holds no saves" in info.error:
        return None
    return info


def describe_run(info: RunInfo) -> str:
    """'qa, step 741, best answer_exact 0.65' for the refusal message."""
    if info.error:
        return "unreadable"
    parts = [str(info.task or "?"), f"step {info.step if isinstance(info.step, int) else '?'}"]
    best = info.best_metric
    best = best[0] if isinstance(best, list) and best else best
    if isinstance(best, (int, float)) and not isinstance(best, bool):
        parts.append(f"best {info.metric or 'metric'} {best:.4g}")
    return ", ".join(parts)


def refuse_existing(name: str, saves_dir: str | Path | None = None) -> None:
    """Raise RunExists if saves/NAME already holds a run (the --save refusal)."""
    info = existing_run(name, saves_dir)
    if info is not None:
        raise RunExists(f"saves/{name} exists ({describe_run(info)}): use --resume {name} to continue it, "
                        f"--overwrite to replace it, or another name")


def free_name(base: str, saves_dir: str | Path | None = None) -> str:
    """base, or base-2, base-3, ... : the first name with no run under saves/."""
    n = 1
    name = base
    while os.path.lexists(run_dir(name, saves_dir)):
        n += 1
        suffix = f"-{n}"
        name = base[:checkpoint._MAX_NAME - len(suffix)] + suffix
    return name


def write_into_run(name: str, filename: str, text: str, saves_dir: str | Path | None = None,
                   numbered: bool = False) -> Path:
    """Write a new file (e.g. a chat transcript) into an existing run; never through a link, never
    re-creating a deleted run, never replacing a file. numbered: where the name is taken, the first free
    of NAME-2.EXT, NAME-3.EXT, ... (two exports within one second)."""
    d = run_dir(name, saves_dir)
    checkpoint._check_name(filename, "file name")
    if d.is_symlink():
        raise SaveError(f"{d} is a symbolic link; saves never follow links, so nothing was written")
    if not d.is_dir():
        raise SaveError(f"saves/{name} does not exist (deleted, or nothing saved yet); save the run first (w)")
    checkpoint._refuse_symlinks(d.parent, d)
    stem, dot, ext = filename.rpartition(".") if "." in filename else (filename, "", "")
    for n in range(1, 100 if numbered else 2):
        path = d / (filename if n == 1 else f"{stem}-{n}{dot}{ext}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            break
        except FileExistsError:
            continue
    else:
        raise SaveError(f"{d / filename} already exists; nothing was written")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def saves_root(saves_dir: str | Path | None = None) -> Path:
    """The saves directory in use ($ATTNLAB_SAVES, else the repository's saves/)."""
    return checkpoint._root(saves_dir)


def delete_run(name: str, saves_dir: str | Path | None = None) -> None:
    """checkpoint.delete_run, refused with RunInUse while another process writes the run."""
    d = run_dir(name, saves_dir)
    if not os.path.lexists(d):
        checkpoint.delete_run(name, saves_dir)  # raises the usual "no saved run" error
    lock = RunLock(name, saves_dir) if d.is_dir() and not d.is_symlink() else None
    if lock is not None:
        lock.acquire()
    try:
        checkpoint.delete_run(name, saves_dir)
    finally:
        if lock is not None:
            lock.release()
