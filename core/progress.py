"""Smoothed training speed and ETA, one formula for the CLI's progress line and the dashboard.

A debiased exponential moving average of milliseconds per step over roughly the last WINDOW steps:
one slow step (an evaluation, a busy machine) moves it by 1/WINDOW, not to its own value.
"""

from __future__ import annotations

import math

WINDOW = 50  # steps; the average's time constant


class StepRate:
    """Feed each step's milliseconds with add(); read ms_per_step and eta_s(remaining_steps)."""

    def __init__(self, window: int = WINDOW) -> None:
        self.alpha = 1.0 - 1.0 / max(1, window)
        self._acc = 0.0
        self._weight = 0.0

    def add(self, ms: float) -> None:
        if ms is None or not math.isfinite(ms) or ms < 0:
            return
        self._acc = self.alpha * self._acc + (1.0 - self.alpha) * ms
        self._weight = self.alpha * self._weight + (1.0 - self.alpha)

    @property
    def ms_per_step(self) -> float | None:
        return self._acc / self._weight if self._weight > 0 else None

    def eta_s(self, remaining_steps: int) -> float | None:
        ms = self.ms_per_step
        return None if ms is None else max(0, remaining_steps) * ms / 1000.0


def fmt_eta(seconds) -> str:
    """mm:ss, or h:mm:ss from an hour up; '—' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
