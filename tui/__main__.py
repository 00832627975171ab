"""`python -m tui` from the repo root: the same as the `attnlab` command."""

import signal
import sys


def _quiet_exit(signum, frame):  # Ctrl+C during start-up (imports): leave without a traceback
    raise SystemExit(128 + signum)


signal.signal(signal.SIGINT, _quiet_exit)

from tui.cli import main  # noqa: E402

sys.exit(main())
