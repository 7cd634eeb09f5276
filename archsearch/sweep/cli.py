"""`archsearch sweep run|worker|status`, `archsearch report`, `archsearch demo`, and the
sweep side of `archsearch plot efficiency`. Registered on the main group by `cli.py`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from .._io import check_name
from ..limits import MAX_THREADS, MAX_WORKERS
from ..errors import ArchsearchError
from . import STORAGE_ENV, check_storage, storage_option

_STORAGE_HELP = (f"(default: ${STORAGE_ENV} if set). A password in a URL is never written down; it can also "
                 "come from PGPASSWORD (libpq reads it when the URL has none).")


def _log(msg: str) -> None:
    click.echo(msg, err=True)


class Workers(click.ParamType):
    """`auto` or a number of worker processes in [1, MAX_WORKERS]."""

    name = "auto|N"

    def convert(self, value, param, ctx):
        if value == "auto":
            return value
        return click.IntRange(1, MAX_WORKERS).convert(value, param, ctx)


WORKERS = Workers()
WORKERS_HELP = ("Worker processes on this machine. auto: one single-thread worker per CPU core (at most 8; "
                "measured faster than one worker using every core); on CUDA, 4 per GPU for nets on small images "
                "(CIFAR, digits; 1.13x one worker on an H200), else one per GPU.")


def _threads(workers: int, threads: int | None) -> int | None:
    if threads:
        return threads
    if workers > 1:
        return max(1, (os.cpu_count() or 1) // workers)
    return None


class Sweep:
    """A sweep found from a spec file (or shipped spec name) or a study name."""

    def __init__(self, target: str, storage: str | None, workdir: str | None, scale: str | None):
        from .plan import default_workdir, load_study
        from .spec import find_spec_file, load_spec
        from .storage import default_storage

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


def _rows(study) -> list[dict]:
    from .results import summary_rows

    rows = summary_rows(study)
    if not rows:
        raise ArchsearchError(f"study {study.study_name} has no completed trials yet")
    return rows


def provenance(study, plan: dict, rows: list[dict]) -> str:
    """How a sweep's numbers were produced, for tables and figure captions."""
    from ..redact import redact

    s, tr = plan["spec"], plan["spec"]["train"]
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]

    def used(key: str, default: str = "?") -> list[str]:  # what the finished trials ran with
        return sorted({str(t.user_attrs.get(key, default)) for t in done}) or [default]

    epochs = sorted({int(r["epochs"]) for r in rows if r.get("epochs") is not None})
    seeds = sorted({int(t.user_attrs["seed"]) for t in done if "seed" in t.user_attrs})
    return (f"study {study.study_name}" + (f" (scale {s['scale']})" if s.get("scale") else "")
            + f"; target {s['target']} width {tr['width']}; {s['schedule']}, preset {tr['preset']}, "
            + (f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]} epochs (per net)"
               if epochs else "epochs ?")
            + (f", train subset {tr['train_subset']}" if tr.get("train_subset") else "")
            + f"; {_seeds_text(seeds)}; {', '.join(used('device'))}, torch {', '.join(used('torch_version'))}; "
            f"archsearch {', '.join(used('archsearch_version', plan['archsearch_version']))}, {plan['created'][:10]}"
            + (f"; command: {redact(plan['command'])}" if plan.get("command") else ""))


