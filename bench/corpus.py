"""Peak memory of loading a large Q:/A: corpus, as a multiple of the encoded corpus (one byte per
character): `python -m bench corpus [--mb 20]`. A child process builds the qa task on a corpus of the
project's own questions repeated to the size asked for, and reports its peak RSS (ru_maxrss)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
from core.config import load_config
from core.tasks import make_task
import core.tasks.qa
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the interpreter, numpy and attnlab
t0 = time.perf_counter()
cfg = load_config("qa", overrides=[f"data.corpus={sys.argv[1]}", "data.n_eval=4"])
task = make_task(cfg)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
chars = len(task.train_ids) + len(task.val_ids)
print(json.dumps({"chars": chars, "base_bytes": base, "peak_bytes": peak, "seconds": seconds,
                  "ids_dtype": str(task.train_ids.dtype)}))
"""


def make_corpus(path, mb):
    """The project's Q&A training text, repeated (numbered, so conversations differ) to `mb` MB."""
    text = (REPO / "corpora" / "qa" / "train.txt").read_text(encoding="utf-8").strip() + "\n\n"
    size, n = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < mb * 1_000_000:
            chunk = text.replace("Q: ", f"Q: [{n}] ")
            f.write(chunk)
            size += len(chunk.encode("utf-8"))
            n += 1
    return size


def main(argv=None, threads=1):
    argv = list(argv or [])
    mb = int(argv[argv.index("--mb") + 1]) if "--mb" in argv else 20
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.txt"
        size = make_corpus(path, mb)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=REPO, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if out.returncode:
        print(out.stderr, file=sys.stderr)
        return 1
    r = json.loads(out.stdout)
    grown = r["peak_bytes"] - r["base_bytes"]
    r.update(file_bytes=size, peak_over_encoded=round(r["peak_bytes"] / r["chars"], 2),
             growth_over_encoded=round(grown / r["chars"], 2))
    if "--json" in argv:
        print(json.dumps(r))
    else:
        print(f"corpus {size / 1e6:.1f} MB, {r['chars']:,} characters encoded as {r['ids_dtype']}: "
              f"peak RSS {r['peak_bytes'] / 2**20:.0f} MiB = {r['peak_over_encoded']}x the encoded corpus "
              f"(growth over the interpreter, numpy and attnlab: {r['growth_over_encoded']}x), {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
