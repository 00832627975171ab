"""Hyperparameter sweeps on Optuna: `--param` specs, the trial objective, and local worker processes.

Imported only when the `sweep` extra (optuna) is installed. A study lives in Optuna's RDB storage (a
SQLite file under saves/ by default); every trial is an ordinary save named STUDY-trial-K.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import time
import warnings
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from core.checkpoint import SaveError, run_dir
from core.runs import existing_run, lock_run, saves_root
from core.config import ConfigError, load_config
from core.trainer import Trainer, TrainingDiverged, set_threads

PARAM = re.compile(r"^\s*([a-z_]+\.[a-z_0-9]+)\s*=\s*(log|float|int|cat)\s*\((.*)\)\s*$")
MAXIMIZE = ("accuracy", "answer_exact", "context_recall")  # higher is better; val_loss is minimised
METRICS = ("val_loss", *MAXIMIZE)
HEARTBEAT_S, GRACE_S = 20, 60  # a trial without a heartbeat for GRACE_S is failed by the next worker
optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per study and trial: the CLI prints its own
MAX_STUDY = 48  # STUDY-trial-NNNNN must fit the 64-character save name limit
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class SweepError(ValueError):
    """A sweep the user asked for cannot run: the message says what and how to fix it."""


@dataclass(frozen=True)
class Param:
    key: str    # section.key of the config
    kind: str   # log, float, int or cat
    args: tuple  # (low, high) or the choices (as written)

    def suggest(self, trial):
        if self.kind == "cat":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.args)
        return trial.suggest_float(self.key, *self.args, log=self.kind == "log")

    def override(self, value):
        return f"{self.key}={value}"


@dataclass(frozen=True)
class Spec:
    """Everything a worker needs to run trials (plain data: it crosses process boundaries)."""
    task: str
    study: str
    storage: str
    params: tuple = ()
    sets: tuple = ()          # fixed --set overrides every trial shares
    config: str | None = None  # a --config YAML file
    metric: str = ""
    prune: bool = False
    trials: int = 10
    workers: int = 1
    saves: str = ""           # the saves folder, absolute (workers may start elsewhere)


def task_metric(task):
    """The metric a task's evaluation reports besides val_loss."""
    from core.tasks.dialogue import DialogueTask
    from core.tasks.qa import QATask
    from core.tasks.reversal import ReversalTask
    return {"reversal": ReversalTask, "qa": QATask, "dialogue": DialogueTask}[task].metric


def parse_param(text, task, config=None, sets=()):
    """'train.lr=log(1e-4,1e-2)' -> Param, with both bounds (or every choice) checked as config values."""
    m = PARAM.match(text or "")
    if not m:
        raise SweepError(f"--param {text!r}: write KEY=log(LOW,HIGH), KEY=float(LOW,HIGH), KEY=int(LOW,HIGH) "
                         f"or KEY=cat(A,B,...), e.g. 'train.lr=log(1e-4,1e-2)'")
    key, kind, inner = m.groups()
    parts = [p.strip() for p in inner.split(",")]
    if not all(parts):
        raise SweepError(f"--param {text!r}: an empty value between the commas")
    if kind == "cat":
        args = tuple(parts)
    else:
        if len(parts) != 2:
            raise SweepError(f"--param {text!r}: {kind}() takes two bounds, LOW and HIGH")
        try:
            args = tuple(int(p) for p in parts) if kind == "int" else tuple(float(p) for p in parts)
        except ValueError:
            raise SweepError(f"--param {text!r}: the bounds must be {'integers' if kind == 'int' else 'numbers'}") from None
        if not args[0] < args[1] or (kind == "log" and args[0] <= 0):
            raise SweepError(f"--param {text!r}: need LOW < HIGH{' and LOW > 0 for log' if kind == 'log' else ''}")
    param = Param(key, kind, args)
    for value in args:  # each bound or choice must be a valid value of that key on its own
        try:
            load_config(task, config, [*sets, param.override(value)])
        except ConfigError as e:
            raise SweepError(f"--param {text!r}: {e}") from None
    return param


def check_study_name(name):
    try:
        run_dir(name)  # the save-name rules (letters, digits, . _ -)
    except SaveError as e:
        raise SweepError(f"study {str(e).removeprefix('run ')}") from None
    if len(name) > MAX_STUDY:
        raise SweepError(f"study name {name!r} is {len(name)} characters; use at most {MAX_STUDY} "
                         f"(trial saves are named STUDY-trial-K)")
    return name


def default_storage(saves=None):
    """The embedded default: one SQLite file under the saves folder, no server."""
    return f"sqlite:///{(saves_root(saves) / 'sweeps.db').resolve()}"


