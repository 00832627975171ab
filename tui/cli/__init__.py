"""The `attnlab` command: no arguments opens the dashboard; subcommands work headless.

A small parser that dispatches to one module per group of commands (train; inspect; generate; reach).
Every user mistake ends in one `attnlab: error: ...` line and exit status 2, never a traceback.
"""

import os
import signal


def _quiet_exit(signum, frame):
    """Ctrl+C while the program is still starting (imports take ~0.3 s): leave at once, without a
    traceback (nothing is written yet; an exception raised inside a C extension's import would become
    an ImportError with one)."""
    os._exit(128 + signum)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # a fresh `attnlab` process
    signal.signal(signal.SIGINT, _quiet_exit)

import argparse  # noqa: E402
import sys  # noqa: E402

# one BLAS thread unless the user asked otherwise (measured faster on a shared 2-core machine)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, os.environ.get("ATTNLAB_THREADS", "1"))

import numpy.random  # noqa: E402,F401  (imported while Ctrl+C still just exits: see ctrl_c.py)

from tui.cli import ctrl_c  # noqa: E402
from tui.cli.common import USER_ERRORS, UserError  # noqa: E402
from tui.cli import compare, generate, heads, inspect, reach, timeline, train  # noqa: E402
from core.text import safe_text  # noqa: E402

# each module adds its subcommands with register(sub); a new group of commands is one more entry here
GROUPS = [train, inspect, heads, generate, timeline, reach, compare]


def make_parser():
    p = argparse.ArgumentParser(prog="attnlab", description="Train a numpy transformer and watch it learn. "
                                "Without a command, opens the dashboard.")
    sub = p.add_subparsers(dest="command")
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv=None):
    if getattr(signal.getsignal(signal.SIGINT), "__name__", "") == "_quiet_exit":
        ctrl_c.take_over()
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return code
    except KeyboardInterrupt:  # Ctrl+C outside training (which handles it itself): no traceback
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `attnlab runs | head -3`: the reader left; that is not an error
        _silence_stdout()
        return 0


def _main(argv):
    args = make_parser().parse_args(argv)
    if args.command is None:
        from tui.app import run_app
        return run_app()
    try:
        return args.func(args) or 0
    except BrokenPipeError:
        raise
    except (UserError, *USER_ERRORS) as e:
        print(f"attnlab: error: {safe_text(str(e))}", file=sys.stderr)
        return 2


def _silence_stdout():
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
