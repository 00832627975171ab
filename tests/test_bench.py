"""bench/core.py at a tiny size: the keys, the derived ratios, and (with torch) the twin's gradients."""

import importlib.util
import json

import numpy as np
import pytest

from bench import core as bench_core
from core.config import ModelConfig
from core.model import Transformer

TINY = ModelConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_measure_keys_and_ratio_definitions():
    r = bench_core.measure(TINY, batch=4, repeats=2, gen_repeats=1, warmup=1, use_torch=HAS_TORCH)
    for key in ("step_ms", "matmul_ms", "matmul_ratio", "tokens_per_s", "step_gflop", "step_gflop_per_s",
                "gen_cps_cache", "gen_cps_nocache", "kv_speedup", "full_step_us_cache", "full_step_us_nocache",
                "kv_speedup_full"):
        assert key in r and np.isfinite(r[key]) and r[key] > 0, key
    assert r["matmul_ratio"] == pytest.approx(r["step_ms"] / r["matmul_ms"])
    assert r["kv_speedup"] == pytest.approx(r["gen_cps_cache"] / r["gen_cps_nocache"])
    for n in (2, 4):
        assert r[f"gen_cps_mix{n}"] > 0 and r[f"mix{n}_cost"] == pytest.approx(r["gen_cps_cache"] / r[f"gen_cps_mix{n}"])
    assert r["kv_speedup_full"] == pytest.approx(r["full_step_us_nocache"] / r["full_step_us_cache"])
    assert r["taught4_step_ms"] > 0 and r["taught4_cost"] == pytest.approx(r["taught4_step_ms"] / r["step_ms"])
    assert r["tokens_per_s"] == pytest.approx(4 * 8 / (r["step_ms"] / 1e3))
    if HAS_TORCH:
        assert r["torch_ratio"] == pytest.approx(r["step_ms"] / r["torch_step_ms"])
    json.loads(json.dumps(r))  # plain data
    table = bench_core.format_table(r)
    assert "kv_speedup" in table and "kv_speedup_full" in table and "mix4_cost" in table and "taught4_cost" in table


def test_full_context_step_times_the_same_logits():
    m = Transformer(TINY, rng=np.random.default_rng(0))
    ids = list(range(8))  # block_size tokens: a full window
    kv = m.new_kv_cache()
    m.forward_step(np.asarray([ids[:-1]]), kv)
    np.testing.assert_allclose(m.decode_one(ids[-1], kv), m.forward(np.asarray([ids]))[0][0, -1], atol=1e-5)
    assert bench_core.full_context_step_s(m, ids, True, n=3) > 0
    assert bench_core.full_context_step_s(m, ids, False, n=3) > 0


def test_matmul_trace_counts_the_reference_flops():
    cfg = ModelConfig(vocab_size=60, block_size=16, n_layer=2, n_head=4, n_embd=32)
    m = Transformer(cfg, rng=np.random.default_rng(0))
    idx = np.zeros((2, 16), np.int64)
    trace = bench_core.record_matmuls(lambda: (m.forward(idx, idx), m.backward()))
    N, C, V, T, L = 32, 32, 60, 16, 2
    dense = 2 * N * C * (3 * C + C + 4 * C + 4 * C)  # per layer, forward
    attn = 2 * 2 * N * T * C  # q k^T and att v
    head = 2 * N * C * V
    expect = 3 * (L * (dense + attn) + head) + 2 * V * N * C  # backward = 2x forward, + embedding one-hot
    assert bench_core.matmul_flop(trace) == expect


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (never a dependency)")
@pytest.mark.parametrize("tie,smear,pos", [(True, False, "learned"), (False, False, "learned"),
                                           (True, True, "learned"), (True, False, "rope"), (False, True, "rope")])