def open_storage(url):
    """Optuna's RDB storage with heartbeats, so a trial whose machine dies is failed, not left running."""
    kwargs = {}
    if url.startswith("sqlite:"):  # several local processes write: wait for the lock, do not fail
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for attempt in range(3):  # two processes creating the tables of a new database at once: one loses
        try:
            with warnings.catch_warnings():  # heartbeats are still marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **kwargs)
        except Exception as e:  # a bad URL, a missing driver, a server that does not answer
            if attempt < 2 and ("already exists" in str(e) or "UNIQUE constraint failed" in str(e)):
                time.sleep(0.5)
                continue
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SweepError(f"--storage {url!r}: cannot open it ({first}); use sqlite:///FILE or a "
                             f"postgresql:// / mysql:// URL whose driver is installed") from None


def open_study(spec, storage):
    """Create the study or check that an existing one sweeps the same task and metric."""
    direction = "maximize" if spec.metric in MAXIMIZE else "minimize"
    study = optuna.create_study(study_name=spec.study, storage=storage, direction=direction, load_if_exists=True)
    attrs = study.user_attrs
    if not attrs:
        study.set_user_attr("task", spec.task)
        study.set_user_attr("metric", spec.metric)
    elif (attrs.get("task"), attrs.get("metric")) != (spec.task, spec.metric):
        raise SweepError(f"study {spec.study!r} sweeps {attrs.get('task')} by {attrs.get('metric')}; pass that "
                         f"task and --metric {attrs.get('metric')}, or name a new study with --study")
    return study


def load_existing(name, storage_url):
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SweepError(f"no study named {name!r} in {storage_url}; studies there: "
                         f"{', '.join(names) or 'none'}") from None


# -- one trial, in a worker process

class _Pruned(Exception):
    pass


class Interrupted(Exception):
    """Ctrl+C stopped the trial: recorded as failed with this reason, its `last` save kept."""


_current = {"trainer": None, "stopping": False, "number": None}


def _on_sigint(*_):
    _current["stopping"] = True
    if _current["trainer"] is not None:
        _current["trainer"].stop()


def objective(spec, trial):
    """Train one trial; report every evaluation (for pruning); the value is the best of the metric."""
    save = f"{spec.study}-trial-{trial.number}"
    _current["number"] = trial.number
    for k, v in (("save", save), ("worker", f"{socket.gethostname()}:{os.getpid()}"), ("sets", list(spec.sets))):
        trial.set_user_attr(k, v)
    try:
        overrides = [*spec.sets, *(p.override(p.suggest(trial)) for p in spec.params)]
        tr = Trainer(load_config(spec.task, spec.config, overrides))
        if existing_run(save) is not None:
            raise SweepError(f"saves/{save} already holds a run (an earlier study of this name?), which a trial "
                             f"never overwrites; delete it or sweep under another --study")
        _current["trainer"] = tr
        if _current["stopping"]:
            tr.stop()
        with lock_run(save):  # like `attnlab train`: no other process writes this run meanwhile
            best = _train(spec, trial, tr, save)
    except (_Pruned, optuna.TrialPruned):
        raise optuna.TrialPruned()
    except Exception as e:
        trial.set_user_attr("fail_reason", _reason(e))
        raise
    finally:
        _current["trainer"] = None
    return best


def _train(spec, trial, tr, save):
    sign = 1 if spec.metric in MAXIMIZE else -1
    best = [None]

    def emit(ev):
        if ev["event"] != "eval":
            return
        if ev["best"]:
            tr.save(save, "best")
        value = ev.get(spec.metric)
        if value is None or not math.isfinite(value):
            raise SweepError(f"the evaluation at step {ev['step']} gave {spec.metric} = {value}")
        if best[0] is None or sign * value > sign * best[0]:
            best[0] = value
        trial.report(value, ev["step"])
        if spec.prune and trial.should_prune():
            raise _Pruned()

    try:
        done = tr.run(emit)
    except _Pruned:
        _finish(trial, tr, save, "pruned")
        raise
    except TrainingDiverged as e:
        if e.weights_ok:
            tr.save(save, "last")
        raise
    _finish(trial, tr, save, done["reason"])
    if done["reason"] == "stopped":
        raise Interrupted(f"interrupted at step {tr.step_count} (Ctrl+C); its `last` save is kept")
    if best[0] is None:
        raise SweepError("training ended before any evaluation")
    return best[0]


def _finish(trial, tr, save, reason):
    tr.save(save, "last")
    trial.set_user_attr("steps", tr.step_count)
    trial.set_user_attr("end", reason)


