"""What the sweep commands do (`cli.py` holds only their options): find a sweep, run it, join
it, report it. Imported by the commands when they run, so that `archsearch --help` never loads
optuna or torch."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import click

from .._io import check_name, make_dirs
from ..errors import ArchsearchError
from ..redact import redact, url_secrets
from ..train import resolve_device
from . import check_storage
from .launch import _worker_devices, resolve_workers, set_threads, spawn_workers, spec_input_size
from .modes import get_mode
from .plan import build_plan, create_or_load, default_workdir, load_study, open_run_storage, run_cfg_of
from .results import efficiency, provenance
from .runner import ENVIRONMENT, RETRY_ATTR, WorkerContext, _Interrupted, requeue_failed, status, work
from .spec import find_spec_file, load_spec
from .storage import default_storage, describe, stale_numbers


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def _threads(workers: int, threads: int | None) -> int | None:
    if threads:
        return threads
    if workers > 1:
        return max(1, (os.cpu_count() or 1) // workers)
    return None


class Sweep:
    """A sweep found from a spec file (or shipped spec name) or a study name."""

    def __init__(self, target: str, storage: str | None, workdir: str | None, scale: str | None):
        self.spec = None
        looks_like_spec = target.endswith(".toml") or Path(target).is_file()
        try:  # a spec (file or shipped name) names its study, with the scale's suffix
            self.spec = load_spec(find_spec_file(target), scale)
        except ArchsearchError:
            if looks_like_spec or scale:  # --scale only means something for a spec
                raise
        if self.spec is not None:
            self.name = self.spec.study_name
            self.workdir = Path(workdir) if workdir else default_workdir(self.spec)
        else:
            self.name = check_name(target, "study name")
            self.workdir = Path(workdir) if workdir else Path("runs") / "sweeps" / target
        self.storage = storage or default_storage(self.workdir)
        if not storage and not Path(self.storage).exists():
            raise ArchsearchError(f"no sweep {target!r} has run here (no {self.storage}); start it with "
                                  f"`archsearch sweep run SPEC`, or pass --storage/--workdir")
        self.study, self.plan = load_study(self.storage, self.name)


def write_outputs(study, plan: dict, out_dir: Path, x: str = "params", png: bool = False) -> tuple[Path, Path]:
    """The sweep's report files and figure, as its mode writes them, with its provenance."""
    return get_mode(plan["spec"]["mode"]).write_outputs(study, plan, status(study, plan), out_dir, x, png)


def summary_table(study, plan: dict) -> str:
    return get_mode(plan["spec"]["mode"]).summary_table(study, plan)


def recorded_command(command: str | None, storage: str) -> str:
    """The command a study records (and reports and captions show): never a password. Each
    argument is redacted before it is quoted: shlex's quotes would split a password holding
    one (it's -> it'"'"'s), and the exact match would miss it."""
    secrets = url_secrets(storage)
    if command:
        return redact(command, secrets)
    return "archsearch " + shlex.join(redact(a, secrets) for a in sys.argv[1:])


def run_sweep(spec_path: str, *, scale: str | None = None, storage: str | None = None, workdir: str | None = None,
              workers: int | str = "auto", devices: str | None = None, device: str = "auto",
              threads: int | None = None, data_dir: str | None = None, png: bool = False,
              epoch_progress: bool = True, command: str | None = None, retry_failed: bool = False,
              artifacts: str | None = None) -> tuple[Path, Path]:
    """Create or resume the study of a spec, run its workers here, and write its report.
    Returns (report.md, the figure); a sweep left with holes or unfinished is one error line."""
    if storage:
        check_storage(storage)  # before the work dir is made
    spec = load_spec(find_spec_file(spec_path), scale)
    wd = Path(workdir) if workdir else default_workdir(spec)
    workers, devices = resolve_workers(workers, devices, device, input_size=spec_input_size(spec),
                                       nproc=int(spec.train.get("nproc", 1)))
    devs = _worker_devices(devices, workers, device)
    for d in set(devs):
        resolve_device(d)
    make_dirs(wd)
    url = storage or default_storage(wd)
    # open (and so check) the storage before any work: a bad URL is one line now, not after
    # the proposers have trained
    st_obj = open_run_storage(url, run_cfg_of(spec))
    _announce(spec)
    plan = build_plan(spec, wd, device=devs[0], data_dir=data_dir, log=_log, artifacts=artifacts)
    # the recorded command goes into the study, reports and figure captions: never a password
    plan["command"] = recorded_command(command, url)
    study, plan = create_or_load(st_obj, plan, log=_log)
    again = requeue_failed(study, plan, everything=retry_failed)
    if again:
        _log(f"requeued {len(again)} failed trial(s) for another try: " + ", ".join(f"#{n}" for n in again))
    st = status(study, plan)
    _log(f"study {study.study_name} in {describe(url)}; work dir {wd}; {st.line(workers)}")
    ctx = WorkerContext(wd, devs[0], data_dir, _log, epoch_progress=epoch_progress, artifacts=artifacts)
    bad = 0 if st.finished else _run_workers(study, plan, ctx, url, workers, devs, threads)
    return _finish(study, plan, spec, wd, workers, bad, png)


def _announce(spec) -> None:
    _log(f"sweep {spec.study_name}: {spec.title or spec.target or spec.name}")
    for line in (spec.about or "").strip().splitlines():
        _log(f"  {line}")
    if spec.cost:
        _log(f"  cost: {spec.cost.strip()}")


