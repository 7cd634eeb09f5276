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
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..data import load_dataset, subset_train
from ..errors import ArchsearchError, EnvironmentFailure, clip
from ..names import parse_target
from ..progress import fmt_seconds
from .modes import Mode, get_mode
from .plan import Log, _stderr
from .processes import MACHINE_SIGNS
from .storage import DUPLICATE_ATTR, HEARTBEAT_ATTR, WORKER_LOST, beating, fail_stale, frozen

REQUEUE_HISTORY = "requeue_history"  # system attr: the attempts a stop or a machine's failure requeued
RETRY_ATTR = "retryable"  # user attr of a failed trial: why it may be retried (ENVIRONMENT or BUG)
TRIAL_FAULT, ENVIRONMENT, BUG = "trial", "environment", "bug"


# -- progress accounting ----------------------------------------------------------------------------
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
    mode = get_mode(plan["spec"]["mode"])
    by_id: dict = {}
    for t in study.get_trials(deepcopy=False):
        ident = mode.identity(t)
        if (ident is None and mode.ignores_unidentified) or DUPLICATE_ATTR in t.user_attrs:
            continue
        by_id.setdefault(ident, []).append(t)
    total = mode.total(plan)
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
            st.running_trials.append((t.number, mode.label(t.params)))
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
    st.blocked = mode.blocked(plan, st.failed_trials, set(by_id))
    st.mean_seconds = sum(durations) / len(durations) if durations else None
    return st


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
        for name in get_mode(plan["spec"]["mode"]).datasets(plan):
            self.data(plan, name)


class _Interrupted(Exception):
    pass


def _next_action(study: optuna.Study, plan: dict) -> str:
    mode = get_mode(plan["spec"]["mode"])
    mode.refill(study, plan)
    st = status(study, plan)
    if st.waiting or (st.remaining and mode.asks_ahead):
        return "ask"
    if st.running:
        return "wait"
    return "done"


def _is_duplicate(study: optuna.Study, trial: optuna.Trial, mode: Mode) -> int | None:
    """The number of an earlier attempt at the trial's point (two workers handed it at once)."""
    gid = mode.identity(frozen(study, trial))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
        if t.number != trial.number and mode.identity(t) == gid and (
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
        get_mode(plan["spec"]["mode"]).before_fail(trial, plan)
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        _requeue(study, frozen(study, trial), "interrupted")


def _work(study: optuna.Study, plan: dict, ctx: WorkerContext, max_trials: int | None, wait: bool) -> int:
    mode = get_mode(plan["spec"]["mode"])
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
        taken = _take(study, plan, mode)
        if taken is not None:
            _run_trial(study, *taken, plan, ctx, mode)
            ran += 1
    return ran


def _take(study: optuna.Study, plan: dict, mode: Mode) -> tuple[optuna.Trial, str] | None:
    """Ask for the next trial and its progress label; None when what was handed out is no
    attempt to run (told failed at once: not a point, or a point another worker has)."""
    trial = None
    try:  # a stop between the ask and the training must not leave the trial RUNNING
        with _signals_deferred():  # a stop inside the ask: raised once the trial is known
            trial = study.ask()
        if not mode.is_point(trial):
            # the queue emptied between the look and the ask (another worker took it): not a point
            study.tell(trial, state=TrialState.FAIL)
            return None
        dup = _is_duplicate(study, trial, mode) if mode.dedups else None
        if dup is not None:
            trial.set_user_attr(DUPLICATE_ATTR, dup)  # not an attempt: status and reports skip it
            trial.set_user_attr("fail_reason", f"duplicate of trial {dup} (two workers asked at once)")
            study.tell(trial, state=TrialState.FAIL)
            return None
        st = status(study, plan)
        return trial, f"[{st.done + st.pruned + st.failed + 1}/{st.total}] #{trial.number}"
    except KeyboardInterrupt:
        if trial is None:
            raise _Interrupted("interrupted") from None
        _fail_interrupted(study, trial, plan, "interrupted (Ctrl-C) before it started; requeued")
        raise _Interrupted(f"trial #{trial.number} interrupted before it started, and requeued") from None


def _train(study: optuna.Study, trial: optuna.Trial, plan: dict, ctx: WorkerContext, mode: Mode, label: str):
    """Train the trial under its heartbeat: (state, value, reason, cause, the error that stops the worker)."""
    state, value, reason, cause = TrialState.COMPLETE, None, None, None
    stop: BaseException | None = None
    with beating(study, trial):
        try:
            value = mode.train(study, trial, plan, ctx, label)
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
    return state, value, reason, cause, stop


def _run_trial(study: optuna.Study, trial: optuna.Trial, label: str, plan: dict, ctx: WorkerContext,
               mode: Mode) -> None:
    """Train a taken trial and tell its outcome; a stop or a failure that is not the trial's
    own ends the worker (`_Interrupted`, `EnvironmentFailure`, or the bug's error)."""
    state, value, reason, cause, stop = _train(study, trial, plan, ctx, mode, label)
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
    done = frozen(study, trial)
    if stop is not None:
        ctx.log(f"{label} {mode.label(done.params)} -> failed: {reason}")
        if cause == ENVIRONMENT:
            raise EnvironmentFailure(f"sweep stopped at trial #{trial.number}: {reason}; it is kept for a "
                                     "retry: fix the cause and run the same command again") from None
        raise stop
    tail = (f"best {value:.2f}%" if state == TrialState.COMPLETE else f"{state.name.lower()}: {reason}")
    ctx.log(f"{label} {mode.label(done.params)} -> {tail}; {status(study, plan).line()}")


__all__ = ["status", "Status", "classify_failure", "requeue_failed", "WorkerContext", "work", "RETRY_ATTR",
           "ENVIRONMENT", "BUG", "TRIAL_FAULT"]
