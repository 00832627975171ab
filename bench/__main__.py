"""`python -m bench NAME [--threads N] [--json] ...`: run the benchmark module bench/NAME.py.

BLAS thread counts are fixed here, before numpy is imported: one thread unless --threads says more.
"""

import importlib
import os
import sys

SUITES = {
    "core": "bench.core",    # training step, matmul floor, KV-cache generation, PyTorch twin
    "tasks": "bench.tasks",  # per-task time-to-milestone
    "tui": "bench.tui",      # keypress latency while training, throughput with the UI vs headless
    "sweep": "bench.sweep",  # wall time of one Optuna sweep (core/sweep.py) on 1, 2, ... worker processes
    "portability": "bench.portability",  # the numerical tests under every OpenBLAS kernel the CPU runs
    "corpus": "bench.corpus",  # peak memory of loading a large corpus, as a multiple of the encoded corpus
    "copy": "bench.copy",  # steps until a model of a preset's shape can copy (the skill every recall needs)
}
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _threads(argv):
    """Pop `--threads N` / `--threads=N` from argv; default 1."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            break
        if arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
            del argv[i]
            break
    else:
        return 1
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"bench: --threads needs a positive integer, got {value!r}")
    return int(value)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m bench {{{','.join(SUITES)}}} [--threads N] [--json] [options]"
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUITES:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"bench: unknown suite {argv[0]!r}", file=sys.stderr)
        sys.exit(usage)
    name = argv.pop(0)
    if "-h" in argv or "--help" in argv:  # the suite's docstring is its usage; nothing runs
        print((importlib.import_module(SUITES[name]).__doc__ or usage).strip())
        return 0
    threads = _threads(argv)
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        module = importlib.import_module(SUITES[name])
    except ModuleNotFoundError as e:
        if e.name != SUITES[name]:
            raise
        sys.exit(f"bench: the {name!r} suite is not written yet (expected {SUITES[name].replace('.', '/')}.py)")
    return module.main(argv, threads=threads)


if __name__ == "__main__":
    rc = main()
    sys.exit(rc if isinstance(rc, int) else 0)
