"""`archsearch transfer`: guided or transferred nets from a pattern, and the baselines, at
matched budgets; with --train, each trained from scratch and compared.

Its help lists the generator registry's baselines and kinds.
"""

from __future__ import annotations

import click

from .. import limits as L
from ..config import DEFAULT_PRESET
from ..config import resolve as resolve_config
from .options import EPOCHS, FRACTION, PRESET_NAMES, SEED, SEEDS, WIDTH, RegistryOption, RoundTo, latency_options


def _generators():
    """The generator registry's module (its GENERATORS, OFFERED, KINDS)."""
    from .. import generate  # torch: kept out of `archsearch --help`

    return generate


def _baselines_help() -> str:
    g = _generators()

    def one(gen) -> str:
        return gen.name if gen.kinds == g.KINDS else f"{gen.name} ({'/'.join(gen.kinds)} only: {gen.about})"

    return (f"Comma list of {', '.join(one(g.GENERATORS[b]) for b in g.OFFERED)}, or 'none' (the sanity checks "
            "shuffled and reinit read the pattern's own pruned net).")


def _kinds_help() -> str:
    return " | ".join(_generators().KINDS) + " (default: the pattern's kind)."


def _by_help() -> str:
    from ..measures import MEASURES

    return " | ".join(MEASURES) + ": what a bare --budget number or --fractions bounds."


@click.command()
@click.option("--to", "target", required=True, help="Target ARCH-DATA, e.g. vgg19-c100.")
@click.option("--from", "source", help="Pattern name or file (default: the one `extract` wrote last).")
@click.option("--budget", "budgets", help="Budgets, e.g. 0.5M,1M,2M (params; MACs with --by macs; 1.5ms,3ms with "
              "--by latency), or bounds on several measures: macs=20M,params=0.5M (budgets separated by ';').")
@click.option("--fractions", help="Budgets as fractions of the full target [default: 0.05,0.1,0.2,0.4].")
@click.option("--by", default="params", show_default=True, cls=RegistryOption, help_from=_by_help)
@click.option("--kind", cls=RegistryOption, help_from=_kinds_help)
@click.option("--round", "round_to", type=RoundTo(), default=1, show_default=True,
              help=f"Round widths to multiples of this (1-{L.MAX_ROUND}; 8 for tensor cores), or 'auto': the finest "
                   "multiple the latency table shows to run at least as fast as one channel fewer.")
@click.option("--floor", type=FRACTION, default=0.0, show_default=True, help="Per-layer floor as a fraction of the target width (always >= 1 channel).")
@click.option("--baselines", default="uniform", show_default=True, cls=RegistryOption, help_from=_baselines_help)
@click.option("--width", type=WIDTH, help="Width multiplier of the full target (default: the preset's).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of random ratios and sampled masks.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output directory (default runs/transfer/PATTERN-to-TARGET).")
@click.option("--train", "do_train", is_flag=True, help="Also train every written spec from scratch and compare.")
@click.option("--schedule", "kind_sched", default="scratch-e", show_default=True, help="With --train: scratch-e | scratch-b.")
@click.option("--seeds", type=SEEDS, default=2, show_default=True, help="With --train: seeds per spec.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help=f"With --train: {PRESET_NAMES}.")
@click.option("--epochs", type=EPOCHS, help="With --train: override the preset's epochs.")
@click.option("--data-dir", type=click.Path(), help="With --train: where CIFAR lives.")
@click.option("--train-subset", type=click.IntRange(1, 1 << 31),
              help="With --train: train on a fixed class-stratified subset of N training images.")
@click.option("--device", default="auto", show_default=True)
@latency_options
def transfer(target, source, width, preset, epochs, floor, round_to, seed, do_train, kind_sched, seeds, data_dir,
             train_subset, device, **choices):
    """Build guided or transferred architectures from a pattern, plus baselines, at matched budgets.

    Writes one ArchSpec JSON per (generator, budget) and a table (table.md/.csv/.json) with
    every net's params, MACs and latency (measured end to end; see `archsearch profile`).

    \b
    Examples:
      archsearch transfer --from slimming-vgg16-c10 --to vgg19-c100
      archsearch transfer --from slimming-vgg16-c10 --to vgg16-c10 --budget 0.5M,1M --round 8
      archsearch transfer --from magnitude-vgg16-c10 --to vgg19-c100 --kind sparsity
      archsearch transfer --from slimming-vgg16-c10 --to vgg19-c10 --width 0.25 --by latency --budget 0.4ms,0.8ms
      archsearch transfer --from slimming-vgg16-c10 --to vgg19-c10 --budget "macs=20M,params=0.5M"
      archsearch transfer --from slimming-vgg16-c10 --to vgg16-c10 --width 0.25 --train --preset fast
    """
    # torch: kept out of `archsearch --help`
    from ..compare import markdown_table
    from ..workflows.transfer import TRAINED_COLS, auto_round_for, generate_specs, plan, train_specs

    config = resolve_config(preset, width=width, epochs=epochs)  # the target's width and, with --train, how to train
    t = plan(target, source, config, **choices)
    if round_to == "auto":
        round_to = auto_round_for(t, log=lambda line: click.echo(line, err=True))
    specs = generate_specs(t, floor=floor, round_to=round_to, seed=seed)
    click.echo(specs.summary, err=True)
    click.echo(markdown_table(specs.rows, [c for c in specs.cols if c != "spec"]))
    click.echo(f"wrote {len(specs.made)} specs and table.md/.csv/.json to {t.out}")
    if do_train:
        rows = train_specs(t, specs, schedule_kind=kind_sched, seeds=seeds, data_dir=data_dir,
                           train_subset=train_subset, device=device, log=lambda line: click.echo(line, err=True))
        click.echo(markdown_table(rows, TRAINED_COLS))
        click.echo(f"wrote {t.out / 'results.md'} and {t.out / 'efficiency.html'}")
    specs.check_complete()
