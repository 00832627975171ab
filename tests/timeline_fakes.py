"""A hand-made recording shaped like core.timeline's Snapshot/Timeline (the agreed interface), for TUI tests.

Reversal on PYTHON: head 0 turns from uniform into the anti-diagonal over the steps, head 1 stays uniform;
the anti-diagonal score and the accuracy climb with it, and the answer turns into NOHTYP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Snapshot:
    step: int
    elapsed_s: float
    loss: float | None
    val_loss: float | None
    metric: str | None
    metric_value: float | None
    maps: np.ndarray  # (n_layer, n_head, T, T) float16
    scores: dict = field(default_factory=dict)
    answer: str | None = None


@dataclass
class Timeline:
    snapshots: list
    labels: list
    probe: str
    marks: list = field(default_factory=list)


STEPS = [0, 1, 2, 3, 5, 8, 12, 20, 30, 50]


def reversal_snapshot(step: int, last: int = STEPS[-1]) -> Snapshot:
    t = step / last  # 0 -> 1 over training
    T = 6
    uniform = np.full((T, T), 1 / T)
    anti = np.zeros((T, T))
    anti[np.arange(T), T - 1 - np.arange(T)] = 1.0
    head0 = (1 - t) * uniform + t * anti  # rows still sum to 1
    maps = np.stack([head0, uniform])[None].astype(np.float16)  # (1, 2, T, T)
    score = np.array([[head0[np.arange(T), T - 1 - np.arange(T)].mean(), 1 / T]], dtype=np.float32)
    word = "NOHTYP"
    answer = word[:round(t * T)] + "P" * (T - round(t * T))
    return Snapshot(step, step * 0.01, 2.0 * (1 - t) + 0.01, None, "accuracy", t, maps,
                    {"antidiagonal": score}, answer)


def reversal_timeline(steps=STEPS) -> Timeline:
    return Timeline([reversal_snapshot(s) for s in steps], list("PYTHON"), "PYTHON",
                    [{"step": 20, "kind": "speed_limit", "value": 5}])
