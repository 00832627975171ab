"""`python -m tui` from the repo root: the same as the `attnlab` command."""

import sys

from tui.cli import main

sys.exit(main())