def _seeds_text(seeds: list[int]) -> str:
    if not seeds:
        return "seeds ?"
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}..{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def write_outputs(study, plan: dict, out_dir: Path, x: str = "params", png: bool = False) -> tuple[Path, Path]:
    """report.md/.csv/.json and efficiency.html (+ .png) for a sweep, with its provenance (a
    table sweep: the paper's table layout and table.html)."""
    if plan["spec"]["mode"] == "table":
        from optuna.trial import TrialState

        from .runner import status
        from .table import write_outputs as table_outputs

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise ArchsearchError(f"study {study.study_name} has no completed trials yet")
        return table_outputs(study, plan, status(study, plan), out_dir, png=png)
    from ..compare import write_tables
    from ..plot import efficiency_figure, render_png, write_html
    from .results import NUMERIC_COLS, SUMMARY_COLS, trial_rows
    from .runner import status

    rows = _rows(study)
    st = status(study, plan)
    s = plan["spec"]
    pats = {f"{role} {k}": p["name"] + f" ({p['provenance'].get('scale', '')})"
            for role, d in plan["patterns"].items() for k, p in d.items()}
    prov = provenance(study, plan, rows)
    header = (f"# {s.get('title') or s['name']}\n\n{prov}\n\n"
              + "".join(f"- pattern ({k}): {v}\n" for k, v in pats.items())
              + f"- trials: {st.line()}\n"
              + "".join(f"- failed trial #{n}: {why}\n" for n, why in st.failures)
              + "\naccuracy: test accuracy (%) at the best epoch and the final epoch, mean ± std over seeds; "
              "params: non-zero parameters (sparse nets count kept weights only); MACs per image.")
    cols = SUMMARY_COLS + (["search_params"] if s["mode"] == "search" else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(rows, cols + NUMERIC_COLS, out_dir / "report", header, md_cols=cols)
    write_tables(trial_rows(study), ["trial", "state", "kind", "generator", "budget", "seed", "params", "macs",
                                     "best_acc", "final_acc", "epochs", "train_seconds", "fail_reason"],
                 out_dir / "trials")
    html = out_dir / "efficiency.html"
    title = s.get("title") or s["name"]
    write_html(efficiency_figure(rows, x=x, title=title, caption=prov), html)
    if png:
        render_png(html, html.with_suffix(".png"))
    return out_dir / "report.md", html


def _summary_table(study, plan: dict) -> str:
    from ..compare import markdown_table
    from .results import summary_rows

    if plan["spec"]["mode"] == "table":
        from .table import summary

        return markdown_table(summary(study, plan), ["row", "pruned_params"] + plan["arms"])
    return markdown_table(summary_rows(study), ["kind", "generator", "budget", "params", "macs", "seeds",
                                                "best_acc", "final_acc"])


def recorded_command(command: str | None, storage: str) -> str:
    """The command a study records (and reports and captions show): never a password. Each
    argument is redacted before it is quoted: shlex's quotes would split a password holding
    one (it's -> it'"'"'s), and the exact match would miss it."""
    from ..redact import redact, url_secrets

    secrets = url_secrets(storage)
    if command:
        return redact(command, secrets)
    return "archsearch " + shlex.join(redact(a, secrets) for a in sys.argv[1:])


def run_sweep(spec_path: str, *, scale: str | None = None, storage: str | None = None, workdir: str | None = None,
              workers: int | str = "auto", devices: str | None = None, device: str = "auto",
              threads: int | None = None,
              data_dir: str | None = None, png: bool = False, epoch_progress: bool = True,
              command: str | None = None, retry_failed: bool = False, artifacts: str | None = None
              ) -> tuple[Path, Path]:
    from .launch import _worker_devices, resolve_workers, set_threads, spawn_workers, spec_input_size
    from .plan import build_plan, create_or_load, default_workdir, open_run_storage, run_cfg_of
    from .runner import ENVIRONMENT, RETRY_ATTR, WorkerContext, _Interrupted, requeue_failed, status, work
    from .spec import find_spec_file, load_spec
    from .storage import default_storage, describe
    from .._io import make_dirs
    from ..train import resolve_device

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
    _log(f"sweep {spec.study_name}: {spec.title or spec.target or spec.name}")
    for line in (spec.about or "").strip().splitlines():
        _log(f"  {line}")
    if spec.cost:
        _log(f"  cost: {spec.cost.strip()}")
    plan = build_plan(spec, wd, device=devs[0], data_dir=data_dir, log=_log, artifacts=artifacts)
    # the recorded command goes into the study, reports and figure captions: never a password
    plan["command"] = recorded_command(command, url)
    study, plan = create_or_load(st_obj, plan, log=_log)
    again = requeue_failed(study, plan, everything=retry_failed)
    if again:
        _log(f"requeued {len(again)} failed trial(s) for another try: " + ", ".join(f"#{n}" for n in again))
    st = status(study, plan)
    _log(f"study {study.study_name} in {describe(url)}; work dir {wd}; {st.line(workers)}")
    bad = 0
    try:
        if st.finished:
            pass  # nothing left to run: the outputs are written again (e.g. with --png), no worker starts
        elif workers == 1:
            set_threads(threads)
            work(study, plan, WorkerContext(wd, devs[0], data_dir, _log, epoch_progress=epoch_progress,
                                            artifacts=artifacts))
        else:
            # check the data here once, so that a missing dataset stops the run before N workers start
            WorkerContext(wd, devs[0], data_dir, _log).all_data(plan)
            bad = spawn_workers(study, plan, url, wd, workers, devs, _threads(workers, threads), data_dir, _log,
                                artifacts=artifacts)
    except _Interrupted:
        raise KeyboardInterrupt from None
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
    click.echo(_summary_table(study, plan))
    # a failed trial leaves a hole in a grid or table: the report is written, but the run is not a
    # success. In a search, a point that fails on its own (diverged) is an outcome the search goes
    # past; one failed by the machine or by a bug is not.
    holes = [t for t in st.failed_trials if spec.mode != "search" or t.user_attrs.get(RETRY_ATTR)]
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


def register(cli: click.Group) -> None:
    @cli.group()
    def sweep():
        """Optuna-managed sweeps from sweeps/*.toml specs (local, multi-process or multi-machine).

        \b
        Examples:
          archsearch sweep run sweeps/quickstart.toml
          archsearch sweep run sweeps/fig3-vgg16-c10.toml --scale reduced --data-dir ../shared/data
          archsearch sweep run sweeps/fig5-vgg19-c100.toml --workers 4 --devices 0,1,2,3
          ARCHSEARCH_STORAGE=postgresql://me@host/db archsearch sweep worker --study fig5-vgg19-c100
          archsearch sweep status sweeps/quickstart.toml
        """

    @sweep.command("run")
    @click.argument("spec")
    @click.option("--scale", help="Apply the spec's [scales.NAME] overrides (e.g. reduced).")
    @click.option("--storage", envvar=STORAGE_ENV, callback=storage_option,
                  help="Optuna storage: a journal file (default: WORKDIR/optuna-journal.log) or "
                       "postgresql://user@host/db (or mysql://) for workers on several machines " + _STORAGE_HELP)
    @click.option("--workdir", type=click.Path(file_okay=False), help="Runs, logs and outputs (default runs/sweeps/STUDY).")
    @click.option("--workers", type=WORKERS, default="auto", show_default=True, help=WORKERS_HELP)
    @click.option("--devices", help="Comma-separated GPU ids; worker i uses devices[i % n] (e.g. 0,1).")
    @click.option("--device", default="auto", show_default=True, help="Device when --devices is not given.")
    @click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads per worker (default: cores / workers).")
    @click.option("--data-dir", type=click.Path(), help="Where the data lives (overrides the spec's train.data_dir).")
    @click.option("--png", is_flag=True, help="Also render efficiency.png with headless Chromium.")
    @click.option("--retry-failed", is_flag=True, help="Also retry trials that failed for their own reasons (e.g. "
                  "diverged, or a bug since fixed); trials failed by the machine (disk full, out of memory, a lost "
                  "device) are retried by every run.")
    @click.option("--artifacts", help="Artifact store of a table sweep (inherited weights): a folder or "
                  "s3://bucket[/prefix] (default WORKDIR/artifacts; S3 credentials from boto3's environment).")
    def sweep_run(spec, scale, storage, workdir, workers, devices, device, threads, data_dir, png, retry_failed,
                  artifacts):
        """Create or resume the study of SPEC (a file, or a shipped spec's name) and run it.

        Enumerates (kind, generator, budget, seed) with Optuna's grid sampler (or searches
        stage widths with TPE in search mode), trains each trial from scratch, and writes
        report.md/.csv/.json and efficiency.html to the work directory. Ctrl-C stops cleanly;
        the same command resumes without repeating finished trials.

        \b
        Examples:
          archsearch sweep run sweeps/quickstart.toml
          archsearch sweep run fig3-vgg16-c10 --scale reduced --data-dir ../shared/data --workers 2
          ARCHSEARCH_STORAGE=postgresql://me@db/sweeps PGPASSWORD=... archsearch sweep run fig5-vgg19-c100
          archsearch sweep run quickstart --retry-failed
        """
        report, html = run_sweep(spec, scale=scale, storage=storage, workdir=workdir, workers=workers,
                                 devices=devices, device=device, threads=threads, data_dir=data_dir, png=png,
                                 retry_failed=retry_failed, artifacts=artifacts)
        click.echo(f"table: {report}\nplot:  {html}")

    @sweep.command("worker")
    @click.option("--storage", envvar=STORAGE_ENV, callback=storage_option, required=True,
                  help="The sweep's storage (journal file or database URL) " + _STORAGE_HELP)
    @click.option("--study", "name", required=True, help="Study name (the spec's name, plus -SCALE).")
    @click.option("--workdir", type=click.Path(file_okay=False), help="Where this worker keeps its runs (default runs/sweeps/STUDY).")
    @click.option("--device", default="auto", show_default=True)
    @click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads for this worker.")
    @click.option("--data-dir", type=click.Path(), help="Where the data lives on this machine.")
    @click.option("--max-trials", type=click.IntRange(1, 10 ** 9), help="Stop after this many trials.")
    @click.option("--quiet", is_flag=True, help="No per-epoch lines (one line per trial).")
    @click.option("--artifacts", help="Where this machine reaches the table sweep's artifact store, if not where "
                  "the study says (a folder, or s3://bucket[/prefix]).")
    def sweep_worker(storage, name, workdir, device, threads, data_dir, max_trials, quiet, artifacts):
        """Join a running sweep: take trials from the study until none are left.

        \b
        Example:
          ARCHSEARCH_STORAGE=postgresql://me@host/db archsearch sweep worker --study fig5-vgg19-c100 \\
              --device cuda:0 --data-dir /data
        """
        from .launch import set_threads
        from .plan import load_study
        from .runner import WorkerContext, _Interrupted, work
        from ..train import resolve_device

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

    @sweep.command("status")
    @click.argument("sweep_ref", metavar="SPEC_OR_STUDY")
    @click.option("--scale")
    @click.option("--storage", envvar=STORAGE_ENV, callback=storage_option, help="The sweep's storage " + _STORAGE_HELP)
    @click.option("--workdir", type=click.Path(file_okay=False))
    def sweep_status(sweep_ref, scale, storage, workdir):
        """Done, running, failed and remaining trials, with an estimate of the time left.

        \b
        Examples:
          archsearch sweep status sweeps/quickstart.toml
          archsearch sweep status fig3-vgg16-c10 --scale reduced
        """
        from .runner import status
        from .storage import stale_numbers

        sw = Sweep(sweep_ref, storage, workdir, scale)
        st = status(sw.study, sw.plan)
        click.echo(f"{sw.name}: {st.line()}")
        if st.mean_seconds:
            click.echo(f"mean trial time {st.mean_seconds:.1f}s (the estimate divides by the running workers)")
        stale = stale_numbers(sw.study)
        for n, lbl in st.running_trials:
            click.echo(f"  running #{n} {lbl}" + (" (no heartbeat: its worker is gone; the next `sweep run` or "
                                                  "worker fails and requeues it)" if n in stale else ""))
        for n, why in st.failures:
            click.echo(f"  failed #{n}: {why}")

    @cli.command("report")
    @click.argument("sweep_ref", metavar="SPEC_OR_STUDY")
    @click.option("--scale")
    @click.option("--storage", envvar=STORAGE_ENV, callback=storage_option, help="The sweep's storage " + _STORAGE_HELP)
    @click.option("--workdir", type=click.Path(file_okay=False))
    @click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Directory for report.md/.csv/.json (default: the work dir).")
    def report(sweep_ref, scale, storage, workdir, out_dir):
        """A Markdown and CSV table of a sweep: accuracy (mean ± std over seeds), params, MACs
        and per-stage widths per (kind, generator, budget); plus every trial.

        \b
        Examples:
          archsearch report quickstart
          archsearch report sweeps/fig3-vgg16-c10.toml --scale reduced -o results/
          archsearch report fig5-vgg19-c100 --storage postgresql://user:pw@host/db
        """
        sw = Sweep(sweep_ref, storage, workdir, scale)
        rep, _ = write_outputs(sw.study, sw.plan, Path(out_dir) if out_dir else sw.workdir,
                               x=sw.plan["spec"]["by"])
        click.echo(_summary_table(sw.study, sw.plan))
        click.echo(f"wrote {rep} (and .csv, .json, "
                   f"{'table.html' if sw.plan['spec']['mode'] == 'table' else 'trials.*'})")

    @cli.command("demo")
    @click.option("--workdir", type=click.Path(file_okay=False), help="Default runs/sweeps/quickstart (so that "
                  "`archsearch report quickstart` finds it).")
    @click.option("--workers", type=WORKERS, default="auto", show_default=True, help=WORKERS_HELP)
    def demo(workdir, workers):
        """The whole pipeline on the bundled digits in about a minute (sweeps/quickstart.toml):
        propose (Network Slimming on VGG-11), extract its pattern, generate pruned, guided,
        transferred (from the shipped VGG-16/CIFAR-10 pattern), uniform and random nets at
        matched budgets, train them from scratch, and plot.

        \b
        Example:
          archsearch demo
          archsearch report quickstart && archsearch plot efficiency quickstart -o eff.html --png
        """
        import time

        t0 = time.perf_counter()
        report, html = run_sweep("quickstart", workdir=workdir, workers=workers,
                                 command="archsearch " + shlex.join(sys.argv[1:]))
        click.echo(f"\ndemo done in {time.perf_counter() - t0:.0f}s\ntable: {report}\nplot:  {html} "
                   "(open it in a browser; works offline)")


def efficiency_from_sweep(ref: str, storage: str | None, workdir: str | None, scale: str | None, out_file: str,
                          x: str, png: bool, title: str | None = None) -> None:
    from ..plot import efficiency_figure, render_png, write_html

    sw = Sweep(ref, storage, workdir, scale)
    if sw.plan["spec"]["mode"] == "table":
        raise ArchsearchError(f"{sw.name} is a table sweep: its figure is table.html, written by `archsearch report "
                              f"{ref}` (and by `sweep run`)")
    rows = _rows(sw.study)
    s = sw.plan["spec"]
    write_html(efficiency_figure(rows, x=x, title=title or s.get("title") or s["name"],
                                 caption=provenance(sw.study, sw.plan, rows)), out_file)
    if png:
        render_png(out_file, Path(out_file).with_suffix(".png"))


__all__ = ["register", "run_sweep", "write_outputs", "efficiency_from_sweep", "Sweep"]
