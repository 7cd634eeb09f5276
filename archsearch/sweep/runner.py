"""The worker loop: take the next trial of a sweep's study, train it, tell the outcome.

A worker loop asks the study for the next trial, trains it from scratch (resumable, in
its own run directory) under a heartbeat, and tells the outcome:
- COMPLETE with best/final accuracy, params, MACs, time and the architecture as attributes;
- FAIL with `fail_reason` for a diverged run (NaN) or a budget that cannot be met: the
  sweep goes on and does not retry it (the same seed would fail the same way);
- FAIL, kept retryable, for a failure outside the trial (disk full, out of memory, a lost
  device): the worker stops at once (one line, exit 2) and the next `sweep run` requeues
  it; a bug fails its trial and stops the worker loudly (`classify_failure`);
- a worker killed mid-trial stops beating: the next worker that looks fails the trial and
  requeues it (`RetryHeartbeatStaleTrialCallback`), and the retry resumes from the run's
  last checkpoint;
- Ctrl-C fails the running trial as "interrupted" and requeues it at once.

The plan and the study it works on come from `plan.py`; `launch.py` starts N workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..compare import budget_tag, stage_summary
from ..counting import count
from ..data import load_dataset, subset_train
from ..errors import ArchsearchError, EnvironmentFailure, clip
from ..names import parse_target
from ..progress import EpochProgress, fmt_seconds
from ..spec import ArchSpec
from ..train import load_result, make_schedule, train
from .plan import Log, _stderr, _target, arch_for, grid_point, search_arch
from .storage import DUPLICATE_ATTR, HEARTBEAT_ATTR, WORKER_LOST, beating, fail_stale, frozen, trial_system_attrs
from .table import blocked, enqueue_ready, run_trial
from .table import total as table_total
from .table import trial_label as table_label

REQUEUE_HISTORY = "requeue_history"  # system attr: the attempts a stop or a machine's failure requeued
RETRY_ATTR = "retryable"  # user attr of a failed trial: why it may be retried (ENVIRONMENT or BUG)
TRIAL_FAULT, ENVIRONMENT, BUG = "trial", "environment", "bug"
MACHINE_SIGNS = ("CUDA error", "out of memory", "device-side", "No space left")  # in a message: the machine failed


# -- progress accounting ----------------------------------------------------------------------------
def _identity(t: FrozenTrial, mode: str):
    if mode == "grid":
        return t.system_attrs.get("grid_id")
    if mode == "table":
        return t.user_attrs.get("point")  # None: a trial asked for when nothing was queued (ignored)
    return t.system_attrs.get("failed_trial", t.number)


@dataclass
class Status:
    total: int
    done: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    remaining: int = 0
    blocked: int = 0  # table mode: arms whose row's proposal failed (they cannot run)
    mean_seconds: float | None = None
    failures: list[tuple[int, str]] = field(default_factory=list)
    failed_trials: list[FrozenTrial] = field(default_factory=list)  # the last attempt of each failed point
    running_trials: list[tuple[int, str]] = field(default_factory=list)  # (number, label)

    @property
    def retryable(self) -> int:
        """Failed for a reason outside the trial: the next `sweep run` retries them."""
        return sum(t.user_attrs.get(RETRY_ATTR) == ENVIRONMENT for t in self.failed_trials)

    @property
    def finished(self) -> bool:
        return self.remaining <= self.blocked and self.running == 0 and self.waiting == 0

    def eta_seconds(self, workers: int | None = None) -> float | None:
        if self.mean_seconds is None:
            return None
        w = max(1, workers or self.running or 1)
        return self.mean_seconds * (self.remaining + self.waiting + self.running * 0.5) / w

    def line(self, workers: int | None = None) -> str:
        eta = self.eta_seconds(workers)
        return (f"{self.done + self.pruned}/{self.total} done"
                + (f" ({self.pruned} pruned)" if self.pruned else "")
                + f", {self.running} running, {self.failed} failed"
                + (f" ({self.retryable} to retry on the next run)" if self.retryable else "")
                + f", {self.remaining + self.waiting - self.blocked} to go"
                + (f", {self.blocked} blocked by a failed proposal" if self.blocked else "")
                + (f", about {fmt_seconds(eta)} left" if eta is not None and not self.finished else ""))


def status(study: optuna.Study, plan: dict) -> Status:
    mode = plan["spec"]["mode"]
    trials = study.get_trials(deepcopy=False)
    if mode == "table":
        total = table_total(plan)
    else:
        total = (len(plan["kinds"]) * len(plan["spec"]["generators"]) * len(plan["budgets"]) * plan["spec"]["seeds"]
                 if mode == "grid" else int(plan["spec"]["search"]["trials"]))
    by_id: dict = {}
    for t in trials:
        ident = _identity(t, mode)
        if (ident is None and mode == "table") or DUPLICATE_ATTR in t.user_attrs:
            continue
        by_id.setdefault(ident, []).append(t)
    st = Status(total=total)
    durations = []
    for ident, ts in by_id.items():
        states = {t.state for t in ts}
        if TrialState.COMPLETE in states:
            st.done += 1
        elif TrialState.PRUNED in states:
            st.pruned += 1
        elif TrialState.RUNNING in states:
            st.running += 1
            t = next(t for t in ts if t.state == TrialState.RUNNING)
            st.running_trials.append((t.number, trial_label(t.params, mode)))
        elif TrialState.WAITING in states:
            st.waiting += 1
        else:
            st.failed += 1
            last = max(ts, key=lambda t: t.number)
            st.failed_trials.append(last)
            # every failure this code tells carries its reason; one without was failed by the
            # heartbeat check (`fail_stale_trials`) after its worker died, and is out of retries
            st.failures.append((last.number, last.user_attrs.get(
                "fail_reason", f"{WORKER_LOST}; retries used up")))
        for t in ts:
            if t.state == TrialState.COMPLETE and t.datetime_complete and t.datetime_start:
                durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    st.remaining = max(0, total - len([i for i in by_id if i is not None]))
    if mode == "table":
        failed = {t.user_attrs.get("point") for t in st.failed_trials}
        st.blocked = blocked(plan, failed, set(by_id))
    st.mean_seconds = sum(durations) / len(durations) if durations else None
    return st


def trial_label(params: dict, mode: str) -> str:
    if mode == "table" and params:
        return table_label(params)
    if mode == "grid" and params:
        return (f"{params.get('generator')} {params.get('kind')} {budget_tag(float(params.get('budget', 0)))} "
                f"seed {params.get('seed')}")
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# -- failures --------------------------------------------------------------------------------------
def classify_failure(e: BaseException) -> tuple[str, str]:
    """(cause, one-line reason) of a failed trial.

    - the trial's own fault (a diverged run, a budget it cannot meet): the same seed fails
      the same way, so it is failed for good and the sweep goes on;
    - the machine's (a full or read-only disk, no memory, a lost device): not the trial's
      doing; the sweep stops at once instead of burning through the grid, and the next
      run of the same command retries the trial;
    - anything else is a bug in archsearch: recorded, the worker stops with a traceback and
      a non-zero exit; `sweep run --retry-failed` retries it once fixed.
    """
    first = clip(e, 300)
    if isinstance(e, EnvironmentFailure):
        return ENVIRONMENT, f"{type(e).__name__}: {first}"
    if isinstance(e, ArchsearchError):
        return TRIAL_FAULT, f"{type(e).__name__}: {first}"
    if isinstance(e, (OSError, MemoryError, torch.OutOfMemoryError)) or (
            isinstance(e, RuntimeError) and any(k in str(e) for k in MACHINE_SIGNS)):
        return ENVIRONMENT, f"{type(e).__name__}: {first or getattr(e, 'strerror', '')}"
    return BUG, f"bug: {type(e).__name__}: {first}"


def requeue_failed(study: optuna.Study, plan: dict, *, everything: bool = False) -> list[int]:
    """Put failed points back in the queue: those that failed for a reason outside the trial
    (always), or every failed one (`everything`, i.e. `--retry-failed`), with the same params
    (a search trial too: it resumes in its run directory). Returns the numbers of the trials
    requeued. Pruned trials stay as they are."""
    out = []
    for t in status(study, plan).failed_trials:
        if everything or t.user_attrs.get(RETRY_ATTR) == ENVIRONMENT:
            _requeue(study, t, f"retry: {t.user_attrs.get('fail_reason', 'failed')}")
            out.append(t.number)
    return out


# -- one worker -------------------------------------------------------------------------------------
@dataclass
class WorkerContext:
    workdir: Path
    device: str = "auto"
    data_dir: str | None = None
    log: Log = _stderr
    epoch_progress: bool = True
    poll: float = 2.0
    artifacts: str | None = None  # table mode: the artifact store, where this machine reaches it
    _data: dict = field(default_factory=dict)

    def data(self, plan: dict, name: str | None = None):
        """The sweep's dataset (the target's; a table names one per row), loaded once."""
        name = name or parse_target(plan["spec"]["target"]).data
        if name not in self._data:
            ds = load_dataset(name, self.data_dir or plan.get("data_dir"),
                              download=bool(plan["spec"]["train"]["download"]))
            self._data[name] = subset_train(ds, plan["spec"]["train"].get("train_subset"))
        return self._data[name]

    def all_data(self, plan: dict) -> None:
        """Load every dataset the sweep needs (a missing one stops the worker before any trial)."""
        for name in sorted({r["data"] for r in plan["rows"]}) if plan["spec"]["mode"] == "table" else [None]:
            self.data(plan, name)


class _Interrupted(Exception):
    pass


def _next_action(study: optuna.Study, plan: dict) -> str:
    if plan["spec"]["mode"] == "table":
        enqueue_ready(study, plan)
    st = status(study, plan)
    if st.waiting or (st.remaining and plan["spec"]["mode"] != "table"):
        return "ask"
    if st.running:
        return "wait"
    return "done"


def _is_duplicate(study: optuna.Study, trial: optuna.Trial, mode: str) -> int | None:
    if mode == "table":
        key, gid = "point", trial.user_attrs.get("point")
        ident = lambda t: t.user_attrs.get(key)  # noqa: E731
    else:
        gid = trial_system_attrs(study, trial).get("grid_id")
        ident = lambda t: t.system_attrs.get("grid_id")  # noqa: E731
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
        if t.number != trial.number and ident(t) == gid and (
                t.state == TrialState.COMPLETE or t.number < trial.number):
            return t.number
    return None


def _requeue(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    sa = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_ATTR}
    sa.setdefault("failed_trial", trial.number)
    # not Optuna's retry_history: that one counts lost workers against max_retry, and a stop
    # (Ctrl-C, a machine's failure) is no lost worker
    sa[REQUEUE_HISTORY] = list(sa.get(REQUEUE_HISTORY, [])) + [trial.number]
    sa["requeued_because"] = reason
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions,
                                        user_attrs={k: v for k, v in trial.user_attrs.items()
                                                    if k not in ("fail_reason", RETRY_ATTR)},
                                        system_attrs=sa))


def _train_trial(study: optuna.Study, trial: optuna.Trial, plan: dict, ctx: WorkerContext, label: str) -> float:
    s, tr = plan["spec"], plan["spec"]["train"]
    mode = s["mode"]
    if mode == "table":
        return run_trial(study, trial, plan, ctx, label)
    if mode == "grid":
        kind, gen, budget, seed = grid_point(trial, plan)
        arch = arch_for(plan, kind, gen, float(budget), int(seed))
        run = ctx.workdir / "trials" / kind / f"{gen}-{budget_tag(float(budget))}-s{seed}"
    else:
        se = s["search"]
        lo, hi = float(se["low"]), float(se["high"])
        ratios = [trial.suggest_float(f"stage{k}", lo, hi) for k in range(len(plan["search_start"]))]
        kind, gen, budget, seed = "channels", "search", plan["budgets"][0], int(se["seed"])
        arch = search_arch(plan, ratios)
        # a retry resumes in its first attempt's directory: the point's identity, as status counts it
        run = ctx.workdir / "trials" / "search" / f"trial{_identity(frozen(study, trial), mode):04d}"
    c = count(arch)
    trial.set_user_attr("generator", gen)
    trial.set_user_attr("kind", kind)
    trial.set_user_attr("budget", float(budget))
    trial.set_user_attr("seed", int(seed))
    trial.set_user_attr("params", c.params_nonzero)
    trial.set_user_attr("macs", c.macs_nonzero)
    trial.set_user_attr("widths", list(arch.widths))
    trial.set_user_attr("stages", stage_summary(arch))
    trial.set_user_attr("run_dir", str(run))
    sched = make_schedule(tr["preset"], s["schedule"], epochs=tr["epochs"], spec=arch,
                          base=_target(plan), cap=tr.get("cap"), count_convention=tr.get("count"))
    trial.set_user_attr("epochs", sched.epochs)
    bar = EpochProgress(f"{label} {trial_label(trial.params, mode)}") if ctx.epoch_progress else None
    is_reference = "reference" in trial.user_attrs

    def hook(st) -> None:
        if bar is not None:
            bar(st)
        if mode == "search":
            trial.report(100 * st.test_acc, st.epoch - 1)
            # the pattern and uniform reference trials always run to the end: they are the comparison
            if not is_reference and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {st.epoch} ({100 * st.test_acc:.2f}%)")

    if int(tr.get("nproc", 1)) > 1:  # one network over several processes: the train command under torchrun
        r = train_processes(plan, arch, kind=s["schedule"], seed=int(seed), run=run, ctx=ctx)
        if mode == "search":  # reported after the fact: a multi-process trial is not pruned early
            for h in r.history:
                trial.report(100 * h["test_acc"], h["epoch"] - 1)
    else:
        data = ctx.data(plan)
        r = train(arch, data, sched, seed=int(seed), device=ctx.device, out_dir=run,
                  checkpoint_every=int(tr["checkpoint_every"]), progress=hook)
    for k, v in (("best_acc", 100 * r.best_acc), ("final_acc", 100 * r.final_acc), ("best_epoch", r.best_epoch),
                 ("train_seconds", r.train_seconds), ("device", r.device_name), ("torch_version", r.torch_version),
                 ("archsearch_version", r.archsearch_version)):
        trial.set_user_attr(k, v)
    return 100 * r.best_acc


def train_processes(plan: dict, arch: ArchSpec, *, kind: str, seed: int, run: Path, ctx: WorkerContext):
    """Train one trial's network over `train.nproc` processes: `archsearch train --spec ...
    --nproc N` in a subprocess (torchrun, DistributedDataParallel). A worker on `cuda:K` gives it
    the N GPUs from its K-th visible one on (CUDA_VISIBLE_DEVICES); any other worker, the GPUs
    it sees. Its result is read back; its first error line becomes the trial's."""
    tr = plan["spec"]["train"]
    device, env = ctx.device, None
    if device.startswith("cuda:"):
        device, env = "cuda", {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu_group(ctx.device, int(tr["nproc"])))}
    run.mkdir(parents=True, exist_ok=True)
    arch.save(run / "trial-spec.json")
    cmd = [sys.executable, "-m", "archsearch", "train", plan["spec"]["target"], "--spec", str(run / "trial-spec.json"),
           "--schedule", kind, "--preset", tr["preset"], "--seed", str(seed), "--out", str(run),
           "--checkpoint-every", str(tr["checkpoint_every"]), "--nproc", str(tr["nproc"]), "--device", device]
    if kind == "scratch-b":
        _target(plan).save(run / "trial-base.json")
        cmd += ["--base", str(run / "trial-base.json")]
    for opt, key in (("--epochs", "epochs"), ("--cap", "cap"), ("--count", "count"), ("--train-subset", "train_subset")):
        if tr.get(key) is not None:
            cmd += [opt, str(tr[key])]
    data_dir = ctx.data_dir or plan.get("data_dir")
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    if not tr["download"]:
        cmd.append("--no-download")
    proc = run_as_group(cmd, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        why = lines[0][len("error:"):].strip() if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"the {tr['nproc']}-process training of {run} failed: {clip(why, 300)}"
        # killed (a signal: the OOM killer, a lost peer's teardown), or a failure of the machine
        # that the child told in its error line: not the trial's fault, so it is retried
        if proc.returncode < 0 or proc.returncode >= 128 or any(k in why for k in MACHINE_SIGNS):
            raise EnvironmentFailure(msg)
        raise ArchsearchError(msg)
    return load_result(run / "result.json")


def gpu_group(device: str, n: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries of the `n` GPUs from `cuda:K` on, counted among the GPUs
    this process sees (its own CUDA_VISIBLE_DEVICES, or all of them)."""
    k = int(device.split(":", 1)[1])
    seen = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    seen = seen or [str(i) for i in range(torch.cuda.device_count())]
    if k + n > len(seen):
        raise ArchsearchError(f"a {n}-process trial on {device} needs GPUs {k}..{k + n - 1}, and this worker sees "
                              f"{len(seen)}; give the workers devices {n} apart (--devices 0,{n},...)")
    return seen[k:k + n]


def run_as_group(cmd: list[str], grace: float = 30.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` (stderr captured) in its own process group. If this process is stopped meanwhile
    (Ctrl-C, SIGTERM), the whole group is stopped: SIGTERM, then SIGKILL after `grace` seconds,
    so that no training process it started (a rank) runs on holding its run folder."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        _, err = proc.communicate()
    except BaseException:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, None, err)


