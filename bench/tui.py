"""`python -m bench tui [--json] [--steps N] [--presses N]`: the dashboard's cost while it trains.

Measures keypress-to-frame latency (toggling the loss plot's log scale during Q&A training, headless
App.run_test) and training throughput with the UI showing vs the bare Trainer, in interleaved runs.
With --compare N (default 3) the Train tab shows a compare overlay of N runs while it trains: the run
in training (tailed live from its metrics.jsonl) and N-1 finished runs of 2,000 steps each.
"""

import asyncio
import json
import os
import random
import statistics
import tempfile
import time

SIZE = (120, 40)  # the terminal the app is measured in


def qa_config(overrides=()):
    """The Q&A preset (max_steps raised so no run reaches its end-of-run evaluation)."""
    from core.config import load_config
    return load_config("qa", overrides=["train.max_steps=100000", *overrides])


def timed(base):
    """A trainer class that stamps the end of every step and stops itself after `stop_at` steps."""

    class Timed(base):
        def __init__(self, cfg, stop_at=None):
            super().__init__(cfg)
            self.stamps, self.stop_at, self.step_tokens = [], stop_at, 0

        def step(self):
            ev = super().step()
            self.stamps.append(time.perf_counter())
            self.step_tokens = ev["tokens"]
            if self.stop_at and self.step_count >= self.stop_at:
                self.stop()
            return ev
    return Timed


def tokens_per_s(tr):
    """Tokens/s from the end of the first step (warm-up excluded) to the end of the last."""
    if len(tr.stamps) < 2:
        return float("nan")
    return (len(tr.stamps) - 1) * tr.step_tokens / (tr.stamps[-1] - tr.stamps[0])


def headless_run(cfg, steps):
    """Trainer.run with a no-op emit, as the headless CLI trains; returns tokens/s."""
    from core.trainer import Trainer
    tr = timed(Trainer)(cfg, stop_at=steps)
    tr.run(lambda ev: None)
    return tokens_per_s(tr)


async def _send_key(app, key):
    """Deliver a key as Pilot.press does, minus its wait for an idle CPU (up to 1 s while training)."""
    from textual import events
    event = events.Key(key, key)
    event.set_sender(app)
    app._driver.send_message(event)


def write_finished_runs(n, steps=2000):
    """n-1 finished runs' metrics.jsonl files (seeded noise around a falling curve) to compare with."""
    import json
    import math
    from core.metrics_log import log_path
    rng = random.Random(7)
    names = []
    for k in range(n):
        name = f"bench-done-{k}"
        path = log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [{"event": "start", "step": 0, "time": 0.0, "task": "qa", "metric": "answer_exact",
                  "config": {"train": {"lr": 0.001 * (k + 1)}}}]
        lines += [{"event": "step", "step": s, "loss": 3 * math.exp(-s / (400 + 200 * k)) + 0.5 + rng.random() * 0.1,
                   "elapsed_s": s * 0.15, "time": s * 0.15} for s in range(1, steps + 1)]
        lines += [{"event": "eval", "step": s, "val_loss": 3 * math.exp(-s / (400 + 200 * k)) + 0.6,
                   "answer_exact": s / steps / 2, "metric": "answer_exact", "time": s * 0.15}
                  for s in range(250, steps + 1, 250)]
        path.write_text("".join(json.dumps(e) + "\n" for e in lines))
        names.append(name)
    return names


