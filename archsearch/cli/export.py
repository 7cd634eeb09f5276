"""`archsearch export`: a network for use without archsearch."""

from __future__ import annotations

import shlex
import sys

import click

from ..commands import portable_command
from .options import Number


@click.command("export")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), help="The ArchSpec JSON (default: RUN_DIR/spec.json).")
@click.option("--weights", type=click.Path(dir_okay=False), help="A state dict (default: RUN_DIR/model.pt, else "
              "RUN_DIR/pruned_model.pt; none with --spec alone: the exported net is untrained).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output directory (default RUN_DIR/export, "
              "or exports/ARCH with --spec alone).")
@click.option("--format", "formats", help="Comma list of export (torch.export), torchscript, onnx [default: all that "
              "are installed; onnx needs archsearch[onnx]].")
@click.option("--atol", type=Number(0, 1), default=1e-4, show_default=True,
              help="Largest allowed difference between the exported and the original outputs (plus 1e-4 x |output|).")
def export_cmd(run_dir, **options):
    """Export a network for use without archsearch: torch.export, TorchScript and ONNX, with
    its spec, its weights and export.json (input size, mean and std, classes, provenance).

    Every exported file is loaded back and must give the original module's outputs, or
    nothing is written. RUN_DIR is what `archsearch train` (or a proposal) wrote.

    \b
    Examples:
      archsearch export runs/vgg11-digits-scratch-e-tiny-w0.25-s0
      archsearch export runs/r18 --format onnx --out deploy/r18
      archsearch export --spec runs/transfer/X/transferred-1M.json --out deploy/untrained
    """
    from ..workflows.export import export_run  # torch: kept out of `archsearch --help`

    done = export_run(run_dir, command=portable_command("archsearch export " + shlex.join(sys.argv[2:])), **options)
    for f, rec in done.manifest["formats"].items():
        click.echo(f"{f:12s} {done.out / rec['file']}  (outputs match, max diff {rec['max_abs_diff']:.2g})")
    if not done.trained:
        click.echo("note: no weights given: the exported network is untrained (random initialisation)", err=True)
    click.echo(f"wrote {done.out / 'export.json'}")
