"""`archsearch plot efficiency|pattern`: Plotly figures as self-contained HTML."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ArchsearchError
from ..sweep import STORAGE_ENV, storage_option


@click.group()
def plot():
    """Plotly figures as self-contained HTML (plotly.js embedded: works offline).

    \b
    Examples:
      archsearch plot efficiency runs/transfer/slimming-vgg16-c10-to-vgg16-c10 -o eff.html
      archsearch plot pattern slimming-vgg16-c10 -o pattern.html
    """


@plot.command("efficiency")
@click.argument("source", metavar="STUDY_OR_SPEC")
@click.option("-o", "--out", "out_file", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--x", "x", default="all", show_default=True,
              help="params | macs | latency | all (a panel for each the rows carry). Lines mark each "
                   "generator's Pareto front.")
@click.option("--png", is_flag=True, help="Also write a PNG next to the HTML (headless Chromium).")
@click.option("--scale", help="With a spec: its scale (e.g. reduced).")
@click.option("--storage", envvar=STORAGE_ENV, callback=storage_option, help=f"With a study name: its storage (default "
              f"${STORAGE_ENV}, else runs/sweeps/STUDY/optuna-journal.log).")
@click.option("--workdir", type=click.Path(file_okay=False), help="The sweep's work directory, if not the default.")
@click.option("--title", help="Title (default: the sweep's).")
def plot_efficiency(source, out_file, x, png, scale, storage, workdir, title):
    """Final-epoch accuracy (mean ± sample std over seeds) against params, MACs or measured
    latency, per generator, each generator's Pareto front marked, coloured as in the paper (uniform red, pruned blue, guided green, transferred brown, random grey).

    STUDY_OR_SPEC is a sweep spec (file or shipped name), a study name, or the directory (or
    results.json) that `archsearch transfer --train` writes.

    \b
    Examples:
      archsearch plot efficiency sweeps/quickstart.toml -o eff.html
      archsearch plot efficiency fig3-vgg16-c10 --scale reduced -o fig3.html --png
      archsearch plot efficiency runs/transfer/slimming-vgg16-c10-to-vgg16-c10 -o eff.html
    """
    # torch (archsearch.plot reads the generator registry): kept out of `archsearch --help`
    from .. import plot as figures
    from ..workflows.transfer import load_results, results_file

    if x not in (*figures.X_KEYS, "all"):
        raise ArchsearchError(f"--x must be one of {', '.join(figures.X_KEYS)} or all, got {x!r}")
    path = results_file(source)
    if path is not None:
        rows = load_results(path)
        figures.write_html(figures.efficiency_figure(rows, x=x, title=title or "parameter efficiency",
                                                     caption=str(path)), out_file)
        if png:
            figures.render_png(out_file, Path(out_file).with_suffix(".png"))
    else:
        from ..sweep.app import efficiency_from_sweep  # optuna, torch: kept out of `archsearch --help`

        efficiency_from_sweep(source, storage, workdir, scale, out_file, x, png, title)
    click.echo(f"wrote {out_file}" + (f" and {Path(out_file).with_suffix('.png')}" if png else ""))


@plot.command("pattern")
@click.argument("name")
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False), help="HTML file (default NAME.html).")
def plot_pattern(name, out_file):
    """Per-layer kept widths against the original; for sparse patterns also the per-stage
    3x3 keep-probability heatmaps (the paper's Figure 4).

    \b
    Example:
      archsearch plot pattern magnitude-vgg16-c10 -o magnitude.html
    """
    # torch (archs, and the generator registry in archsearch.plot): kept out of `archsearch --help`
    from .. import patterns as P
    from ..plot import pattern_figure, write_html

    e = P.find(name)
    out_file = out_file or f"{e.name}.html"
    write_html(pattern_figure(P.load_pattern(e.path)), out_file)
    click.echo(f"wrote {out_file}")
