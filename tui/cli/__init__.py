"""The `attnlab` command: no arguments opens the dashboard; subcommands work headless.

A small parser that dispatches to one module per group of commands (train; inspect; generate; ...).
Every user mistake ends in one `attnlab: error: ...` line and exit status 2, never a traceback.
"""

import argparse
import os
import sys

# one BLAS thread unless the user asked otherwise (measured faster on a shared 2-core machine)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, os.environ.get("ATTNLAB_THREADS", "1"))

from tui.cli import compare, generate, inspect, train  # noqa: E402
from tui.cli.common import USER_ERRORS, UserError  # noqa: E402
from core.text import safe_text  # noqa: E402

# each module adds its subcommands with register(sub); a new group of commands is one more entry here
GROUPS = [train, inspect, generate, compare]


def make_parser():
    p = argparse.ArgumentParser(prog="attnlab", description="Train a numpy transformer and watch it learn. "
                                "Without a command, opens the dashboard.")
    sub = p.add_subparsers(dest="command")
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv=None):
    args = make_parser().parse_args(argv)
    if args.command is None:
        from tui.app import run_app
        return run_app()
    try:
        return args.func(args) or 0
    except (UserError, *USER_ERRORS) as e:
        print(f"attnlab: error: {safe_text(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
