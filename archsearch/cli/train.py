"""`archsearch train`: one network trained from scratch into a run folder."""

from __future__ import annotations

import click

from .. import limits as L
from ..config import DEFAULT_PRESET
from ..config import resolve as resolve_config
from .options import EPOCHS, PRESET_NAMES, SEED, WIDTH, Number, RegistryOption


def _schedules_help() -> str:
    from ..train import SCHEDULE_KINDS  # torch: kept out of `archsearch --help`

    return " | ".join(SCHEDULE_KINDS) + "."


@click.command()
@click.argument("target")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), help="Train this ArchSpec JSON instead of the base net of TARGET's arch.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help=f"{PRESET_NAMES} (see `archsearch.config`).")
@click.option("--epochs", type=EPOCHS, help="Override the preset's epochs (the base epochs for scratch-b).")
@click.option("--width", type=WIDTH, help="Width multiplier of the base net (default: the preset's).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--schedule", "kind", default="scratch-e", show_default=True, cls=RegistryOption, help_from=_schedules_help)
@click.option("--base", "base_file", type=click.Path(dir_okay=False), help="scratch-b: the base ArchSpec JSON to match in compute (default: the spec's own base widths).")
@click.option("--cap", type=Number(0, L.MAX_CAP, min_open=True), help="scratch-b: cap on the epoch factor (the paper uses 2 on ImageNet).")
@click.option("--count", "count_convention", help="scratch-b counting: macs | original (the Rethinking code's FLOPs; paper preset default).")
@click.option("--weights", type=click.Path(dir_okay=False), help="finetune: a model.pt (state dict) to start from.")
@click.option("--data-dir", type=click.Path(file_okay=True), help="Where CIFAR lives (torchvision files, an ImageFolder tree or a .tar.gz).")
@click.option("--download/--no-download", default=True, show_default=True, help="Try torchvision's download when the data is not found.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model (on an H200, VGG-16 at width 0.25 took 23 s to "
              "compile and its epochs were no faster: 0.9 s against 0.8).")
@click.option("--checkpoint-every", type=EPOCHS, help="Epochs between checkpoints (default: the preset's; 5, imagenet 1).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory (default runs/TARGET-SCHEDULE-PRESET-wWIDTH-sSEED).")
@click.option("--train-subset", type=click.IntRange(1, 1 << 31),
              help="Train on a fixed class-stratified subset of N training images (reduced-scale runs; the test set "
                   "stays whole).")
@click.option("--nproc", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Train over N processes on this machine with DistributedDataParallel (one per GPU; gloo on CPU): "
                   "runs this command under torchrun. Several machines: start torchrun yourself (README).")
@click.option("--sync-bn", is_flag=True, help="Synchronise batch norm statistics over the processes (GPUs only; the "
                                               "paper's ImageNet code does not).")
def train(target, preset, epochs, width, kind, checkpoint_every, use_compile, **options):
    """Train TARGET (ARCH-DATA, e.g. vgg16-c10) from scratch and write DIR/result.json and DIR/spec.json.

    Rerunning the same command resumes from the last checkpoint in DIR (also with --nproc).

    \b
    Examples:
      archsearch train vgg11-digits --preset tiny
      archsearch train vgg16-c10 --data-dir ../shared/data --width 0.25 --preset fast
      archsearch train vgg16-c10 --spec pruned.json --schedule scratch-b --preset fast
      archsearch train resnet50-in --preset imagenet --data-dir /data --nproc 8 --out runs/r50
    """
    from ..workflows.train import execute, prepare, run_under_torchrun  # torch: kept out of `archsearch --help`

    # the one resolution of the run's config: the preset, overridden by the flags given (a
    # spec file has its widths already; finetuning overrides the fine-tuning epochs)
    config = resolve_config(preset, width=None if options["spec_file"] else width, checkpoint_every=checkpoint_every,
                            **{"finetune_epochs" if kind == "finetune" else "epochs": epochs})
    run = prepare(target, config, width=width, kind=kind, compile=use_compile, **options)
    if run.launch:
        run_under_torchrun(options["nproc"], _arguments_less_nproc(click.get_current_context()))
        return
    if run.main_rank:
        for line in run.header():
            click.echo(line, err=True)
    result = execute(run)
    if run.main_rank:
        click.echo(result.summary() + f" | {run.out}/result.json")


def _arguments_less_nproc(ctx: click.Context) -> list[str]:
    """This very command's arguments as given on the command line, less --nproc: what each
    torchrun rank runs."""
    args = [ctx.command.name]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.name == "nproc" or ctx.get_parameter_source(p.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        if isinstance(p, click.Argument):
            args.append(str(v))
        elif p.is_flag and p.secondary_opts and not v:
            args.append(p.secondary_opts[0])
        elif p.is_flag:
            args.append(p.opts[0])
        else:
            args += [p.opts[0], str(v)]
    return args
