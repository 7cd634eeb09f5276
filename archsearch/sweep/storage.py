"""Optuna storages for sweeps, both with heartbeats.

- Default: Optuna's journal file storage in the sweep's work directory. Optuna's docs
  recommend it for several processes on one machine (its FAQ advises against SQLite for
  parallel workers). Optuna 5's `JournalStorage` has no heartbeat, so `HeartbeatJournalStorage`
  adds one, through Optuna's own `BaseHeartbeat` interface: each running trial's worker
  writes a timestamp every `heartbeat` seconds, and a trial silent for `grace` seconds is
  failed and requeued (`RetryHeartbeatStaleTrialCallback`) by the next worker that looks.
- `postgresql://...` or `mysql://...`: Optuna's `RDBStorage` with its built-in heartbeat,
  for workers on several machines.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from typing import Callable

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from ..errors import ArchsearchError

HEARTBEAT_ATTR = "archsearch:heartbeat"
JOURNAL_NAME = "optuna-journal.log"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus heartbeats kept as a trial system attribute."""

    def __init__(self, path: str, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(JournalFileBackend(path))
        self.path = path
        self._hb, self._grace, self._cb = heartbeat_interval, grace_period, stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # the trial ended between two beats

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            last = t.system_attrs.get(HEARTBEAT_ATTR)
            if last is None and t.datetime_start is not None:
                last = t.datetime_start.timestamp()
            if last is not None and now - float(last) > self._grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._hb

    def get_heartbeat_stale_trial_callback(self):
        return self._cb


def is_url(storage: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+]*://", storage)) and not storage.startswith("file://")


def redact(url: str) -> str:
    """A storage URL with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_storage(workdir: str | os.PathLike) -> str:
    return str(Path(workdir) / JOURNAL_NAME)


def open_storage(storage: str, *, heartbeat: int = 10, grace: int = 60, max_retry: int = 2) -> BaseStorage:
    """A journal file path (or file://PATH), or an RDB URL (postgresql://, mysql://, sqlite://)."""
    with warnings.catch_warnings():  # Optuna marks the retry callback and RDB heartbeats experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open(storage, heartbeat, grace, RetryHeartbeatStaleTrialCallback(max_retry=max_retry))


def _open(storage: str, heartbeat: int, grace: int, cb) -> BaseStorage:
    if is_url(storage):
        try:
            return RDBStorage(storage, heartbeat_interval=heartbeat, grace_period=grace,
                              heartbeat_stale_trial_callback=cb, engine_kwargs={"pool_pre_ping": True})
        except ImportError as e:
            raise ArchsearchError(f"storage {redact(storage)} needs a database driver: {e} "
                                  "(for PostgreSQL: pip install 'psycopg[binary]', or archsearch[postgres])") from None
        except Exception as e:  # noqa: BLE001  SQLAlchemy's connection errors, bad URLs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArchsearchError(f"cannot open storage {redact(storage)}: {first}") from None
    path = storage[len("file://"):] if storage.startswith("file://") else storage
    p = Path(path)
    if p.is_dir():
        p = p / JOURNAL_NAME
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(str(p), heartbeat, grace, cb)
    except (OSError, ValueError) as e:
        raise ArchsearchError(f"cannot open journal storage {p}: {e}") from None


def describe(storage: str) -> str:
    return redact(storage) if is_url(storage) else f"journal file {storage}"