def work(study: optuna.Study, plan: dict, ctx: WorkerContext, *, max_trials: int | None = None,
         wait: bool = True) -> int:
    """Run trials until the sweep is finished (or `max_trials`). Returns trials this worker ran.

    Ctrl-C: the running trial is failed as interrupted and requeued, then `_Interrupted`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return _work(study, plan, ctx, max_trials, wait)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back while the block writes a trial's state to the storage (an
    ask, a tell and its requeue), so that a stop lands before or after the write, never inside
    it: a trial is never left RUNNING by a worker that was asked to stop. A signal that came
    meanwhile goes to the handler that was in place (KeyboardInterrupt, as a rule) when the block
    ends. Python runs signal handlers in the main thread only; elsewhere this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            h = old[got[0]]
            if callable(h):
                h(got[0], None)
            elif h == signal.SIG_DFL:
                os.kill(os.getpid(), got[0])


def _fail_interrupted(study: optuna.Study, trial: optuna.Trial, plan: dict, reason: str) -> None:
    """Fail a trial a stop interrupted and requeue its point, as one write (`_signals_deferred`).
    A grid trial stopped before all its params were drawn gets them first, so that reports
    can name its point."""
    with _signals_deferred():
        if plan["spec"]["mode"] == "grid":
            grid_point(trial, plan)
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        _requeue(study, frozen(study, trial), "interrupted")


def _work(study: optuna.Study, plan: dict, ctx: WorkerContext, max_trials: int | None, wait: bool) -> int:
    mode = plan["spec"]["mode"]
    ran = 0
    if _next_action(study, plan) != "done":
        # before taking any trial: missing data is the worker's error (one line, exit 2),
        # not every trial's, which would fail the whole grid for good
        ctx.all_data(plan)
    while max_trials is None or ran < max_trials:
        fail_stale(study)
        action = _next_action(study, plan)
        if action == "done":
            break
        if action == "wait":
            if not wait:
                break
            time.sleep(ctx.poll)
            continue
        trial = None
        try:  # a stop between the ask and the training must not leave the trial RUNNING
            with _signals_deferred():  # a stop inside the ask: raised once the trial is known
                trial = study.ask()
            if mode == "table" and "point" not in trial.user_attrs:
                # the queue emptied between the look and the ask (another worker took it): not a point
                study.tell(trial, state=TrialState.FAIL)
                continue
            if mode in ("grid", "table"):
                dup = _is_duplicate(study, trial, mode)
                if dup is not None:
                    trial.set_user_attr(DUPLICATE_ATTR, dup)  # not an attempt: status and reports skip it
                    trial.set_user_attr("fail_reason", f"duplicate of trial {dup} (two workers asked at once)")
                    study.tell(trial, state=TrialState.FAIL)
                    continue
            st = status(study, plan)
            label = f"[{st.done + st.pruned + st.failed + 1}/{st.total}] #{trial.number}"
        except KeyboardInterrupt:
            if trial is None:
                raise _Interrupted("interrupted") from None
            _fail_interrupted(study, trial, plan, "interrupted (Ctrl-C) before it started; requeued")
            raise _Interrupted(f"trial #{trial.number} interrupted before it started, and requeued") from None
        state, value, reason = TrialState.COMPLETE, None, None
        stop: BaseException | None = None
        with beating(study, trial):
            try:
                value = _train_trial(study, trial, plan, ctx, label)
            except optuna.TrialPruned as e:
                state, reason = TrialState.PRUNED, str(e)
            except KeyboardInterrupt:
                state, reason = TrialState.FAIL, "interrupted (Ctrl-C); requeued"
            except Exception as e:  # noqa: BLE001  sorted into the trial's fault, the machine's, or a bug
                state, (cause, reason) = TrialState.FAIL, classify_failure(e)
                if cause != TRIAL_FAULT:
                    # the machine's fault or a bug: every later trial would fail the same way, so
                    # stop here; the trial stays retryable (a rerun, or `sweep run --retry-failed`)
                    trial.set_user_attr(RETRY_ATTR, cause)
                    stop = e
                    if cause == BUG:
                        ctx.log(traceback.format_exc())
        if reason and reason.startswith("interrupted"):
            _fail_interrupted(study, trial, plan, reason)
            raise _Interrupted(f"trial #{trial.number} interrupted and requeued")
        with _signals_deferred():  # the outcome is written whole (a stop comes after)
            if reason is not None:
                trial.set_user_attr("fail_reason", reason)
            if state == TrialState.PRUNED:
                study.tell(trial, state=TrialState.PRUNED)  # Optuna records the last reported accuracy
            else:
                study.tell(trial, value, state=state)
        ran += 1
        done = frozen(study, trial)
        if stop is not None:
            ctx.log(f"{label} {trial_label(done.params, mode)} -> failed: {reason}")
            if cause == ENVIRONMENT:
                raise EnvironmentFailure(f"sweep stopped at trial #{trial.number}: {reason}; it is kept for a "
                                         "retry: fix the cause and run the same command again") from None
            raise stop
        tail = (f"best {value:.2f}%" if state == TrialState.COMPLETE else f"{state.name.lower()}: {reason}")
        ctx.log(f"{label} {trial_label(done.params, mode)} -> {tail}; {status(study, plan).line()}")
    return ran


__all__ = ["status", "Status", "trial_label", "classify_failure", "requeue_failed", "WorkerContext", "work",
           "train_processes", "gpu_group", "run_as_group", "RETRY_ATTR", "ENVIRONMENT", "BUG", "TRIAL_FAULT"]
