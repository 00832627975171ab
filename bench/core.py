"""Core engine speed: one training step, its matmul-only floor, KV-cache generation (one model, and
2 or 4 answering together as a Mixture), a PyTorch twin, and what recording the training timeline costs.

All variants run interleaved in one process and are quoted as medians (the machine is noisy).
BLAS threads are set by bench/__main__.py before numpy is imported. Figures, not pass/fail.
"""

import argparse
import json
import time

import numpy as np

from core import ops
from core.config import ModelConfig
from core.mixture import Mixture, mean_probs
from core.model import Transformer
from core.optim import AdamW, clip_grad_norm
from core.sample import generate

REFERENCE = dict(vocab_size=60, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
REFERENCE_BATCH = 32
MIX_SIZES = (2, 4)  # models answering together (attnlab chat --with), timed against one
# the Q&A task at the reference shape, for the timeline's cost (the snapshot needs a task's probe)
TIMELINE_OVERRIDES = ("model.block_size=64", "model.n_layer=4", "model.n_head=4", "model.n_embd=128",
                      "model.dropout=0.0", f"train.batch_size={REFERENCE_BATCH}")


def make_step(model, opt, idx, targets, lr=1e-3, clip=1.0, teachers=()):
    """A closure running one full training step: forward, backward, clip, AdamW. With `teachers` (models),
    the targets are their mean probabilities, as train.teachers makes them (the teachers' forwards included)."""
    def step():
        model.forward(idx, targets, soft=mean_probs(teachers, idx) if teachers else None)
        model.backward()
        clip_grad_norm(model.grad_flat, clip)
        opt.step(lr)
    return step


def record_matmuls(step):
    """The (a, b, out) operands of every matmul one call of `step` makes, in order."""
    trace = []
    ops.set_matmul_trace(trace)
    try:
        step()
    finally:
        ops.set_matmul_trace(None)
    return trace


def matmul_flop(trace):
    """2 m k n per product, times the stacked batch dimensions."""
    total = 0
    for a, b, _ in trace:
        batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))) if a.ndim > 2 or b.ndim > 2 else 1
        m = a.shape[-2] if a.ndim > 1 else 1
        n = b.shape[-1] if b.ndim > 1 else 1
        total += 2 * batch * m * a.shape[-1] * n
    return total


def replay(trace):
    """The same matmuls, same operands (shapes, strides, dtype, output buffers), back to back."""
    mm = np.matmul
    for a, b, out in trace:
        mm(a, b, out=out)


def _timed(fn, clock=time.perf_counter):
    t = clock()
    fn()
    return clock() - t


def generation_cps(model, prompt, n_new, use_cache):
    """Characters (tokens) per second of greedy batch-1 generation."""
    t = time.perf_counter()
    n = sum(1 for _ in generate(model, prompt, max_new_tokens=n_new, temperature=0.0, use_cache=use_cache))
    return n / (time.perf_counter() - t)


def full_context_step_s(model, ids, use_cache, n=20):
    """Seconds for the logits of one more token when the window is full (len(ids) = block_size):
    one cached position at the end of a filled cache, or the whole window without one (median)."""
    times = []
    if use_cache:
        kv = model.new_kv_cache()
        model.forward_step(np.asarray([ids[:-1]]), kv)
        for _ in range(n):
            kv["len"] = len(ids) - 1
            times.append(_timed(lambda: model.decode_one(ids[-1], kv)))
    else:
        window = np.asarray([ids])
        times = [_timed(lambda: model.forward(window)) for _ in range(n)]
    return float(np.median(times))


def _torch_twin(model, threads):
    try:
        from bench.torch_twin import TorchTwin
    except ImportError:
        return None
    return TorchTwin(model, threads=threads)


