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


CHAT_KEYS = ("chat_score", "slot_correct", "ack_exact", "two_fact_recall", "dont_know_ood", "dont_know_false",
             "dont_know_unstated", "qa_mid_exact", "qa_fresh_exact")


def _figures(ev, keys):
    out = [f"{k} {ev[k]:.4f}" for k in keys if ev.get(k) is not None]
    out += [f"arith_{op} {v:.4f}" for op, v in (ev.get("arith_exact_by_op") or {}).items() if v is not None]
    return ", ".join(out)


def format_eval(ev):
    keys = ("accuracy", "answer_exact", "context_recall", "live_recall", "topic_coherence") + CHAT_KEYS + (
        "val_loss", "train_loss", "antidiagonal_best")
    text = f"eval @ step {ev['step']}: " + _figures(ev, keys)
    if len(ev.get("answer_by_level") or {}) > 1:  # a graded Q&A corpus: exact-match per level
        text += "\nby level: " + ", ".join(f"{lv} {s['exact']:.4f} ({s['n']})" for lv, s in ev["answer_by_level"].items())
    text += _layouts(ev, "val") + _hardest(ev, "val")
    if ev.get("heldout_family"):  # the chat task's test split: phrasings, values and questions never tuned on
        text += "\nheld-out family (test split): " + _figures(ev["heldout_family"], ("context_recall", "live_recall") + CHAT_KEYS)
        text += _layouts(ev["heldout_family"], "held-out family") + _hardest(ev["heldout_family"], "held-out family")
    return text


def _hits(r):
    """A {"recall", "n"} row as right / asked ("6/12")."""
    return f"{r['recall'] * r['n']:.0f}/{r['n']}"


def _layouts(ev, split):
    """Recall by where the question sits among the chat's facts (a chat evaluation's recall_by_layout)."""
    rows = ev.get("recall_by_layout") or {}
    if not rows:
        return ""
    shown = "; ".join(f"{k} {_hits(r)}" for k, r in rows.items())
    return f"\nrecall by layout ({split}): {shown}"


def _hardest(ev, split, k=3):
    """The k question phrasings recalled least, of those missed at least once (a chat evaluation's
    recall_by_ask; --json has every phrasing, and recall_by_fact the facts' phrasings)."""
    rows = [(t, r) for t, r in (ev.get("recall_by_ask") or {}).items() if r["recall"] < 1][:k]
    if not rows:
        return ""
    shown = "; ".join(f"\"{t}\" {_hits(r)}" for t, r in rows)
    return f"\nrecalled least ({split}): {shown}"


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