def test_torch_twin_loss_and_gradients_match(tie, smear, pos):
    from bench.torch_twin import TorchTwin
    cfg = ModelConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, tie_weights=tie, smear=smear,
                      pos=pos)
    m = Transformer(cfg, rng=np.random.default_rng(0), dtype=np.float64)
    rng = np.random.default_rng(1)
    for p in m.params.values():
        p += rng.standard_normal(p.shape) * 0.1
    idx = rng.integers(0, 11, (3, 8))
    tgt = rng.integers(0, 11, (3, 8))
    tgt[0, :2] = -1
    _, loss = m.forward(idx, tgt)
    grads = m.backward()
    t_loss, t_grads = TorchTwin(m).loss_and_grads(idx, tgt)
    assert t_loss == pytest.approx(loss, abs=1e-4)
    for name, g in grads.items():
        np.testing.assert_allclose(g, t_grads[name], atol=1e-4, rtol=1e-4, err_msg=name)


def test_portability_picks_the_kernels_a_cpu_runs_and_reads_pytest_counts():
    from bench.portability import parse_pytest, supported_kernels
    assert supported_kernels({"pni", "avx", "avx2", "fma"}) == ["Prescott", "Sandybridge", "Haswell", "Zen"]
    assert supported_kernels({"pni"}) == ["Prescott"]
    out = ("....F.s\nFAILED tests/test_sample.py::test_x[30.0] - AssertionError: big\n"
           "========= 1 failed, 5 passed, 1 skipped in 2.31s =========\n")
    counts, failed = parse_pytest(out)
    assert counts == {"passed": 5, "failed": 1, "skipped": 1, "errors": 0}
    assert failed == ["tests/test_sample.py::test_x[30.0]"]


def test_measure_timeline_keys_and_ratio_definitions():
    tiny = ("model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=16", "train.batch_size=2")
    r = bench_core.measure_timeline(overrides=tiny, block=1, repeats=2, warmup=0, eval_repeats=1)
    for key in ("timeline_step_ms", "timeline_overhead_dense", "timeline_overhead"):
        assert np.isfinite(r[key]), key
    assert r["timeline_step_ms"] > 0
    assert r["timeline_snapshots"] == bench_core.recorded_steps(3000, 250)  # the qa preset's run
    assert r["timeline_evals"] == bench_core.evaluations(3000, 250) == 12
    run_ms = 3000 * r["timeline_step_ms"] + 12 * r["timeline_eval_ms"]
    assert r["timeline_overhead"] == pytest.approx(r["timeline_record_ms"] * r["timeline_snapshots"] / run_ms)
    assert r["timeline_record_ms"] == pytest.approx(r["timeline_step_ms"] * r["timeline_overhead_dense"])
    json.loads(json.dumps(r))
    assert "timeline_overhead" in bench_core.format_table({**bench_core.measure(TINY, batch=2, repeats=1, gen_repeats=1,
                                                                                 warmup=0, use_torch=False), **r})


def test_evaluations_counts_every_interval_and_the_last_step():
    assert bench_core.evaluations(400, 5) == 80
    assert bench_core.evaluations(10, 4) == 3  # steps 4, 8 and the last, 10
    assert bench_core.evaluations(3, 5) == 1


def test_recorded_steps_counts_step_zero_schedule_and_evaluations():
    assert bench_core.recorded_steps(10, 5) == 11  # steps 0..10, all in the dense phase
    from core.timeline import due
    n = bench_core.recorded_steps(1000, 300)
    union = 1 + len({s for s in range(1, 1001) if due(s)} | {300, 600, 900, 1000})
    assert union - 4 <= n < union  # each evaluation covers at most the scheduled step just after it


# -- bench/copy.py: steps until a model can copy
def test_copy_batch_targets_repeat_the_token_one_period_back():
    from bench.copy import SYMBOLS, copy_batch
    x, y = copy_batch(np.random.default_rng(0), 6, 64)
    assert x.shape == y.shape == (6, 64) and x.min() >= 0 and x.max() == SYMBOLS
    for b in range(6):
        n = int(np.argmax(x[b] == SYMBOLS))  # the first separator ends the first copy
        assert (y[b, :n] == -1).all() and (y[b, n:] >= 0).all()
        seq = np.append(x[b], y[b, -1])  # the row's tokens 0..T
        t = np.arange(n, 64)
        assert (y[b, t] == seq[t + 1 - (n + 1)]).all()  # predictable by copying, and only so


