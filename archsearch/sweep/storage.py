"""Optuna storages for sweeps, both with heartbeats.

- Default: Optuna's journal file storage in the sweep's work directory. Optuna's docs
  recommend it for several processes on one machine (its FAQ advises against SQLite for
  parallel workers). Optuna 5's `JournalStorage` has no heartbeat, so `HeartbeatJournalStorage`
  adds one, through Optuna's own `BaseHeartbeat` interface: each running trial's worker
  writes a timestamp every `heartbeat` seconds, and a trial silent for `grace` seconds is
  failed and requeued (`RetryHeartbeatStaleTrialCallback`) by the next worker that looks.
- `postgresql://...` or `mysql://...`: Optuna's `RDBStorage` with its built-in heartbeat,
  for workers on several machines.

This is the one module that touches Optuna's private parts (the heartbeat machinery, the
journal's operation codes and lock file, a trial's storage id); the runner calls the small
wrappers at the end. They were written against Optuna 5.0, and setup.cfg bounds Optuna
below 6 for them.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat, fail_stale_trials, get_heartbeat_thread
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from .._io import make_dirs, os_error
from ..errors import ArchsearchError
from ..redact import redact, url_secrets
from . import STORAGE_ENV  # noqa: F401  (re-exported for launch)

_KNOWN_OPS = {int(op) for op in JournalOperation}

HEARTBEAT_ATTR = "archsearch:heartbeat"
WORKER_LOST = "worker lost (no heartbeat)"  # the reason of a trial the heartbeat check failed (it sets none)
DUPLICATE_ATTR = "duplicate_of"  # user attr of a trial failed at once because another worker held its point
JOURNAL_NAME = "optuna-journal.log"


class SafeJournalFileBackend(JournalFileBackend):
    """Optuna's journal file, made safe against a failed write and honest about damage.

    - An append that fails part-way (a full disk) is cut back to the size the file had
      before, so the next append never lands after half a line; and before appending,
      under Optuna's own journal lock, a partial last line left by a process killed
      mid-write is cut off. A line that was never finished was never committed.
    - Reading checks every line: a complete line that is not JSON, or that names an
      operation Optuna's journal does not know, is one `ArchsearchError` naming the file and
      the line, not a JSONDecodeError or "AssertionError: Should not reach" from inside Optuna.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.repaired = 0  # bytes of partial tail cut off by this process

    def _cut_unfinished_tail(self, f) -> None:
        """Cut what a write that never finished left at the end: a partial last line (no
        newline), or a last line that is not JSON. Optuna's reader skips exactly those, so
        the cut changes nothing a reader sees; leaving them would put the next entry after
        garbage, and from then on the whole journal fails to load."""
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        finished = self._byte(f, size - 1) == b"\n"
        start = self._line_start(f, size - 1 if finished else size)  # where the last line begins
        f.seek(start)
        if finished:
            try:
                json.loads(f.read(size - start))
                return  # a complete entry
            except ValueError:
                pass
        f.truncate(start)
        self.repaired += size - start
        print(f"note: journal {self._file_path}: cut off an unfinished last entry ({size - start} bytes) "
              "left by an interrupted write", file=sys.stderr, flush=True)

    @staticmethod
    def _byte(f, pos: int) -> bytes:
        f.seek(pos)
        return f.read(1)

    @staticmethod
    def _line_start(f, end: int) -> int:
        """Offset of the first byte after the last newline before `end`."""
        pos = end
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            i = f.read(min(step, end - pos)).rfind(b"\n")
            if i >= 0:
                return pos + i + 1
        return 0

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        with get_lock_file(self._lock):  # the lock Optuna's own append takes
            # unbuffered: after a failed write no buffered bytes are left to land after the cut
            with open(self._file_path, "r+b", buffering=0) as f:
                self._cut_unfinished_tail(f)
                before = f.seek(0, os.SEEK_END)
                try:
                    view = memoryview(text)
                    while view:
                        view = view[f.write(view):]
                    os.fsync(f.fileno())
                except OSError as e:
                    try:
                        f.truncate(before)
                    except OSError:
                        pass
                    raise os_error(e, self._file_path) from None

    def read_logs(self, log_number_from: int):
        logs, n = super().read_logs(log_number_from), log_number_from
        while True:
            try:
                log = next(logs)
            except StopIteration:
                return
            except ValueError as e:  # a complete line that is not JSON (JSONDecodeError is a ValueError)
                raise ArchsearchError(f"journal {self._file_path} is damaged after entry {n} ({e}); restore it "
                                      "from a copy, or pass another --storage/--workdir") from None
            n += 1
            if not isinstance(log, dict) or log.get("op_code") not in _KNOWN_OPS or "worker_id" not in log:
                raise ArchsearchError(f"journal {self._file_path} is damaged at entry {n}: "
                                      f"not an operation of Optuna's journal ({str(log)[:60]})")
            yield log


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus heartbeats kept as a trial system attribute."""

    def __init__(self, path: str, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        try:
            super().__init__(SafeJournalFileBackend(path))  # replays the whole journal
        except ArchsearchError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError) as e:
            # a line that is JSON but not a valid operation, or a partial line in the middle
            raise ArchsearchError(f"journal {path} is damaged and cannot be replayed ({type(e).__name__}: "
                                  f"{str(e)[:80]}); restore it from a copy, or pass another --storage/--workdir") from None
        self.path = path
        self._hb, self._grace, self._cb = heartbeat_interval, grace_period, stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # the trial ended between two beats
        except ArchsearchError:
            pass  # a full disk: skip this beat (the trial's own next write reports it, as one line)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # a requeued trial carries its dead attempt's last beat: this attempt's start is newer
            beats = [float(t.system_attrs[HEARTBEAT_ATTR])] if HEARTBEAT_ATTR in t.system_attrs else []
            if t.datetime_start is not None:
                beats.append(t.datetime_start.timestamp())
            if beats and now - max(beats) > self._grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._hb

    def get_heartbeat_stale_trial_callback(self):
        return self._cb


def is_url(storage: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+]*://", storage)) and not storage.startswith("file://")


def default_storage(workdir: str | os.PathLike) -> str:
    return str(Path(workdir) / JOURNAL_NAME)


def open_storage(storage: str, *, heartbeat: int = 10, grace: int = 60, max_retry: int = 2,
                 create: bool = True) -> BaseStorage:
    """A journal file path (or file://PATH), or an RDB URL (postgresql://, mysql://, sqlite://).
    With `create=False` (status, reports, plots, joining workers) a journal that does not
    exist is an error, not a new empty file."""
    with warnings.catch_warnings():  # Optuna marks the retry callback and RDB heartbeats experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open(storage, heartbeat, grace, RetryHeartbeatStaleTrialCallback(max_retry=max_retry), create)


def _open(storage: str, heartbeat: int, grace: int, cb, create: bool) -> BaseStorage:
    if is_url(storage):
        db = storage[len("sqlite:///"):].split("?")[0] if storage.startswith("sqlite:///") else None
        if db and not create and db != ":memory:" and not Path(db).is_file():
            # SQLite would make an empty database file: a report or status asked of nothing leaves nothing behind
            raise ArchsearchError(f"no SQLite storage {db}: nothing has run there (check --storage)")
        try:
            return RDBStorage(storage, heartbeat_interval=heartbeat, grace_period=grace,
                              heartbeat_stale_trial_callback=cb, engine_kwargs={"pool_pre_ping": True})
        except ImportError as e:
            raise ArchsearchError(f"storage {redact(storage)} needs a database driver: {redact(str(e))} "
                                  "(for PostgreSQL: pip install 'psycopg[binary]', or archsearch[postgres])") from None
        except Exception as e:  # noqa: BLE001  SQLAlchemy's connection errors, bad URLs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArchsearchError(f"cannot open storage {redact(storage)}: {redact(first, url_secrets(storage))}") from None
    path = storage[len("file://"):] if storage.startswith("file://") else storage
    p = Path(path)
    if p.is_dir():
        if not create and not (p / JOURNAL_NAME).is_file():
            raise ArchsearchError(f"storage {p} is a folder with no {JOURNAL_NAME} in it: pass the journal file")
        p = p / JOURNAL_NAME
    if p.exists() and not p.is_file():
        raise ArchsearchError(f"storage {p} is not a regular file")
    if not create and not p.exists():
        raise ArchsearchError(f"no journal storage {p}: nothing has run there (check --storage/--workdir)")
    if create:
        make_dirs(p.parent)
    try:
        return HeartbeatJournalStorage(str(p), heartbeat, grace, cb)
    except OSError as e:
        raise os_error(e, p, "cannot open journal storage") from None


def describe(storage: str) -> str:
    return redact(storage) if is_url(storage) else f"journal file {redact(storage)}"


# -- Optuna's private parts that the worker loop needs, in one place ---------------------------------
def beating(study: optuna.Study, trial: optuna.Trial):
    """The heartbeat thread of a running trial (a context manager), as `Study.optimize` runs it."""
    return get_heartbeat_thread(trial._trial_id, study._storage)


def fail_stale(study: optuna.Study) -> None:
    """Fail (and, through the storage's callback, requeue) trials whose worker stopped beating."""
    fail_stale_trials(study)


def stale_numbers(study: optuna.Study) -> set[int]:
    """Numbers of RUNNING trials whose worker stopped beating (read only: nothing is failed)."""
    st = study._storage
    if not isinstance(st, BaseHeartbeat) or st.get_heartbeat_interval() is None:
        return set()
    ids = set(st._get_stale_trial_ids(study._study_id))
    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t._trial_id in ids}


def trial_system_attrs(study: optuna.Study, trial: optuna.Trial) -> dict:
    return study._storage.get_trial_system_attrs(trial._trial_id)


def frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as the storage holds it now."""
    return study._storage.get_trial(trial._trial_id)
