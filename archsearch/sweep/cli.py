"""`archsearch sweep run|worker|status`, `archsearch report`, `archsearch demo`.
Registered on the main group by `archsearch/cli/`.

Only the options live here; what each command does is `app.py`'s, imported when a command
runs, so that `archsearch --help` (which imports this module) never loads optuna or torch.
"""

from __future__ import annotations

import click

from ..limits import MAX_THREADS, MAX_WORKERS
from . import STORAGE_ENV, storage_option

_STORAGE_HELP = (f"(default: ${STORAGE_ENV} if set). A password in a URL is never written down; it can also "
                 "come from PGPASSWORD (libpq reads it when the URL has none).")


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


def _app():
    from . import app  # optuna and torch: loaded when a sweep command runs, never for `archsearch --help`

    return app


def register(cli: click.Group) -> None:
    """Add the sweep commands to the main group."""
    sweep = _sweep_group(cli)
    for add in (_run_command, _worker_command, _status_command):
        add(sweep)
    for add in (_report_command, _demo_command):
        add(cli)


def _sweep_group(cli: click.Group) -> click.Group:
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

    return sweep


def _run_command(sweep: click.Group) -> None:
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
        report, html = _app().run_sweep(spec, scale=scale, storage=storage, workdir=workdir, workers=workers,
                                        devices=devices, device=device, threads=threads, data_dir=data_dir,
                                        png=png,
                                        retry_failed=retry_failed, artifacts=artifacts)
        click.echo(f"table: {report}\nplot:  {html}")


def _worker_command(sweep: click.Group) -> None:
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
        _app().join(storage, name, workdir, device, threads, data_dir, max_trials, quiet, artifacts)


def _status_command(sweep: click.Group) -> None:
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
        for line in _app().status_lines(sweep_ref, scale, storage, workdir):
            click.echo(line)


def _report_command(cli: click.Group) -> None:
    @cli.command("report")
    @click.argument("sweep_ref", metavar="SPEC_OR_STUDY")
    @click.option("--scale")
    @click.option("--storage", envvar=STORAGE_ENV, callback=storage_option, help="The sweep's storage " + _STORAGE_HELP)
    @click.option("--workdir", type=click.Path(file_okay=False))
    @click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Directory for report.md/.csv/.json (default: the work dir).")
    def report(sweep_ref, scale, storage, workdir, out_dir):
        """A Markdown and CSV table of a sweep: final- and best-epoch accuracy (mean ± sample std
        over seeds), params, MACs and per-stage widths per (kind, generator, budget); plus every trial.

        \b
        Examples:
          archsearch report quickstart
          archsearch report sweeps/fig3-vgg16-c10.toml --scale reduced -o results/
          archsearch report fig5-vgg19-c100 --storage postgresql://user:pw@host/db
        """
        click.echo(_app().write_report(sweep_ref, scale, storage, workdir, out_dir))


def _demo_command(cli: click.Group) -> None:
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
        click.echo(_app().demo(workdir, workers))


__all__ = ["register", "WORKERS", "WORKERS_HELP"]
