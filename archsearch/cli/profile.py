"""`archsearch profile`: the per-layer latency table of a target on this machine, checked end
to end (`archsearch.latency`)."""

from __future__ import annotations

import click

from ..config import DEFAULT_PRESET
from ..config import resolve as resolve_config
from .options import WIDTH, latency_options


@click.command()
@click.argument("target", metavar="ARCH-DATA")
@click.option("--width", type=WIDTH, help="Width multiplier of the target (default: the preset's).")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help="Whose width is the default.")
@click.option("--refresh", is_flag=True, help="Forget this machine's table for the measure, and measure it again.")
@latency_options
def profile(target, width, preset, refresh, latency):
    """Measure (once per machine and measure, then cached) and show the per-layer latency table
    that `--by latency` budgets are solved with, and check it: the full target and uniform nets
    at 1/2 and 1/4 of its widths, measured end to end beside the table's estimate.

    \b
    Examples:
      archsearch profile vgg16-c10
      archsearch profile vgg19-c10 --width 0.25 --latency-threads 4 --refresh
    """
    from ..compare import markdown_table  # torch: kept out of `archsearch --help`
    from ..errors import ArchsearchError
    from ..latency import LatencyTable
    from ..latency import profile as run_profile
    from ..names import parse_target

    if latency is None:
        raise ArchsearchError("profile measures latency: leave --no-latency out")
    full = parse_target(target).base_spec(resolve_config(preset, width=width).width)
    table = LatencyTable(latency)
    if refresh:
        table.clear()
    p = run_profile(full, table)
    click.echo(f"# {target} width {full.width:g}: {latency.describe()}")
    click.echo(markdown_table(p.rows, ["layer", "kind", "in", "out", "hw", "k", "ms", "share_pct"]))
    a, b = p.calibration
    click.echo(f"layers' sum {1e3 * p.layer_sum:.3f} ms; estimate = {1e3 * a:.3f} ms + {b:.3f} x the sum "
               "(what the layers alone miss: calls, adds, concatenation)")
    click.echo(markdown_table(p.checks, ["widths", "estimate_ms", "measured_ms", "error_pct"]))
    click.echo(f"table: {p.path} ({p.measured_now} points measured now)")