def test_copy_run_logs_the_curve_and_json_reports_each_seed(capsys):
    from bench.copy import SYMBOLS, main
    tiny = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
            "--set", "model.block_size=48", "--set", "train.batch_size=4"]
    assert main([*tiny, "--steps", "4", "--every", "2", "--seeds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in out["runs"]] == [0, 1]
    curve = out["runs"][0]["curve"]
    assert [p["step"] for p in curve] == [0, 2, 4]
    assert abs(curve[0]["repeat_loss"] - np.log(SYMBOLS + 1)) < 0.3  # an untrained model: near uniform
    assert out["runs"][0]["steps_to_copy"] is None  # 4 steps copy nothing


def test_copy_bench_names_a_bad_preset_or_key_without_a_traceback():
    from bench.copy import main
    for argv in (["--preset", "nosuch"], ["--set", "model.bogus=1"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--steps", "1"])
        assert str(e.value).startswith("bench copy: ") and ("nosuch" in str(e.value) or "model.bogus" in str(e.value))


def test_tasks_bench_names_a_bad_task_or_key_before_any_run_starts():
    from bench.tasks import main
    for argv, word in ((["--only", "nosuch"], "nosuch"), (["--only", "qa,chat", "--set", "model.bogus=1"], "model.bogus"),
                       (["--onyl", "qa"], "--onyl"), (["--only"], "--only needs a value"),
                       (["--only", "qa", "--set"], "--set needs a value"), (["--seeds=x"], "--seeds"),
                       (["--seeds", "0"], "--seeds"), (["--only", "nosuch", "--seeds", "2"], "nosuch"),
                       (["--only=qa", "--set=model.bogus=1"], "model.bogus"), (["--json=1"], "--json=1")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert str(e.value).startswith("bench tasks: ") and word in str(e.value)


def test_tasks_bench_runs_n_seeds_and_sums_up_the_time_to_target(capsys, monkeypatch):
    import json
    import bench.tasks as bt
    seen = []

    def fake_run(task, overrides, targets, *stop, progress=False):
        seed = int(next(o for o in overrides if o.startswith("train.seed=")).split("=")[1])
        seen.append((task, seed))
        hit = None if seed == 2 else (100.0 * seed, 250, 99.0)  # seed 2 never reaches the bar
        return {"task": task, "time_to_target": {"context_recall": hit}, "final": {}}
    monkeypatch.setattr(bt, "run", fake_run)
    assert bt.main(["--only", "dialogue", "--seeds", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert seen == [("dialogue", 1337), ("dialogue", 1), ("dialogue", 2)]  # the preset's seed, then 1, 2
    assert [r.get("seed") for r in lines[:3]] == [1337, 1, 2]
    total = lines[3]["context_recall"]
    assert total["reached"] == "2/3" and total["median_wall_s"] == (133700.0 + 100.0) / 2
    assert total["per_seed"][2] is None
    seen.clear()
    assert bt.main(["--only", "dialogue", "--set", "train.seed=7"]) == 0  # without --seeds: one run, no summary
    assert seen == [("dialogue", 7)] and len(capsys.readouterr().out.strip().splitlines()) == 1


def test_help_prints_the_suites_usage_and_runs_nothing(capsys):
    from bench.__main__ import main
    assert main(["tasks", "--help"]) == 0  # before, --help was ignored and every task started
    assert "--only" in capsys.readouterr().out


def test_one_layer_copies_with_smeared_keys_and_cannot_without():
    """The mechanism smeared keys are for: induction (find the earlier occurrence of the current
    character, read what followed it) needs a previous-token head and a matching head in a later
    layer; a smeared key holds the previous character, so one layer suffices."""
    from bench.copy import run
    from core.config import load_config
    final = {}
    for smear in (False, True):
        cfg = load_config("chat", overrides=[
            "model.vocab_size=28", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.block_size=48",
            f"model.smear={smear}", "train.batch_size=16", "train.lr=1e-2", "train.warmup_steps=10",
            "train.max_steps=300"])
        curve, _ = run(cfg, 300, seed=0, every=100)
        final[smear] = min(c["repeat_loss"] for c in curve[-2:])
    assert final[True] < 1.5 < 2.5 < final[False], final  # chance is ln 27 = 3.30 nats
