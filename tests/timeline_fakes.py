"""A hand-made recording in core.timeline's Snapshot/Timeline, for TUI tests.

Reversal on PYTHON: head 0 turns from uniform into the anti-diagonal over the steps, head 1 stays uniform;
the anti-diagonal score and the accuracy climb with it, and the answer turns into NOHTYP.
"""

from __future__ import annotations

import numpy as np

from core.timeline import Snapshot, Timeline

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
    tl = Timeline("PYTHON", list("PYTHON"))
    for s in steps:
        tl.add(reversal_snapshot(s))
    tl.mark(20, "speed_limit", 5)
    return tl
