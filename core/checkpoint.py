"""Save and load runs: saves/NAME/<tag>/ holds weights.npz, optim.npz, meta.json and config.yaml.

Saves are atomic (a temporary directory, fsync, then a rename swap), arrays are read without pickle,
and every problem with a name or a file is a SaveError that says which file and what to do.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import yaml

from core.savefiles import _MAX_CONFIG, _MAX_META, SaveError, _err, _load_npz, _Tag, _Vanished, json_object
from core.yamlsafe import YamlRefused, load_yaml_text

SAVES_DIR = Path(__file__).resolve().parent.parent / "saves"
FORMAT_VERSION = 1
WEIGHTS, OPTIM, META, CONFIG = "weights.npz", "optim.npz", "meta.json", "config.yaml"
_FILES = (WEIGHTS, OPTIM, META, CONFIG)
# at an evaluation this many seconds or more after the last such save, `last` is saved too: a run killed
# outright (SIGKILL, a power cut, a machine restart) loses at most this plus one evaluation interval
AUTOSAVE_S = 60.0


class Autosave:
    """due() is true at most once per `every` seconds, the first time `every` seconds after creation;
    `step` is the step the caller last autosaved at, so the save at the end can skip the same state."""

    def __init__(self, every: float = AUTOSAVE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock = every, clock
        self.last = clock()
        self.step: int | None = None

    def due(self) -> bool:
        now = self.clock()
        if now - self.last < self.every:
            return False
        self.last = now
        return True


_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_MAX_NAME = 64
_ALLOWED = "letters, digits, '.', '_' and '-' (no leading dot, at most 64 characters)"


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    opt_state: dict[str, np.ndarray]
    meta: dict
    config: dict
    path: Path | None = None  # the directory it was read from


def _root(saves_dir: str | Path | None) -> Path:
    if saves_dir is not None:
        return Path(saves_dir)
    env = os.environ.get("ATTNLAB_SAVES")
    return Path(env) if env else SAVES_DIR


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise SaveError(f"{what} {name!r} is empty or not text; use {_ALLOWED}")
    if len(name) > _MAX_NAME:
        raise SaveError(f"{what} {name[:_MAX_NAME]!r}... is {len(name)} characters long; use {_ALLOWED}")
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        raise SaveError(f"{what} {name!r} contains {', '.join(repr(c) for c in bad)}; use {_ALLOWED}")
    if name.startswith("."):
        raise SaveError(f"{what} {name!r} starts with a dot; use {_ALLOWED}")
    return name


def run_dir(name: str, saves_dir: str | Path | None = None) -> Path:
    """The directory of run `name` under the saves directory; raises SaveError for an unsafe name."""
    return _root(saves_dir) / _check_name(name, "run name")


def _refuse_symlinks(root: Path, *paths: Path) -> None:
    """Never follow a link out of the saves directory: refuse any symlink at or below root."""
    for p in paths:
        if p.is_symlink():
            raise SaveError(f"{p} is a symbolic link; saves never follow links, so remove it or "
                            f"pick another name")
        try:
            inside = p.resolve().is_relative_to(root.resolve())
        except OSError:
            inside = False
        if not inside:
            raise SaveError(f"{p} resolves outside {root}; remove the link above it")


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # exists but not ours / not a valid pid
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _clean_stale_tmp(d: Path) -> None:
    """Remove temporary directories left by saves that crashed (their process is gone)."""
    for p in d.iterdir():
        m = re.fullmatch(r"\..+\.tmp-(\d+)", p.name)
        if m and not (int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1)))):
            _remove(p)


def _plain_arrays(arrays: Mapping[str, Any], what: str, floats_only: bool) -> dict[str, np.ndarray]:
    out = {}
    for key, a in arrays.items():
        if not isinstance(key, str) or not key or key.startswith("/") or "\x00" in key:
            raise SaveError(f"{what} has a bad array name {key!r}; use non-empty dotted names")
        arr = np.asarray(a)  # not ascontiguousarray: it turns 0-d scalars into (1,)
        kinds = "f" if floats_only else "biuf"
        if arr.dtype.kind not in kinds or (floats_only and arr.dtype not in (np.float32, np.float64)):
            raise SaveError(f"{what} array {key!r} has dtype {arr.dtype}; only "
                            f"{'float32/float64' if floats_only else 'numeric'} arrays are saved")
        if floats_only and not np.isfinite(arr).all():
            raise SaveError(f"{what} array {key!r} contains NaN or inf; the run diverged, so save "
                            f"an earlier state or lower train.lr")
        out[key] = arr
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")


def _serialize(meta: Mapping, config: Any) -> tuple[bytes, bytes]:
    meta = {**meta, "format_version": FORMAT_VERSION}
    meta.setdefault("created", time.time())
    try:
        meta_bytes = json.dumps(meta, indent=1, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise SaveError(f"meta cannot be written as JSON ({e}); pass plain numbers, strings, "
                        f"lists and dicts") from None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    try:
        config_bytes = yaml.safe_dump(dict(config), sort_keys=False).encode("utf-8")
    except (TypeError, ValueError, yaml.YAMLError) as e:
        raise SaveError(f"config cannot be written as YAML ({e}); pass config_to_dict(cfg)") from None
    return meta_bytes, config_bytes


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(name: str, tag: str, params: Mapping[str, np.ndarray],
                    opt_state: Mapping[str, np.ndarray], meta: Mapping, config: Mapping,
                    saves_dir: str | Path | None = None, *,
                    extra_files: Mapping[str, bytes] | None = None) -> Path:
    """Atomically write saves/NAME/<tag>/; a crash at any point leaves the previous save loadable.

    extra_files: {file name: contents} written into the same directory before the swap (e.g. the
    run's timeline), so they are saved atomically with the weights.
    """
    root = _root(saves_dir)
    d = run_dir(name, root)
    _check_name(tag, "tag")
    extra = _extra_files(extra_files)
    weights = _plain_arrays(params, "params", floats_only=True)
    optim = _plain_arrays(opt_state, "opt_state", floats_only=False)
    meta_bytes, config_bytes = _serialize(meta, config)
    target, old = d / tag, d / f".{tag}.old"
    tmp = d / f".{tag}.tmp-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _refuse_symlinks(root, d)
        d.mkdir(exist_ok=True)
        _refuse_symlinks(root, d, target, old)
        _clean_stale_tmp(d)
        tmp.mkdir()
        _write_npz(tmp / WEIGHTS, weights)
        _write_npz(tmp / OPTIM, optim)
        _write_file(tmp / META, meta_bytes)
        _write_file(tmp / CONFIG, config_bytes)
        for fname, data in extra.items():
            _write_file(tmp / fname, data)
        _fsync_dir(tmp)
        _swap(d, tmp, target, old)
    except OSError as e:
        _remove(tmp)
        raise SaveError(f"could not write {target} ({e.strerror or e}); check free space and "
                        f"permissions of {d}") from None
    return target


def _extra_files(files: Mapping[str, bytes] | None) -> dict[str, bytes]:
    """Checked extra files: plain names (no path), not one of the standard four, bytes contents."""
    out = {}
    for fname, data in (files or {}).items():
        if not isinstance(fname, str) or not _NAME_RE.fullmatch(fname) or fname.startswith(".") or fname in _FILES:
            raise SaveError(f"extra save file {fname!r} is not a plain file name other than {', '.join(_FILES)}")
        if not isinstance(data, (bytes, bytearray)):
            raise SaveError(f"extra save file {fname!r} holds {type(data).__name__}, not bytes")
        out[fname] = bytes(data)
    return out


def _swap(d: Path, tmp: Path, target: Path, old: Path) -> None:
    """tmp -> target, keeping the previous target as .<tag>.old until the new one is in place."""
    if target.exists():
        if old.exists():
            _remove(old)  # a stale copy: target is newer and complete
        os.replace(target, old)
    # if target was missing but old exists, old is the last good copy; keep it until tmp is in place
    try:
        os.replace(tmp, target)
    except OSError:
        if old.exists() and not target.exists():
            try:
                os.replace(old, target)
            except OSError:
                pass  # load_checkpoint recovers from .old
        raise
    _fsync_dir(d)
    _remove(old)


def _check_params(path: Path, params: dict[str, np.ndarray],
                  expected_shapes: Mapping[str, tuple] | None) -> None:
    fix = "load it with the config saved next to it (config.yaml), or train a new run"
    if expected_shapes is not None:
        missing = sorted(set(expected_shapes) - set(params))
        extra = sorted(set(params) - set(expected_shapes))
        if missing or extra:
            raise _err(path, f"arrays do not match the model: missing {missing}, unexpected {extra}", fix)
        wrong = [f"{k} saved {params[k].shape} expected {tuple(expected_shapes[k])}"
                 for k in sorted(params) if params[k].shape != tuple(expected_shapes[k])]
        if wrong:
            raise _err(path, f"wrong shapes: {'; '.join(wrong)}", fix)
    for k, a in params.items():
        if a.dtype not in (np.float32, np.float64):
            raise _err(path, f"array {k!r} has dtype {a.dtype}, not float32/float64")
        if not np.isfinite(a).all():
            raise _err(path, f"array {k!r} contains NaN or inf",
                       "the run diverged before this save; load another tag or retrain with a lower lr")


def _check_optim(path: Path, opt: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> None:
    for k, a in opt.items():
        if a.dtype.kind not in "biuf":
            raise _err(path, f"array {k!r} has dtype {a.dtype}, not numeric")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise _err(path, f"array {k!r} contains NaN or inf")
        _, _, pname = k.partition("/")  # "m/wte.w" is the first moment of wte.w
        if pname in params and a.shape != params[pname].shape:
            raise _err(path, f"array {k!r} has shape {a.shape} but {pname} has {params[pname].shape}")


def _load_meta(tag: "_Tag | Path") -> dict:
    if isinstance(tag, Path):
        with _Tag(tag.parent) as t:
            return _load_meta(t)
    path = tag.src / META
    meta = json_object(tag.read_text(META, _MAX_META), lambda problem: _err(path, problem))
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _err(path, f"format_version is {str(version)[:20]!r}, not a positive integer")
    if version > FORMAT_VERSION:
        raise _err(path, f"format_version {version} is newer than this attnlab reads "
                         f"({FORMAT_VERSION})", "upgrade attnlab to load it")
    return meta


def _load_config(tag: "_Tag | Path") -> dict:
    if isinstance(tag, Path):
        with _Tag(tag.parent) as t:
            return _load_config(t)
    path = tag.src / CONFIG
    text = tag.read_text(CONFIG, _MAX_CONFIG)
    try:
        config = load_yaml_text(text)
    except YamlRefused as e:
        raise _err(path, str(e)) from None
    if not isinstance(config, dict):
        raise _err(path, f"must hold a mapping of sections, got {type(config).__name__}")
    return config


def _tags(d: Path) -> list[str]:
    """Tags present in a run directory, including ones only recoverable from .<tag>.old."""
    tags = {p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for p in d.iterdir():
        m = re.fullmatch(r"\.(.+)\.old", p.name)
        if m and p.is_dir():
            tags.add(m.group(1))
    return sorted(tags)


def _tag_dir(root: Path, d: Path, name: str, tag: str) -> Path:
    """The directory to read `tag` from: <tag>, or .<tag>.old left by a save that crashed mid-swap."""
    if not d.is_dir():
        raise SaveError(f"no saved run named {name!r} in {root}; check the name with `attnlab runs`")
    _refuse_symlinks(root, d)
    for p in (d / tag, d / f".{tag}.old"):
        if p.is_dir():
            _refuse_symlinks(root, p)
            return p
    raise SaveError(f"run {name!r} has no tag {tag!r} (has: {', '.join(_tags(d)) or 'none'}); "
                    f"pick one of those")


def load_checkpoint(name: str, tag: str = "last", saves_dir: str | Path | None = None,
                    expected_shapes: Mapping[str, tuple] | None = None,
                    shapes_for: Callable[[dict], Mapping[str, tuple] | None] | None = None) -> Checkpoint:
    """Read and verify saves/NAME/<tag>/; raises SaveError for anything damaged or unexpected.

    shapes_for(config) gives the parameter shapes the saved config implies, so array headers that do
    not match are refused before their data is read. A save swapped in meanwhile is read again.
    """
    root = _root(saves_dir)
    d = run_dir(name, root)
    _check_name(tag, "tag")
    attempts = 10
    for attempt in range(attempts):
        if attempt >= 2:
            time.sleep(0.001 * attempt)  # a writer saving many times a second: let its swap finish
        try:
            src = _tag_dir(root, d, name, tag)
        except SaveError:
            if attempt < attempts - 1 and d.is_dir():
                continue  # between a swap's two renames and the removal of .old: look again
            raise
        try:
            t = _Tag(src, _FILES)
        except _Vanished:
            continue
        try:
            return _read_tag(t, expected_shapes, shapes_for)
        except SaveError:
            if attempt < attempts - 1 and (not t.same_as(src) or src.name.startswith(".")):
                continue  # a writer swapped the tag while we read, or is removing the .old copy: read again
            raise
        finally:
            t.close()
    raise SaveError(f"{d / tag}: kept changing while being read (another process saves it many times a "
                    f"second); try again")


def _read_tag(t: _Tag, expected_shapes, shapes_for) -> Checkpoint:
    meta = _load_meta(t)
    config = _load_config(t)
    if expected_shapes is None and shapes_for is not None:
        expected_shapes = shapes_for(config)
    params = _load_npz(t, WEIGHTS, expected_shapes)
    _check_params(t.src / WEIGHTS, params, expected_shapes)
    optim_shapes = None
    if expected_shapes is not None:
        optim_shapes = {f"{mv}/{k}": s for mv in "mv" for k, s in expected_shapes.items()}
    opt_state = _load_npz(t, OPTIM, optim_shapes, exact=False)
    _check_optim(t.src / OPTIM, opt_state, params)
    return Checkpoint(params=params, opt_state=opt_state, meta=meta, config=config, path=t.src)


def delete_run(name: str, saves_dir: str | Path | None = None) -> None:
    """Remove a run directory and everything in it; refuses symlinks and unsafe names."""
    root = _root(saves_dir)
    d = run_dir(name, root)
    if not d.is_symlink() and not d.exists():
        raise SaveError(f"no saved run named {name!r} in {root}; check the name with `attnlab runs`")
    _refuse_symlinks(root, d)
    if not d.is_dir():
        raise SaveError(f"{d} is not a run directory; remove it by hand")
    shutil.rmtree(d)


def __getattr__(name: str):
    """list_runs and RunInfo moved to core/runs.py (the run registry); still importable from here."""
    if name in ("list_runs", "RunInfo"):
        from core import runs
        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
