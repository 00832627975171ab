"""What the command groups share: the user-error types, eval formatting and JSON conversion."""

from core.checkpoint import SaveError
from core.config import ConfigError
from core.tasks.corpus import CorpusError
from core.tasks.lm import PromptTooLong
from core.timeline import Snapshot
from core.tokenizer import TokenizerError

USER_ERRORS = (ConfigError, CorpusError, SaveError, TokenizerError, PromptTooLong, ValueError, OSError)


class UserError(Exception):
    pass


def format_eval(ev):
    keys = [k for k in ("accuracy", "answer_exact", "context_recall", "topic_coherence", "val_loss",
                        "train_loss", "antidiagonal_best") if ev.get(k) is not None]
    return f"eval @ step {ev['step']}: " + ", ".join(f"{k} {ev[k]:.4f}" for k in keys)


def jsonable(obj):
    """Events and metrics with numpy values -> plain JSON types."""
    import numpy as np
    if isinstance(obj, Snapshot):  # a timeline snapshot: its scalars, scores and answer, not the maps
        return jsonable(obj.to_row())
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
