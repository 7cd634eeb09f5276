"""The `archsearch` command line (click). The top of the import graph: nothing imports it.

Every bad input ends as one line on stderr and exit code 2 (`ArchsearchError` ->
`click.ClickException`); Ctrl-C ends with exit 130 and a hint on how to resume.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import ArchsearchError


class _Group(click.Group):
    """Every bad input ends as one line on stderr and exit 2, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ArchsearchError as e:
            _fail(str(e))
        except click.ClickException as e:  # usage errors: bad option values, unknown commands
            _fail(e.format_message() + _help_hint(e))
        except (KeyboardInterrupt, click.Abort):
            click.echo("\ninterrupted; run the same command again to resume from the last checkpoint", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _help_hint(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="archsearch")
def cli() -> None:
    """archsearch: network pruning as architecture search.

    Pruners propose architectures; archsearch extracts their per-stage patterns, builds
    guided and transferred networks from them at matched budgets, and trains them from
    scratch (Liu et al., "Rethinking the Value of Network Pruning", ICLR 2019, Sec. 5).

    \b
    Example:
      archsearch train vgg11-digits --preset tiny
    """


def _positive_float(ctx, param, value):
    if value is not None and not value > 0:
        raise click.BadParameter(f"must be positive, got {value}", ctx=ctx, param=param)
    return value


@cli.command()
@click.argument("target")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), help="Train this ArchSpec JSON instead of the base net of TARGET's arch.")
@click.option("--preset", default="paper", show_default=True, help="paper | fast | tiny (see `archsearch.train`).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs (the base epochs for scratch-b).")
@click.option("--width", type=float, callback=_positive_float, help="Width multiplier of the base net (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--schedule", "kind", default="scratch-e", show_default=True, help="scratch-e | scratch-b | finetune.")
@click.option("--base", "base_file", type=click.Path(dir_okay=False), help="scratch-b: the base ArchSpec JSON to match in compute (default: the spec's own base widths).")
@click.option("--cap", type=float, callback=_positive_float, help="scratch-b: cap on the epoch factor (the paper uses 2 on ImageNet).")
@click.option("--count", "count_convention", help="scratch-b counting: macs | original (the Rethinking code's FLOPs; paper preset default).")
@click.option("--weights", type=click.Path(dir_okay=False), help="finetune: a model.pt (state dict) to start from.")
@click.option("--data-dir", type=click.Path(file_okay=True), help="Where CIFAR lives (torchvision files, an ImageFolder tree or a .tar.gz).")
@click.option("--download/--no-download", default=True, show_default=True, help="Try torchvision's download when the data is not found.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model (worth it on a GPU for long runs).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=5, show_default=True, help="Epochs between checkpoints.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run directory (default runs/TARGET-SCHEDULE-PRESET-wWIDTH-sSEED).")
def train(target, spec_file, preset, epochs, width, seed, kind, base_file, cap, count_convention, weights,
          data_dir, download, device, use_compile, checkpoint_every, out_dir):
    """Train TARGET (ARCH-DATA, e.g. vgg16-c10) from scratch and write DIR/result.json and DIR/spec.json.

    Rerunning the same command resumes from the last checkpoint in DIR.

    \b
    Examples:
      archsearch train vgg11-digits --preset tiny
      archsearch train vgg16-c10 --data-dir ../shared/data --width 0.25 --preset fast
      archsearch train vgg16-c10 --spec pruned.json --schedule scratch-b --preset fast
    """
    import torch

    from .archs import base_spec
    from .counting import count, fmt_count
    from .data import load_dataset
    from .names import parse_target
    from .progress import EpochProgress
    from .spec import ArchSpec
    from .train import get_preset, make_schedule, resolve_device
    from .train import train as run_train

    tgt = parse_target(target)
    p = get_preset(preset)
    resolve_device(device)  # fail before any work
    if spec_file:
        if width is not None:
            raise ArchsearchError("--width applies to TARGET's base net; a --spec file has its widths already")
        spec = ArchSpec.load(spec_file)
        if spec.num_classes != tgt.num_classes:
            raise ArchsearchError(f"{spec_file} has {spec.num_classes} classes but {tgt.data} has {tgt.num_classes}")
    else:
        width = p.width if width is None else width
        spec = base_spec(tgt.arch, tgt.num_classes, width=width)
    base = None
    if kind == "scratch-b":
        if base_file:
            base = ArchSpec.load(base_file)
        elif spec.base_widths is not None:
            base = ArchSpec(family=spec.family, depth=spec.depth, widths=spec.base_widths, stages=spec.stages,
                            num_classes=spec.num_classes, in_channels=spec.in_channels, input_size=spec.input_size)
        else:
            raise ArchsearchError("scratch-b needs a base to match: pass --base FILE")
    if kind != "finetune" and weights:
        raise ArchsearchError("--weights is for --schedule finetune")
    init_state = None
    if kind == "finetune":
        if not weights:
            raise ArchsearchError("--schedule finetune needs --weights FILE (a model.pt to start from)")
        try:
            init_state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  any unreadable file is bad input
            raise ArchsearchError(f"cannot read weights {weights}: {str(e).splitlines()[0]}") from None
        if isinstance(init_state, dict) and "model" in init_state:
            init_state = init_state["model"]
    schedule = make_schedule(preset, kind, epochs=epochs, spec=spec, base=base, cap=cap,
                             count_convention=count_convention)
    data = load_dataset(tgt.data, data_dir, download=download)
    c = count(spec)
    wtag = f"-w{width:g}" if not spec_file else "-spec"
    out = Path(out_dir or f"runs/{target}-{kind}-{preset}{wtag}-s{seed}")
    click.echo(f"{spec.name}-{tgt.data}: params {fmt_count(c.params_nonzero)}, {fmt_count(c.macs_nonzero)} MACs "
               f"({fmt_count(c.flops)} FLOPs = 2xMACs) | {data.describe()}", err=True)
    extra = f" (x{schedule.budget_factor:.2f} of {schedule.base_epochs}, {schedule.count})" if kind == "scratch-b" else ""
    click.echo(f"{kind} {preset}: {schedule.epochs} epochs{extra}, batch {schedule.batch_size}, lr {schedule.lr:g}, "
               f"seed {seed} -> {out}", err=True)
    result = run_train(spec, data, schedule, seed=seed, device=device, out_dir=out, checkpoint_every=checkpoint_every,
                       init_state=init_state, compile=use_compile,
                       progress=EpochProgress(f"{spec.name}-{tgt.data} s{seed}"))
    click.echo(result.summary() + f" | {out}/result.json")


def main() -> None:
    cli(prog_name="archsearch")


if __name__ == "__main__":
    main()
