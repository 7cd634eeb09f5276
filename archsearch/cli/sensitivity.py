"""`archsearch sensitivity`: prune one channel group (or stage) at a time, test without
retraining, and derive a pattern from the curves (Li et al. 2017, Sec. 4.4)."""

from __future__ import annotations


import click

from ..commands import typed_command
from ..config import DEFAULT_PRESET
from .options import EPOCHS, PRESET_NAMES, RATIO, SEED, WIDTH, CommaList, Number, RegistryOption


def _methods_help() -> str:
    from ..propose import PROPOSERS  # torch: kept out of `archsearch --help`

    have = ", ".join(m for m, p in PROPOSERS.items() if p.criterion is not None)
    return (f"Proposer spec METHOD-ARCH-DATA, e.g. l1norm-resnet56-c10: its trained base net (shared with `extract`) "
            f"and its channel criterion. Methods that rank channels: {have}.")


@click.command()
@click.option("--from", "source", required=True, cls=RegistryOption, help_from=_methods_help)
@click.option("--by", type=click.Choice(["group", "stage"]), default="group", show_default=True,
              help="What is pruned at once: one channel group (coupled groups are one), or every group of a stage.")
@click.option("--ratios", type=CommaList(RATIO), default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", show_default=True,
              help="Prune ratios to measure, each in (0, 1): a group of n channels keeps max(1, int(n x (1 - r))).")
@click.option("--threshold", type=Number(0, 100), default=1.0, show_default=True,
              help="The derived pattern prunes each unit at the largest measured ratio whose accuracy drop is at most "
                   "this many points (else not at all). 1 point: twice the ~0.5% CIFAR-10 runs vary by, so a unit "
                   "within it is insensitive beyond run-to-run noise.")
@click.option("--max-ratio", type=RATIO, help="The derived pattern prunes no unit above this ratio.")
@click.option("--test-images", type=click.IntRange(1, 1 << 31),
              help="Test on a fixed class-stratified subset of this many test images (faster; default: all).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Which base net (seed) to analyse.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help=f"{PRESET_NAMES}: how the base net is trained.")
@click.option("--width", type=WIDTH, help="Width multiplier of the base net (default: the preset's).")
@click.option("--epochs", type=EPOCHS, help="Override the preset's epochs for the base net.")
@click.option("--sparsity", type=Number(0, 1), help="slimming: the L1 strength s its base net trains with (default 1e-4 for VGG, 1e-5 otherwise).")
@click.option("--train-subset", type=click.IntRange(1, 1 << 31), help="Train the base net on this many training images (a fixed class-stratified subset): reduced scale.")
@click.option("--data-dir", type=click.Path(), help="Where CIFAR lives (see `archsearch train --help`).")
@click.option("--download/--no-download", default=True, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/proposals", show_default=True, help="Where base nets train (`extract`'s: the two share them).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/sensitivity", show_default=True, help="Where the analyses live (OUT/PROPOSER/KEY/seedN; resumed).")
@click.option("--name", help="Library name of the derived pattern (default: PROPOSER.sens).")
@click.option("--library", type=click.Path(file_okay=False), help="Library directory to write to (default: $ARCHSEARCH_PATTERNS's first entry, else the user library).")
@click.option("--png", is_flag=True, help="Also write sensitivity.png next to the HTML (headless Chromium).")
@click.option("--device", default="auto", show_default=True)
def sensitivity(source, png, **options):
    """Prune one channel group (or stage) of a trained base net at a time, at several ratios,
    and test it without retraining (Li et al., "Pruning Filters for Efficient ConvNets", ICLR
    2017, Sec. 4.4, Fig. 2 and 3); then derive per-group ratios from a threshold on the
    accuracy drop and write their pattern to the library.

    Writes sensitivity.csv, sensitivity.html (one curve per unit), sensitivity.json and a copy of
    the pattern to OUT/PROPOSER/KEY/seedN. Each point is kept as it is measured: run the same
    command again to resume, or with another --threshold to derive again at no cost.

    \b
    Examples:
      archsearch sensitivity --from l1norm-resnet56-digits --preset tiny --ratios 0.3,0.6,0.9
      archsearch sensitivity --from l1norm-resnet56-c10 --data-dir ../shared/data --preset fast
      archsearch sensitivity --from slimming-vgg16-c10 --by stage --test-images 2000 --data-dir ../shared/data
    """
    from ..sensitivity import derive_pattern, measure, prepare, write_outputs  # torch: kept out of `--help`

    a = prepare(source, **options)
    for line in a.header:
        click.echo(line, err=True)
    m = measure(a, log=lambda line: click.echo(line, err=True))
    command = typed_command("sensitivity", f"archsearch sensitivity --from {source}")
    d = derive_pattern(a, m, command)
    files = write_outputs(a, m, d, command, png=png)
    pruned = [f"{u} {r:g}" for u, r in d.unit_ratios.items() if r > 0]
    points = f"{a.threshold:g} point{'' if a.threshold == 1 else 's'}"
    click.echo(f"unpruned {100 * m.unpruned:.2f}%; at a drop of at most {points}: "
               f"{len(pruned)} of {len(a.units)} {a.by}s pruned" + (f" ({', '.join(pruned)})" if pruned else ""))
    click.echo(f"derived pattern: {d.pattern['ratio']:.1%} of the channels pruned, {100 * d.pruned_acc:.2f}% "
               f"without retraining")
    click.echo(f"wrote {', '.join(str(f) for f in files)}")
    click.echo(f"wrote {d.path}")
    if not pruned:
        click.echo(f"note: every {a.by} drops more than {points} at its smallest ratio: the pattern "
                   "prunes nothing (raise --threshold, or measure smaller --ratios)", err=True)
