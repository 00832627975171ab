"""Export a save's weights for other tools: safetensors (needs the `export` extra) or a plain .npz.

Tensors keep the save's GPT-2 names and (in, out) layout, bit for bit; the metadata holds what is
needed to use them (task, step, the resolved config, the tokenizer's characters in id order).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from core.checkpoint import load_checkpoint

FORMATS = ("safetensors", "npz")
NPZ_META = "__metadata__"  # the one entry of an exported .npz that is not a tensor: a JSON string


class ExportError(ValueError):
    """An export that cannot be written; the message names the file and the fix."""


def metadata(name: str, tag: str, ck) -> dict[str, str]:
    """String-to-string metadata (what safetensors allows)."""
    return {"format": "np", "producer": "attnlab", "source": f"{name}/{tag}", "task": str(ck.meta.get("task")),
            "step": str(ck.meta.get("step")), "layout": "GPT-2 names; linear weights are (in, out)",
            "config": json.dumps(ck.config, sort_keys=True), "tokenizer": json.dumps(ck.meta.get("tokenizer"))}


def export_weights(name: str, tag: str = "best", fmt: str = "safetensors", out: str | Path | None = None) -> Path:
    """Write the weights of saves/NAME/TAG to `out` (default NAME-TAG.FORMAT here); returns the path."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: pick one of {', '.join(FORMATS)}")
    ck = load_checkpoint(name, tag)
    out = Path(out) if out else Path(f"{name}-{tag}.{fmt}")
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give a file name, e.g. {out / f'{name}.{fmt}'}")
    tensors = {k: np.ascontiguousarray(v) for k, v in ck.params.items()}
    meta = metadata(name, tag, ck)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if fmt == "safetensors":
                from safetensors.numpy import save
                f.write(save(tensors, metadata=meta))
            else:
                np.savez(f, **tensors, **{NPZ_META: np.array(json.dumps(meta))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        raise ExportError(f"could not write {out} ({e.strerror or e}); check the folder exists and is writable") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out