async def ui_run(cfg, steps=None, presses=0, seed=0, timeout=120.0, compare=0):
    """Train in the app on the Train tab; returns (tokens/s, [key latency ms]).

    With `steps` the run stops after that many steps; with `presses` it presses `l` (log scale) that
    many times at random moments and times each press until the plot has painted the new scale.
    """
    from tui.app import AttnLab
    from tui.worker import GuardedTrainer
    from tui.widgets import LossPlot
    app = AttnLab()
    latencies = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # let the first layout finish, as it has before a user can press s
        tr = timed(GuardedTrainer)(cfg, stop_at=steps)
        live = "bench-live" if compare else None  # a run name: its metrics.jsonl is written and tailed
        app.set_trainer(tr, live)  # no evaluation within the run, so nothing is saved
        app.setup_dirty = False
        app.launch()
        plot = app.query_one(LossPlot)
        if compare:
            from tui.screens.train import TrainPane
            app.query_one(TrainPane).compare([live] + write_finished_runs(compare - 1))
        painted = asyncio.Event()
        render = plot.render

        def render_and_mark():
            out = render()
            if ("(log)" in plot._title) == plot.log_y:  # the frame shows the whole new state
                painted.set()
            return out
        plot.render = render_and_mark
        end = time.monotonic() + timeout
        # plain sleeps below: pilot.pause() forces a screen update, which would add work a user never causes
        while not tr.stamps and time.monotonic() < end:
            await asyncio.sleep(0.05)
        if app.focused is not plot:
            plot.focus()
            await pilot.pause(0.05)
        rng = random.Random(seed)
        for _ in range(presses):
            await asyncio.sleep(rng.uniform(0.05, 0.25))  # land at random phases of the training step
            want = not plot.log_y
            painted.clear()
            t0 = time.perf_counter()
            await _send_key(app, "l")
            while not (plot.log_y == want and painted.is_set()):
                painted.clear()
                await asyncio.wait_for(painted.wait(), timeout=5.0)
            latencies.append((time.perf_counter() - t0) * 1000)
        if presses:
            tr.stop()
        while app.training and time.monotonic() < end:
            await asyncio.sleep(0.1)
        tr.stop()
        await app.workers.wait_for_complete()
        await pilot.pause()  # the worker's last events reach the widgets before the app closes
    return tokens_per_s(tr), latencies


def percentile(xs, q):
    """The q-th percentile (0-100) by linear interpolation."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def measure(steps=30, presses=40, rounds=2, overrides=(), compare=3):
    """Throughput in interleaved headless/UI runs (H U U H ...), then a run that times key presses."""
    cfg = qa_config(overrides)
    headless, ui = [], []
    for r in range(rounds):
        order = ("headless", "ui") if r % 2 == 0 else ("ui", "headless")
        for kind in order:
            if kind == "headless":
                headless.append(headless_run(cfg, steps))
            else:
                ui.append(asyncio.run(ui_run(cfg, steps=steps, compare=compare))[0])
    _, lat = asyncio.run(ui_run(cfg, presses=presses, compare=compare))
    h, u = statistics.median(headless), statistics.median(ui)
    return {"preset": "qa", "overrides": list(overrides), "steps": steps, "rounds": rounds, "presses": len(lat),
            "compare_runs": compare,
            "key_latency_p50_ms": round(percentile(lat, 50), 2), "key_latency_p95_ms": round(percentile(lat, 95), 2),
            "key_latency_max_ms": round(max(lat), 2) if lat else float("nan"),
            "ui_tokens_per_s": round(u, 1), "headless_tokens_per_s": round(h, 1),
            "ui_throughput_ratio": round(u / h, 4),
            "ui_runs_tokens_per_s": [round(x, 1) for x in ui],
            "headless_runs_tokens_per_s": [round(x, 1) for x in headless]}


def format_table(r):
    rows = [("key latency p50 (ms)", r["key_latency_p50_ms"], "log-scale toggle to painted frame"),
            ("key latency p95 (ms)", r["key_latency_p95_ms"], "target < 100"),
            ("UI tokens/s", r["ui_tokens_per_s"], f"median of {r['rounds']} runs of {r['steps']} steps"),
            ("headless tokens/s", r["headless_tokens_per_s"], "Trainer.run, no-op emit"),
            ("UI / headless", r["ui_throughput_ratio"], "target >= 0.9"),
            ("compared runs shown", r["compare_runs"], "overlay on the Train tab (0: the live plot only)")]
    return "\n".join(f"{name:<22}{value:>12}  {note}" for name, value, note in rows)


def _opt(argv, name, default):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith(name + "="):
            return int(a.split("=", 1)[1])
    return default


def main(argv, threads=1):
    steps, presses, rounds = _opt(argv, "--steps", 30), _opt(argv, "--presses", 40), _opt(argv, "--rounds", 2)
    compare = _opt(argv, "--compare", 3)
    with tempfile.TemporaryDirectory() as saves:  # the compared runs' files; never the user's saves/
        os.environ["ATTNLAB_SAVES"] = saves
        r = measure(steps, presses, rounds, compare=compare)
    r["threads"] = threads
    print(json.dumps(r) if "--json" in argv else format_table(r), flush=True)
    return 0
