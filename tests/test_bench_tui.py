"""bench/tui.py at a tiny size: the JSON keys, the latency figures and the throughput ratio's definition."""

import json
import math

import pytest

from bench import tui as bench_tui

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16", "train.batch_size=4"]


def test_measure_keys_and_ratio_definition():
    r = bench_tui.measure(steps=6, presses=3, rounds=2, overrides=TINY)
    for key in ("key_latency_p50_ms", "key_latency_p95_ms", "ui_tokens_per_s", "headless_tokens_per_s",
                "ui_throughput_ratio"):
        assert key in r and math.isfinite(r[key]) and r[key] > 0, key
    assert r["presses"] == 3 and r["compare_runs"] == 3  # measured with 3 runs overlaid on the plot
    assert r["key_latency_p50_ms"] <= r["key_latency_p95_ms"] <= r["key_latency_max_ms"]
    assert len(r["ui_runs_tokens_per_s"]) == len(r["headless_runs_tokens_per_s"]) == 2
    assert r["ui_throughput_ratio"] == pytest.approx(r["ui_tokens_per_s"] / r["headless_tokens_per_s"], rel=1e-3)
    json.loads(json.dumps(r))  # plain data
    assert "UI / headless" in bench_tui.format_table(r)


def test_timed_trainer_stops_itself_and_counts_tokens():
    from core.trainer import Trainer
    tr = bench_tui.timed(Trainer)(bench_tui.qa_config(TINY), stop_at=4)
    done = tr.run(lambda ev: None)
    assert done["steps"] == 4 and done["reason"] == "stopped" and len(tr.stamps) == 4
    assert tr.step_tokens == 4 * 16
    expect = 3 * 64 / (tr.stamps[-1] - tr.stamps[0])  # warm-up step excluded
    assert bench_tui.tokens_per_s(tr) == pytest.approx(expect)


def test_percentile():
    assert bench_tui.percentile([3, 1, 2, 4, 5], 50) == 3
    assert bench_tui.percentile(list(range(101)), 95) == pytest.approx(95)
    assert math.isnan(bench_tui.percentile([], 50))