def measure(cfg=None, batch=REFERENCE_BATCH, repeats=15, gen_repeats=5, warmup=2, threads=1,
            use_torch=True, seed=0):
    """Run every variant interleaved; return a flat dict of medians and derived ratios."""
    cfg = cfg or ModelConfig(**REFERENCE)
    rng = np.random.default_rng(seed)
    model = Transformer(cfg, rng=rng)
    opt = AdamW(model, weight_decay=0.1)
    T = cfg.block_size
    idx = rng.integers(0, cfg.vocab_size, (batch, T))  # (B, T)
    targets = rng.integers(0, cfg.vocab_size, (batch, T))  # (B, T)
    step = make_step(model, opt, idx, targets)
    twin = _torch_twin(model, threads) if use_torch else None
    gen_model = model.snapshot()
    prompt = [int(i) for i in rng.integers(0, cfg.vocab_size, max(1, T // 2))]
    n_new = 3 * T
    for _ in range(warmup):
        step()
        if twin is not None:
            twin.step(idx, targets)
    trace = record_matmuls(step)
    replay(trace)
    full = [int(i) for i in rng.integers(0, cfg.vocab_size, T)]  # a full window
    mixes = {n: Mixture([Transformer(cfg, rng=rng) for _ in range(n)]) for n in MIX_SIZES}
    steps, mms, torch_steps, cps_cache, cps_nocache, full_cache, full_nocache = [], [], [], [], [], [], []
    cps_mix = {n: [] for n in MIX_SIZES}
    taught = make_step(model.snapshot(), AdamW(model.snapshot(), weight_decay=0.1), idx, targets,
                       teachers=mixes[max(MIX_SIZES)].models)  # distillation from the largest mixture
    taught_steps = []
    for r in range(repeats):
        steps.append(_timed(step))
        mms.append(_timed(lambda: replay(trace)))
        if twin is not None:
            torch_steps.append(_timed(lambda: twin.step(idx, targets)))
        if r < gen_repeats:
            cps_cache.append(generation_cps(gen_model, prompt, n_new, True))
            cps_nocache.append(generation_cps(gen_model, prompt, n_new, False))
            full_cache.append(full_context_step_s(gen_model, full, True))
            full_nocache.append(full_context_step_s(gen_model, full, False))
            for n, mix in mixes.items():
                cps_mix[n].append(generation_cps(mix, prompt, n_new, True))
            taught_steps.append(_timed(taught))
    step_s, mm_s = float(np.median(steps)), float(np.median(mms))
    flop = matmul_flop(trace)
    out = {
        "config": {**{k: getattr(cfg, k) for k in REFERENCE}, "batch": batch, "params": model.num_params()},
        "threads": threads, "repeats": repeats, "numpy": np.__version__,
        "step_ms": step_s * 1e3,
        "step_ms_min": float(np.min(steps)) * 1e3,
        "matmul_ms": mm_s * 1e3,
        "matmul_calls": len(trace),
        "step_gflop": flop / 1e9,
        "step_gflop_per_s": flop / step_s / 1e9,
        "matmul_gflop_per_s": flop / mm_s / 1e9,
        "tokens_per_s": batch * T / step_s,
        "gen_new_chars": n_new, "gen_prompt_chars": len(prompt),
        "gen_cps_cache": float(np.median(cps_cache)),
        "gen_cps_nocache": float(np.median(cps_nocache)),
    }
    out["matmul_ratio"] = out["step_ms"] / out["matmul_ms"]
    out["kv_speedup"] = out["gen_cps_cache"] / out["gen_cps_nocache"]
    for n in MIX_SIZES:  # several saves answering together: the cost per character against one model
        out[f"gen_cps_mix{n}"] = float(np.median(cps_mix[n]))
        out[f"mix{n}_cost"] = out["gen_cps_cache"] / out[f"gen_cps_mix{n}"]
    n = max(MIX_SIZES)  # a training step whose targets are that many teachers' mean probabilities
    out[f"taught{n}_step_ms"] = float(np.median(taught_steps)) * 1e3
    out[f"taught{n}_cost"] = out[f"taught{n}_step_ms"] / out["step_ms"]
    # one next-token step with the window full: what the cache saves where it saves most
    out["full_step_us_cache"] = float(np.median(full_cache)) * 1e6
    out["full_step_us_nocache"] = float(np.median(full_nocache)) * 1e6
    out["kv_speedup_full"] = out["full_step_us_nocache"] / out["full_step_us_cache"]
    if twin is not None:
        import torch
        out["torch"] = torch.__version__
        out["torch_step_ms"] = float(np.median(torch_steps)) * 1e3
        out["torch_ratio"] = out["step_ms"] / out["torch_step_ms"]
    return out


def recorded_steps(max_steps, eval_interval):
    """How many snapshots a run of max_steps records: step 0, the schedule, every evaluation."""
    from core.timeline import recorded_steps as steps
    return len(steps(max_steps, eval_interval))


def measure_timeline(task="qa", overrides=TIMELINE_OVERRIDES, block=4, repeats=7, warmup=1, eval_repeats=3):
    """Timeline cost by in-process interleaved A/B on one trainer: blocks of `block` training steps
    alone (A) and each followed by a snapshot (B). The dense phase (every step recorded) costs B/A - 1.
    A whole run of the task's preset costs its snapshots (step 0, the schedule, every evaluation) over
    what the run takes without them, max_steps steps and its evaluations. A snapshot at an evaluation
    costs what a scheduled one does, except where the evaluation carries the probe in its own forward
    (reversal): there it costs what carrying adds to the evaluation, timed by A/B too."""
    from core.config import load_config
    from core.trainer import Trainer
    preset = load_config(task).train
    tr = Trainer(load_config(task, overrides=list(overrides)))
    tr.timeline.max_snapshots = 10 ** 6  # no thinning pass inside the measurement
    timeline = tr.timeline

    def plain():
        for _ in range(block):
            tr.step()

    def recorded():
        for _ in range(block):
            tr.record(tr.step())
    for _ in range(warmup):
        plain()
        recorded()
    step_s, rec_s = _ab(plain, recorded, repeats, per=block)

    def eval_alone():
        tr.timeline = None
        tr.evaluate(track=False)
        tr.timeline = timeline

    def eval_recorded():
        if timeline.snapshots and timeline.snapshots[-1].step == tr.step_count:  # recorded again at this step
            timeline.nbytes -= timeline.snapshots.pop().nbytes
        tr.evaluate(track=False)
        tr.record()
    carried = tr._eval_probe_batch() is not None
    # a carried snapshot adds ~1% to an evaluation: many repeats to see it through the noise
    eval_s, eval_rec_s = _ab(eval_alone, eval_recorded if carried else eval_alone,
                             max(eval_repeats, 6 * repeats) if carried else eval_repeats, clock=time.process_time)
    n = recorded_steps(preset.max_steps, preset.eval_interval)
    n_evals = evaluations(preset.max_steps, preset.eval_interval)
    snap_s, eval_snap_s = rec_s - step_s, (eval_rec_s - eval_s if carried else rec_s - step_s)
    run_s = preset.max_steps * step_s + n_evals * eval_s  # the run without a timeline: its steps and evaluations
    return {"timeline_task": task, "timeline_step_ms": step_s * 1e3, "timeline_record_ms": snap_s * 1e3,
            "timeline_eval_ms": eval_s * 1e3, "timeline_evals": n_evals, "timeline_eval_record_ms": eval_snap_s * 1e3,
            "timeline_overhead_dense": rec_s / step_s - 1.0, "timeline_run_steps": preset.max_steps,
            "timeline_snapshots": n, "timeline_overhead": ((n - n_evals) * snap_s + n_evals * eval_snap_s) / run_s}


def _ab(a_fn, b_fn, repeats, per=1, clock=time.perf_counter):
    """Medians (s) of a_fn and b_fn timed alternately, the order swapped every repeat; each divided by per."""
    a, b = [], []
    for r in range(repeats):  # alternate which goes first: drift hits both alike
        for fn, out in ((a_fn, a), (b_fn, b)) if r % 2 == 0 else ((b_fn, b), (a_fn, a)):
            out.append(_timed(fn, clock) / per)
    return float(np.median(a)), float(np.median(b))


def measure_run_overhead(task="reversal", repeats=11):
    """Whole preset runs with and without a timeline, interleaved: (median with / median without) - 1,
    in process CPU time (time a shared machine takes away is not counted). Direct, but only
    affordable for a task whose run takes seconds."""
    from core.config import load_config
    from core.trainer import Trainer

    def run(record):
        tr = Trainer(load_config(task))
        if not record:
            tr.timeline = None
        tr.run(lambda e: None)
    off, on = _ab(lambda: run(False), lambda: run(True), repeats, clock=time.process_time)
    return {"timeline_run_s": off, "timeline_run_overhead": on / off - 1.0}


def evaluations(max_steps, eval_interval):
    """How many evaluations a run of max_steps makes: every eval_interval steps and at the last step."""
    return max_steps // eval_interval + (max_steps % eval_interval != 0)


def format_table(r):
    """A readable table of the measure() dict."""
    c = r["config"]
    rows = [
        ("config", f"V{c['vocab_size']} C{c['n_embd']} L{c['n_layer']} nh{c['n_head']} T{c['block_size']} "
                   f"B{c['batch']}, {c['params']:,} params, {r['threads']} thread(s), numpy {r['numpy']}"),
        ("train step", f"{r['step_ms']:.1f} ms median (min {r['step_ms_min']:.1f}), {r['tokens_per_s']:,.0f} tokens/s"),
        ("step FLOPs", f"{r['step_gflop']:.2f} GFLOP (matmuls) -> {r['step_gflop_per_s']:.1f} GFLOP/s"),
        ("matmuls alone", f"{r['matmul_ms']:.1f} ms ({r['matmul_calls']} calls, {r['matmul_gflop_per_s']:.1f} GFLOP/s)"),
        ("matmul_ratio", f"{r['matmul_ratio']:.3f}  (step / matmuls alone)"),
        ("generate, KV cache", f"{r['gen_cps_cache']:,.0f} chars/s"),
        ("generate, no cache", f"{r['gen_cps_nocache']:,.0f} chars/s"),
        ("kv_speedup", f"{r['kv_speedup']:.2f}x  (prompt {r['gen_prompt_chars']}, {r['gen_new_chars']} new, greedy, "
                       f"the window sliding in half-window hops)"),
        *((f"generate, {n} together", f"{r[f'gen_cps_mix{n}']:,.0f} chars/s, mix{n}_cost {r[f'mix{n}_cost']:.2f}x "
                                        f"(one model's time per character, KV caches)") for n in MIX_SIZES),
        (f"taught step, {max(MIX_SIZES)} teachers", f"{r[f'taught{max(MIX_SIZES)}_step_ms']:.1f} ms, "
                                                   f"taught{max(MIX_SIZES)}_cost {r[f'taught{max(MIX_SIZES)}_cost']:.2f}x "
                                                   f"(train.teachers: their forwards and soft targets)"),
        ("full-window step", f"{r['full_step_us_cache']:.0f} us cached vs {r['full_step_us_nocache']:.0f} us without"),
        ("kv_speedup_full", f"{r['kv_speedup_full']:.2f}x  (one next-token step with the window full)"),
    ]
    if "torch_step_ms" in r:
        rows += [("PyTorch twin step", f"{r['torch_step_ms']:.1f} ms (torch {r['torch']})"),
                 ("torch_ratio", f"{r['torch_ratio']:.3f}  (our step / PyTorch step)")]
    else:
        rows.append(("PyTorch twin", "skipped (torch not installed)"))
    if "timeline_overhead" in r:
        rows += [("timeline snapshot", f"{r['timeline_record_ms']:.2f} ms on a {r['timeline_step_ms']:.2f} ms step "
                                       f"({r['timeline_task']}, {'reference shape' if r['timeline_task'] == 'qa' else 'preset'}); timeline_overhead_dense "
                                       f"{r['timeline_overhead_dense']:.3f} (every step recorded)"),
                 ("timeline_overhead", f"{r['timeline_overhead']:.4f}  ({r['timeline_snapshots']} snapshots over the "
                                       f"preset's {r['timeline_run_steps']} steps and {r['timeline_evals']} "
                                       f"evaluations of {r['timeline_eval_ms']:.1f} ms, a snapshot at one costing "
                                       f"{r['timeline_eval_record_ms']:.2f} ms)")]
    if "timeline_run_overhead" in r:
        rows.append(("timeline_run_overhead", f"{r['timeline_run_overhead']:.4f}  (whole {r['timeline_task']} preset "
                                              f"runs, {r['timeline_run_s']:.2f} CPU s without a timeline, A/B medians)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=(), threads=1):
    ap = argparse.ArgumentParser(prog="python -m bench core", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeats", type=int, default=15, help="interleaved training-step repeats")
    ap.add_argument("--gen-repeats", type=int, default=5, help="interleaved generation repeats")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin even if installed")
    ap.add_argument("--no-timeline", action="store_true", help="skip the timeline-recording cost")
    ap.add_argument("--timeline-task", choices=("qa", "dialogue", "reversal"), default="qa",
                    help="the task whose timeline is timed: qa at the reference shape (default), the others "
                         "at their preset")
    args = ap.parse_args(list(argv))
    r = measure(repeats=args.repeats, gen_repeats=args.gen_repeats, threads=threads, use_torch=not args.no_torch)
    if not args.no_timeline:
        r.update(measure_timeline(args.timeline_task, TIMELINE_OVERRIDES if args.timeline_task == "qa" else ()))
        if args.timeline_task == "reversal":
            r.update(measure_run_overhead("reversal"))
    print(json.dumps(r) if args.json else format_table(r))
    return r
