"""`python -m bench portability`: the numerical tests under every OpenBLAS kernel this CPU can run, with 1
and 2 BLAS threads, each in a fresh process (OPENBLAS_CORETYPE is read once, when OpenBLAS loads).

A tolerance tuned to one kernel fails on another; this shows it before a CI machine does. Tests never set
OPENBLAS_CORETYPE themselves; only this script does, for the child processes it starts.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# kernel -> the CPU flags it needs (/proc/cpuinfo names)
KERNELS = {
    "Prescott": {"pni"},
    "Sandybridge": {"avx"},
    "Haswell": {"avx2", "fma"},
    "Zen": {"avx2", "fma"},
    "SkylakeX": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"},
    "Cooperlake": {"avx512f", "avx512_bf16"},
    "SapphireRapids": {"avx512f", "avx512_bf16", "avx512_fp16", "amx_tile"},
}
# the tests whose results depend on floating-point arithmetic (the TUI and fault tests do not)
NUMERICAL = ["test_ops.py", "test_attention.py", "test_model.py", "test_model_workspace.py", "test_sample.py",
             "test_trainer.py", "test_tasks.py", "test_bench.py", "test_checkpoint.py", "test_tokenizer.py",
             "test_interp.py", "test_timeline.py"]
_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|error|errors)")
_CORENAME = ("import ctypes\n"
             "import numpy\n"
             "libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.lower()})\n"
             "name = '?'\n"
             "for path in libs:\n"
             "    lib = ctypes.CDLL(path)\n"
             "    for sym in ('scipy_openblas_get_corename64_', 'openblas_get_corename64_', 'openblas_get_corename'):\n"
             "        f = getattr(lib, sym, None)\n"
             "        if f is not None:\n"
             "            f.restype = ctypes.c_char_p\n"
             "            name = f().decode()\n"
             "print(name)\n")


def cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def supported_kernels(flags=None):
    flags = cpu_flags() if flags is None else flags
    return [k for k, need in KERNELS.items() if need <= flags]


def _env(kernel, threads):
    env = dict(os.environ, OPENBLAS_CORETYPE=kernel)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_one(kernel, threads, files):
    """pytest on `files` under one kernel and thread count: a dict of counts, the kernel OpenBLAS reports,
    and the failing test ids."""
    env = _env(kernel, threads)
    core = subprocess.run([sys.executable, "-c", _CORENAME], env=env, capture_output=True, text=True,
                          cwd=ROOT).stdout.strip() or "?"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rf",
                        *[str(ROOT / "tests" / f) for f in files]], env=env, capture_output=True, text=True, cwd=ROOT)
    counts, failed = parse_pytest(p.stdout)
    return {"kernel": kernel, "reported_core": core, "threads": threads, **counts, "ok": p.returncode == 0,
            "seconds": round(time.perf_counter() - t0, 1), "failed_tests": failed}


def parse_pytest(stdout):
    """pytest's closing counts and the ids of failed tests (-rf lines)."""
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    lines = stdout.strip().splitlines()
    summary = next((l for l in reversed(lines) if _COUNTS.search(l) and " in " in l), "")
    for n, what in _COUNTS.findall(summary):
        counts["errors" if what.startswith("error") else what] += int(n)
    failed = [l.split(" ", 1)[1].split(" - ")[0] for l in lines if l.startswith("FAILED ")]
    return counts, failed


def main(argv, threads=1):
    ap = argparse.ArgumentParser(prog="python -m bench portability")
    ap.add_argument("--kernels", help="comma-separated OPENBLAS_CORETYPE values (default: all this CPU runs)")
    ap.add_argument("--threads-list", default="1,2", help="BLAS thread counts to try (default 1,2)")
    ap.add_argument("--all", action="store_true", help="the whole suite, not only the numerical tests")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    kernels = args.kernels.split(",") if args.kernels else supported_kernels()
    files = sorted(p.name for p in (ROOT / "tests").glob("test_*.py")) if args.all else NUMERICAL
    rows = []
    for kernel in kernels:
        for n in (int(t) for t in args.threads_list.split(",")):
            row = run_one(kernel, n, files)
            rows.append(row)
            if not args.json:
                state = "ok  " if row["ok"] else "FAIL"
                print(f"{state} {kernel:15} (OpenBLAS reports {row['reported_core']:12}) {n} thread(s): "
                      f"{row['passed']} passed, {row['failed']} failed, {row['skipped']} skipped "
                      f"in {row['seconds']:.0f} s", flush=True)
                for t in row["failed_tests"]:
                    print(f"     failed: {t}", flush=True)
    if args.json:
        print(json.dumps({"cpu_kernels": kernels, "files": files, "runs": rows}))
    return 0 if all(r["ok"] for r in rows) else 1