def _run_workers(study, plan: dict, ctx: WorkerContext, url: str, workers: int, devs: list[str],
                 threads: int | None) -> int:
    """Run the study's trials: here (one worker) or in `workers` processes. Returns how many
    workers stopped with an error."""
    try:
        if workers == 1:
            set_threads(threads)
            work(study, plan, ctx)
            return 0
        # check the data here once, so that a missing dataset stops the run before N workers start
        WorkerContext(ctx.workdir, ctx.device, ctx.data_dir, _log).all_data(plan)
        return spawn_workers(study, plan, url, ctx.workdir, workers, devs, _threads(workers, threads), ctx.data_dir,
                             _log, artifacts=ctx.artifacts)
    except _Interrupted:
        raise KeyboardInterrupt from None


def _finish(study, plan: dict, spec, wd: Path, workers: int, bad: int, png: bool) -> tuple[Path, Path]:
    """Tell how the sweep stands, write its report, and fail (one line) unless it is complete."""
    st = status(study, plan)
    _log(f"sweep {study.study_name}: {st.line()}")
    for n, why in st.failures:
        _log(f"  failed trial #{n}: {why}")
    if not st.finished:
        _log("not finished (a worker stopped early?); run the same command again to resume")
    if bad:
        if st.done:
            write_outputs(study, plan, wd, x=spec.by, png=png)
        raise ArchsearchError(f"{bad} of {workers} workers stopped with an error (see {wd / 'logs'}/worker-*.log); "
                              "fix the cause and run the same command again to go on")
    report, html = write_outputs(study, plan, wd, x=spec.by, png=png)
    click.echo(summary_table(study, plan))
    # a failed trial leaves a hole in a grid or table (a search goes past a point that failed on its own)
    holes = [t for t in st.failed_trials if get_mode(spec.mode).is_hole(t, RETRY_ATTR)]
    if holes:
        why = dict(st.failures)
        listed = "; ".join(f"#{t.number}: {why[t.number]}" for t in holes[:5])
        more = f" (and {len(holes) - 5} more)" if len(holes) > 5 else ""
        # the machine's failures are retried by every run; the others wait for --retry-failed
        how = "" if all(t.user_attrs.get(RETRY_ATTR) == ENVIRONMENT for t in holes) else " with --retry-failed"
        raise ArchsearchError(f"{len(holes)} trial(s) failed: {listed}{more}; the report ({report}) lacks "
                              f"them; fix the cause and run the same command{how}")
    if not st.finished:  # every worker ended well, yet trials are left: never a success
        raise ArchsearchError(f"sweep {study.study_name} is not finished ({st.line()}); the report ({report}) "
                              "has what is done; run the same command again to resume")
    return report, html


def join(storage: str, name: str, workdir: str | None, device: str, threads: int | None, data_dir: str | None,
         max_trials: int | None, quiet: bool, artifacts: str | None) -> None:
    """`sweep worker`: take trials from the study until none are left."""
    check_name(name, "study name")
    resolve_device(device)
    study, plan = load_study(storage, name)
    set_threads(threads)
    wd = Path(workdir) if workdir else Path("runs") / "sweeps" / name
    _log(f"worker pid {os.getpid()} on {device} joined study {name}")
    try:
        n = work(study, plan, WorkerContext(wd, device, data_dir, _log, epoch_progress=not quiet,
                                            artifacts=artifacts), max_trials=max_trials)
    except _Interrupted:
        raise KeyboardInterrupt from None
    _log(f"worker pid {os.getpid()}: ran {n} trial(s); nothing left to take")


def status_lines(ref: str, scale: str | None, storage: str | None, workdir: str | None) -> list[str]:
    """`sweep status`: done, running, failed and remaining trials, and the time left."""
    sw = Sweep(ref, storage, workdir, scale)
    st = status(sw.study, sw.plan)
    out = [f"{sw.name}: {st.line()}"]
    if st.mean_seconds:
        out.append(f"mean trial time {st.mean_seconds:.1f}s (the estimate divides by the running workers)")
    stale = stale_numbers(sw.study)
    for n, lbl in st.running_trials:
        out.append(f"  running #{n} {lbl}" + (" (no heartbeat: its worker is gone; the next `sweep run` or "
                                              "worker fails and requeues it)" if n in stale else ""))
    out += [f"  failed #{n}: {why}" for n, why in st.failures]
    return out


def write_report(ref: str, scale: str | None, storage: str | None, workdir: str | None, out_dir: str | None) -> str:
    """`archsearch report`: the sweep's report files; returns what to print."""
    sw = Sweep(ref, storage, workdir, scale)
    rep, _ = write_outputs(sw.study, sw.plan, Path(out_dir) if out_dir else sw.workdir, x=sw.plan["spec"]["by"])
    return (summary_table(sw.study, sw.plan)
            + f"\nwrote {rep} (and .csv, .json, {get_mode(sw.plan['spec']['mode']).report_files})")


def demo(workdir: str | None, workers) -> str:
    """`archsearch demo`: the quickstart sweep, timed; returns what to print."""
    t0 = time.perf_counter()
    report_md, html = run_sweep("quickstart", workdir=workdir, workers=workers,
                                command="archsearch " + shlex.join(sys.argv[1:]))
    return (f"\ndemo done in {time.perf_counter() - t0:.0f}s\ntable: {report_md}\nplot:  {html} "
            "(open it in a browser; works offline)")


def efficiency_from_sweep(ref: str, storage: str | None, workdir: str | None, scale: str | None, out_file: str,
                          x: str, png: bool, title: str | None = None) -> None:
    sw = Sweep(ref, storage, workdir, scale)
    rows = get_mode(sw.plan["spec"]["mode"]).efficiency_rows(sw.study, ref)
    efficiency(rows, sw.study, sw.plan, out_file, x=x, png=png, title=title)


__all__ = ["Sweep", "run_sweep", "write_outputs", "summary_table", "recorded_command", "provenance", "join",
           "status_lines", "write_report", "demo", "efficiency_from_sweep"]
