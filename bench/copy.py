"""`python -m bench copy`: how many steps a model of a preset's shape needs before it can copy.

Every recall answer in the dialogue and chat tasks copies a value the model has never seen out of the
conversation, letter by letter: an induction circuit (find where the current text occurred before,
read what came next). This measures that skill alone. Each row is a random string of 8-40 symbols
(26 letters and space) and a separator, repeated to fill the window; the loss counts only the
repeats, which nothing but copying can predict (chance: ln 27 = 3.30 nats). Printed: the repeat loss
every --every steps and steps_to_copy, the first logged step below 1 nat, per seed.

Options: --preset NAME (default chat)  --set section.key=value (repeatable)  --steps N (default 400)
--seeds N (default 1)  --every N (default 25)  --json.
"""

import argparse
import json
import math
import sys
import time

import numpy as np

SYMBOLS = 27  # 26 letters and space; id 27 separates the repeats
COPIED = 1.0  # nats: well below chance, only reached by copying


def copy_batch(rng, batch, block, lo=8, hi=40):
    """x (B, T) and y (B, T): each row a random string of lo..hi symbols plus a separator, repeated;
    targets are -1 until the first repeat starts (nothing before it can be predicted)."""
    w = np.empty((batch, block + 1), np.int64)
    y = np.full((batch, block), -1, np.int64)
    for b in range(batch):
        n = int(rng.integers(lo, hi + 1))
        period = np.append(rng.integers(0, SYMBOLS, n), SYMBOLS)  # (n+1,)
        w[b] = np.tile(period, block // (n + 1) + 2)[:block + 1]
        y[b, n:] = w[b, n + 1:]  # target t+1 repeats position t+1-(n+1)
    return w[:, :-1], y


def run(cfg, steps, seed, every=25, progress=None):
    """Train a fresh model of cfg's shape on copy batches; return the logged curve and steps_to_copy."""
    from core.model import Transformer
    from core.optim import AdamW, clip_grad_norm, lr_at
    rng = np.random.default_rng(seed)
    model = Transformer(cfg.model, rng=rng)
    opt = AdamW(model, weight_decay=cfg.train.weight_decay)
    t = cfg.train
    curve, reached, c0 = [], None, time.process_time()
    for step in range(steps + 1):
        x, y = copy_batch(rng, t.batch_size, cfg.model.block_size)
        _, loss = model.forward(x, y, train=True, rng=rng)
        if step % every == 0 or step == steps:
            curve.append({"step": step, "repeat_loss": round(float(loss), 3),
                          "cpu_s": round(time.process_time() - c0, 1)})
            if progress:
                progress(curve[-1])
            if reached is None and loss < COPIED:
                reached = step
        if step == steps:
            break
        model.backward()
        clip_grad_norm(model.grad_flat, t.grad_clip)
        opt.step(lr_at(step, t.lr, t.min_lr, t.warmup_steps, t.max_steps))
    return curve, reached


def main(argv, threads=1):
    from core.config import ConfigError, load_config
    ap = argparse.ArgumentParser(prog="python -m bench copy")
    ap.add_argument("--preset", default="chat")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.preset, overrides=[*args.overrides, f"model.vocab_size={SYMBOLS + 1}"])
    except ConfigError as e:
        sys.exit(f"bench copy: {e}")
    m = cfg.model
    shape = f"{args.preset}: {m.n_layer} x {m.n_embd}, {m.n_head} heads, pos {m.pos}{', smeared keys' if m.smear else ''}, batch {cfg.train.batch_size} x {m.block_size}"
    show = None if args.json else (lambda p: print(f"  step {p['step']:>5}  repeat loss {p['repeat_loss']:.3f}  "
                                                  f"cpu {p['cpu_s']:.1f} s", flush=True))
    rows = []
    for seed in range(args.seeds):
        if not args.json:
            print(f"{shape}, seed {seed} (chance {math.log(SYMBOLS):.2f} nats)", flush=True)
        curve, reached = run(cfg, args.steps, seed, args.every, show)
        rows.append({"seed": seed, "steps_to_copy": reached, "curve": curve})
        if not args.json:
            print(f"steps_to_copy (repeat loss < {COPIED} nat): {reached if reached is not None else f'not within {args.steps}'}")
    if args.json:
        print(json.dumps({"shape": shape, "threads": threads, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
