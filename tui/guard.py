"""The dashboard's hold on the run it trains: the run lock, a free name for a new run, and the signals
(SIGTERM, SIGHUP) that must save `last` before the app goes, like quitting does.
"""

from __future__ import annotations

import asyncio
import signal

from core.runs import RunInUse, RunLock, describe_run, existing_run, free_name

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


class RunGuard:
    """Holds at most one run lock: taking another releases the first."""

    def __init__(self):
        self.lock: RunLock | None = None

    @property
    def name(self) -> str | None:
        return self.lock.name if self.lock is not None else None

    def take(self, name: str) -> None:
        """Lock saves/NAME for this process (no-op if already held); RunInUse names the other pid."""
        if self.name == name:
            return
        new = RunLock(name).acquire()
        self.release()
        self.lock = new

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def name_for_new_run(name: str) -> tuple[str, str | None]:
    """(name to save under, a note) : a taken name is never overwritten; the next free one is offered."""
    info = existing_run(name)
    if info is None:
        return name, None
    free = free_name(name)
    return free, (f"saves/{name} exists ({describe_run(info)}); this run saves as {free} — "
                  f"type another name in Setup, or resume {name} from Saves")


def install_signals(callback) -> None:
    """Run callback() on the app's event loop when SIGTERM or SIGHUP arrives (closing the terminal)."""
    loop = asyncio.get_running_loop()
    for s in SIGNALS:
        try:
            loop.add_signal_handler(s, callback)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such support
            pass


def remove_signals() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for s in SIGNALS:
        try:
            loop.remove_signal_handler(s)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


__all__ = ["RunGuard", "RunInUse", "install_signals", "name_for_new_run", "remove_signals"]
