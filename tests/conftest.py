"""Test-wide setup: one BLAS thread (as the CLI uses), set before numpy is first imported.

Idle BLAS threads spin, which also makes Textual's Pilot think the app is busy after every key press.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
