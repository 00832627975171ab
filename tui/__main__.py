"""`python -m tui` from the repo root: the same as the `attnlab` command."""

import os
import signal
import sys


def _quiet_exit(signum, frame):
    """Ctrl+C during start-up (imports): leave at once, without a traceback; nothing is written yet.

    os._exit, not SystemExit: an exception raised inside a C extension's import becomes an ImportError
    with a traceback."""
    os._exit(128 + signum)


signal.signal(signal.SIGINT, _quiet_exit)

from tui.cli import main  # noqa: E402

sys.exit(main())