def _reason(exc):
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if isinstance(exc, (SweepError, Interrupted, ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def _claim(budget):
    """Take one trial from the shared budget; False when none is left."""
    with budget.get_lock():
        if budget.value <= 0:
            return False
        budget.value -= 1
        return True


def worker_main(spec, budget, results):
    """A worker process: one BLAS thread; claims trials until the budget or a Ctrl+C ends it."""
    signal.signal(signal.SIGINT, _on_sigint)
    set_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported as one line each, below
    os.environ["ATTNLAB_SAVES"] = spec.saves
    storage = open_storage(spec.storage)
    study = optuna.load_study(study_name=spec.study, storage=storage,
                              pruner=make_pruner(spec))
    while not _current["stopping"] and _claim(budget):
        _current["number"] = None
        study.optimize(lambda t: objective(spec, t), n_trials=1, catch=(Exception,), gc_after_trial=False)
        if _current["number"] is not None:
            results.put(trial_row(_trial(storage, spec.study, _current["number"])))


def _trial_id(storage, study_name, number):
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def _trial(storage, study_name, number):
    """A trial's current record, by study name and trial number."""
    return storage.get_trial(_trial_id(storage, study_name, number))


def make_pruner(spec):
    """The median rule: stop a trial whose evaluation is worse than the median of earlier trials at
    the same step, once two trials have finished (few trials: five would leave little to prune)."""
    if not spec.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def trial_row(t):
    """A finished trial as plain data (what --json prints)."""
    reason = t.user_attrs.get("fail_reason")
    if t.state == TrialState.FAIL and not reason:
        reason = "no heartbeat: its worker process or machine died"
    return {"event": "trial", "number": t.number, "state": t.state.name.lower(), "value": t.value,
            "params": dict(t.params), "save": t.user_attrs.get("save"), "steps": t.user_attrs.get("steps"),
            "reason": reason, "seconds": round(t.duration.total_seconds(), 2) if t.duration else None}


# -- the sweep, in the parent process

def fail_orphans(study, storage, pid, why):
    """Mark the running trials of a dead local worker as failed, with the reason; returns their rows."""
    me, rows = f"{socket.gethostname()}:{pid}", []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == me:
            trial_id = _trial_id(storage, study.study_name, t.number)
            storage.set_trial_user_attr(trial_id, "fail_reason", why)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
            rows.append(trial_row(_trial(storage, study.study_name, t.number)))
    return rows


def run_sweep(spec, on_row=lambda row: None):
    """Run spec.trials trials on spec.workers local processes; returns the summary dict.

    The first Ctrl+C stops new trials and interrupts running ones (saved, recorded as failed); a
    second one kills the workers (their trials are failed too). Finished trials are never touched.
    """
    storage = open_storage(spec.storage)
    study = open_study(spec, storage)
    ctx = mp.get_context("spawn")
    budget, results = ctx.Value("i", spec.trials), ctx.Queue()
    saved_env = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    prev = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers start immune until their handler is in
    procs = []
    try:
        for _ in range(spec.workers):
            p = ctx.Process(target=worker_main, args=(spec, budget, results))
            p.start()
            procs.append(p)
    finally:
        for k, v in saved_env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    interrupts = []

    def on_sigint(*_):
        interrupts.append(time.time())
        with budget.get_lock():
            budget.value = 0
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL if len(interrupts) > 1 else signal.SIGINT)

    signal.signal(signal.SIGINT, on_sigint)
    t0, rows, reaped = time.time(), [], set()
    try:
        while True:
            try:
                row = results.get(timeout=0.2)
                rows.append(row)
                on_row(row)
                continue
            except queue.Empty:
                pass
            for p in procs:
                if p.exitcode is not None and p.pid not in reaped:
                    reaped.add(p.pid)
                    if p.exitcode != 0:
                        how = f"killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exit status {p.exitcode}"
                        for row in fail_orphans(study, storage, p.pid, f"its worker process {p.pid} died ({how})"):
                            rows.append(row)
                            on_row(row)
            if len(reaped) == len(procs):
                break
        while True:  # rows the last workers sent just before they exited
            try:
                row = results.get(timeout=0.5)
            except queue.Empty:
                break
            rows.append(row)
            on_row(row)
    finally:
        signal.signal(signal.SIGINT, prev)
        for p in procs:
            p.join()
    return {"event": "done", "study": spec.study, "storage": spec.storage, "trials": len(rows),
            "wall_s": round(time.time() - t0, 2), "interrupted": bool(interrupts), **best_of(study)}


def best_of(study):
    try:
        t = study.best_trial
    except ValueError:  # no finished trial yet
        return {"best": None}
    return {"best": {"number": t.number, "value": t.value, "params": dict(t.params), "save": t.user_attrs.get("save")}}


def summary(study, top=5):
    """--show: state counts, the best trials, the failed ones with reasons, parameter importances."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value, reverse=maximize)
    counts = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    importances, why = None, None
    if len(done) < 2:
        why = "needs at least two finished trials"
    elif len({t.value for t in done}) == 1:
        why = "every finished trial scored the same, so no parameter made a difference"
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError) as e:
            why = str(e).splitlines()[0]
    return {"study": study.study_name, "task": study.user_attrs.get("task"), "metric": study.user_attrs.get("metric"),
            "direction": "maximize" if maximize else "minimize", "counts": counts,
            "best": [trial_row(t) for t in done[:top]],
            "failed": [trial_row(t) for t in trials if t.state == TrialState.FAIL],
            "importances": importances, "importances_note": why}
