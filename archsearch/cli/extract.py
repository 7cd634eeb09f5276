"""`archsearch extract`: a pruner's proposals over seeds, saved as a library pattern.

Its help lists the methods of the proposer registry, with their default ratios.
"""

from __future__ import annotations


import click

from ..commands import typed_command
from ..config import DEFAULT_PRESET
from .options import (EPOCHS, FRACTION, PRESET_NAMES, RATIO, SEEDS, WIDTH, CommaList, NameValue, Number,
                      RegistryCommand, RegistryOption)
from .patterns import stage_table


def _proposers() -> list:
    from ..propose import PROPOSERS  # torch: kept out of `archsearch --help`

    return list(PROPOSERS.values())


def _methods_help() -> str:
    return ("Proposer spec METHOD-ARCH-DATA[.VARIANT], e.g. slimming-vgg16-c10, l1norm-resnet56-c10.A. Methods: "
            + ", ".join(p.name for p in _proposers()) + ".")


def _ratio_help() -> str:
    return ("Prune ratio (default: the method's; " + ", ".join(f"{p.name} {p.default_ratio:g}" for p in _proposers())
            + "; how each applies it: the methods below).")


def _methods_epilog() -> str:
    from ..propose import NAMED, catalogue  # torch: kept out of `archsearch --help`

    methods = catalogue()
    w = max(len(m.name) for m in methods)
    text = "\b\nMethods (default ratio, kind; how the ratio applies):\n" + "\n".join(
        f"  {m.name:<{w}}  {m.default_ratio:<4g} {m.kind:<9} {m.about}\n  {'':<{w}}  {'':<14} it {m.allocation}"
        for m in methods)
    own = [f"  {m.name}: {o.name} (default {o.default!r}): {o.help}"
           for m in catalogue() for o in m.options if not o.common and o.name not in NAMED]
    return text + ("\n\n\b\nThe methods' own options (--option NAME=VALUE):\n" + "\n".join(own) if own else "")


def _own(pairs: tuple) -> dict | None:
    names = [n for n, _ in pairs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise click.BadParameter(f"{', '.join(twice)} given twice", param_hint="'--option'")
    return dict(pairs) or None


@click.command(cls=RegistryCommand, epilog_from=_methods_epilog)
@click.option("--from", "source", required=True, cls=RegistryOption, help_from=_methods_help)
@click.option("--ratio", type=RATIO, cls=RegistryOption, help_from=_ratio_help)
@click.option("--seeds", type=SEEDS, default=3, show_default=True, help="Number of seeds (0..N-1).")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help=f"{PRESET_NAMES}: how the base nets are trained.")
@click.option("--width", type=WIDTH, help="Width multiplier of the base net (default: the preset's).")
@click.option("--epochs", type=EPOCHS, help="Override the preset's epochs for the base nets.")
@click.option("--sparsity", type=Number(0, 1), help="The regulariser's strength: slimming's L1 s on BN scales (default 1e-4 for VGG, 1e-5 otherwise); sss's gamma on block scales (default 1e-3).")
@click.option("--floor", type=FRACTION, default=0.0, show_default=True, help="Per-layer floor: keep at least max(1, ceil(floor x width)) channels.")
@click.option("--variant", help="A method's named configuration, e.g. l1norm's A / B (Li et al.'s VGG-16-A, ResNet-56-A/B, ResNet-110-A/B); same as the suffix .A on --from.")
@click.option("--stage-ratios", type=CommaList(FRACTION), help="l1norm, thinet, regression: one prune ratio per stage, e.g. 0.6,0.3,0.1.")
@click.option("--skip", type=CommaList(), help="l1norm, thinet, regression: channel groups left unpruned, by module name (e.g. layer1.7.conv1).")
@click.option("--rounds", type=click.IntRange(1, 100), help="Iterative methods (lottery): prune-and-rewind rounds, --ratio of the surviving weights each (default 5).")
@click.option("--rewind-epoch", type=click.IntRange(1), help="lottery: rewind to the weights after this epoch of the first round instead of the initialisation (late resetting).")
@click.option("--option", "-o", "own", type=NameValue(), multiple=True, help="A method's own option, NAME=VALUE (a number, a list like [1, 2], true / false, or a word); repeatable. The methods' own options are listed below.")
@click.option("--train-subset", type=click.IntRange(1, 1 << 31), help="Train the base nets on this many training images (a fixed class-stratified subset; the test set stays whole; a number at or above the training set's size uses all of it): reduced scale.")
@click.option("--data-dir", type=click.Path(), help="Where CIFAR lives (see `archsearch train --help`).")
@click.option("--download/--no-download", default=True, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/proposals", show_default=True, help="Where the per-seed proposal runs live (reused and resumed).")
@click.option("--name", help="Library name of the pattern (default: the proposer spec).")
@click.option("--library", type=click.Path(file_okay=False), help="Library directory to write to (default: $ARCHSEARCH_PATTERNS's first entry, else the user library).")
@click.option("--device", default="auto", show_default=True)
def extract(source, **options):
    """Run (or reuse) a pruner's proposals over seeds and write their pattern to the library.

    \b
    Examples:
      archsearch extract --from slimming-vgg16-digits --preset tiny --seeds 2
      archsearch extract --from slimming-vgg16-c10 --data-dir ../shared/data --preset fast
      archsearch extract --from magnitude-vgg16-c10 --ratio 0.8 --data-dir ../shared/data
      archsearch extract --from l1norm-resnet56-c10 --variant A --data-dir ../shared/data
      archsearch extract --from lamp-resnet20-digits --preset tiny
    """
    from ..patterns import accuracy_line
    from ..workflows.extract import prepare, propose_seeds, save  # torch: kept out of `archsearch --help`

    x = prepare(source, options=_own(options.pop("own")), **options)
    for line in x.header:
        click.echo(line, err=True)
    props = propose_seeds(x, log=lambda line: click.echo(line, err=True))
    command = typed_command("extract", f"archsearch extract --from {source}")
    saved = save(x, props, command)
    click.echo(stage_table(saved.pattern))
    click.echo(f"{accuracy_line(saved.pattern)} over {x.seeds} seed(s); {saved.pattern['provenance']['scale']}")
    click.echo(f"wrote {saved.path}")
    for note in saved.notes:
        click.echo(note, err=True)
