"""The `archsearch` command line (click). The top of the import graph: nothing imports it.

Every bad input (an `ArchsearchError`, or a click usage error) ends as one line
`error: ...` on stderr and exit code 2; Ctrl-C ends with exit 130 and a hint on how to
resume. Heavy imports (torch) happen inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from . import __version__
from . import limits as L
from ._io import check_name, load_state, make_dirs
from .config import DEFAULT_PRESET, PRESETS
from .config import resolve as resolve_config
from .errors import ArchsearchError
from .sweep import STORAGE_ENV, storage_option

PRESET_NAMES = " | ".join(PRESETS)  # for --help (archsearch.config imports no torch)


def _terminated(signum, frame):
    raise KeyboardInterrupt


class _Group(click.Group):
    """Every bad input ends as one line on stderr and exit 2, never a traceback. SIGTERM (a
    `kill`, `timeout`, a batch scheduler's preemption) stops a run as Ctrl-C does: checkpoints
    stay, a sweep's workers are stopped and their trials requeued."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import signal
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        previous = (signal.signal(signal.SIGTERM, _terminated), signal.getsignal(signal.SIGINT)) if main_thread else None
        try:
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except ArchsearchError as e:
                _fail(str(e))
            except OSError as e:  # a full or read-only disk, a path that is a file: the machine's, not a bug
                _fail(_os_message(e))
            except MemoryError:
                _fail("out of memory: use a smaller width, batch or dataset, or a machine with more memory")
            except click.ClickException as e:  # usage errors: bad option values, unknown commands
                _fail(e.format_message() + _help_hint(e))
            except (KeyboardInterrupt, click.Abort):
                _interrupted()
        except KeyboardInterrupt:
            # a SIGTERM or Ctrl-C that lands while an error is being reported (torchrun stops the
            # other ranks of a failed run so): the process ends either way, and ends quietly
            _interrupted()
        finally:  # for callers in the same process (tests, notebooks): their handlers back
            if main_thread:
                signal.signal(signal.SIGTERM, previous[0])
                signal.signal(signal.SIGINT, previous[1])
        sys.exit(rv if isinstance(rv, int) else 0)


def _on_the_way_out() -> None:
    """Ignore further SIGTERM and Ctrl-C: the process is already ending, and a signal now
    would only turn its one-line message into a traceback."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupted() -> None:
    _on_the_way_out()
    click.echo("\ninterrupted; run the same command again to resume from the last checkpoint", err=True)
    sys.exit(130)


def _os_message(e: OSError) -> str:
    from ._io import os_error

    return str(os_error(e, action="cannot use"))


def _help_hint(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    return f" (see '{ctx.command_path} --help')" if ctx is not None else ""


def _fail(msg: str) -> None:
    _on_the_way_out()
    from .redact import redact

    # one line, whatever the message holds (a multi-line library error), and never a password
    click.echo("error: " + " ".join(redact(msg).split()), err=True)
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


class Number(click.FloatRange):
    """A finite number in a range: click's FloatRange lets NaN through every bound."""

    name = "number"

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


class CommaList(click.ParamType):
    """A comma-separated list: of numbers in a range (`item` a Number), or of plain names."""

    name = "list"

    def __init__(self, item: click.ParamType | None = None):
        self.item = item

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not all(parts):
            self.fail(f"{value!r} has an empty entry; give a comma-separated list", param, ctx)
        return [self.item.convert(p, param, ctx) for p in parts] if self.item is not None else parts


# every number that enters on the command line, with its finite range (bounds: limits.py)
WIDTH = Number(0, L.MAX_WIDTH_MULT, min_open=True)
FRACTION = Number(0, 1, max_open=True)            # --floor: [0, 1)
RATIO = Number(0, 1, min_open=True, max_open=True)  # prune ratio: (0, 1)
SEED = click.IntRange(0, L.MAX_SEED)
SEEDS = click.IntRange(1, L.MAX_SEEDS)
EPOCHS = click.IntRange(1, L.MAX_EPOCHS)


@cli.command()
@click.argument("target")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), help="Train this ArchSpec JSON instead of the base net of TARGET's arch.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True, help=f"{PRESET_NAMES} (see `archsearch.config`).")
@click.option("--epochs", type=EPOCHS, help="Override the preset's epochs (the base epochs for scratch-b).")
@click.option("--width", type=WIDTH, help="Width multiplier of the base net (default: the preset's).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--schedule", "kind", default="scratch-e", show_default=True, help="scratch-e | scratch-b | finetune.")
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
def train(target, spec_file, preset, epochs, width, seed, kind, base_file, cap, count_convention, weights,
          data_dir, download, device, use_compile, checkpoint_every, out_dir, train_subset, nproc, sync_bn):
    """Train TARGET (ARCH-DATA, e.g. vgg16-c10) from scratch and write DIR/result.json and DIR/spec.json.

    Rerunning the same command resumes from the last checkpoint in DIR (also with --nproc).

    \b
    Examples:
      archsearch train vgg11-digits --preset tiny
      archsearch train vgg16-c10 --data-dir ../shared/data --width 0.25 --preset fast
      archsearch train vgg16-c10 --spec pruned.json --schedule scratch-b --preset fast
      archsearch train resnet50-in --preset imagenet --data-dir /data --nproc 8 --out runs/r50
    """
    from .distributed import current, launched_by_torchrun

    # --nproc N outside torchrun: this process checks every argument (the data included) and
    # only then starts the N ranks, so that a bad one is one line before any of them starts
    launch = nproc > 1 and not launched_by_torchrun()
    main_rank = launch or current().main  # current(): stray torchrun variables are refused here, at once
    from .counting import count, fmt_count
    from .data import load_dataset, subset_train
    from .names import parse_target
    from .progress import EpochProgress
    from .spec import ArchSpec
    from .train import make_schedule, resolve_device
    from .train import train as run_train

    tgt = parse_target(target)
    # the one resolution of the run's config: the preset, overridden by the flags given
    cfg = resolve_config(preset, width=None if spec_file else width, checkpoint_every=checkpoint_every,
                         **{"finetune_epochs" if kind == "finetune" else "epochs": epochs})
    resolve_device(device)  # fail before any work
    if spec_file:
        if width is not None:
            raise ArchsearchError("--width applies to TARGET's base net; a --spec file has its widths already")
        spec = ArchSpec.load(spec_file)
        if spec.num_classes != tgt.num_classes:
            raise ArchsearchError(f"{spec_file} has {spec.num_classes} classes but {tgt.data} has {tgt.num_classes}")
    else:
        width = cfg.width
        spec = tgt.base_spec(width)
    base = None
    if kind == "scratch-b":
        if base_file:
            base = ArchSpec.load(base_file)
        elif spec.base_widths is not None:
            base = spec.replace(widths=spec.base_widths, masks=None, selected=None, blocks=None, meta={})
        else:
            raise ArchsearchError("scratch-b needs a base to match: pass --base FILE")
    if kind != "finetune" and weights:
        raise ArchsearchError("--weights is for --schedule finetune")
    init_state = None
    if kind == "finetune":
        if not weights:
            raise ArchsearchError("--schedule finetune needs --weights FILE (a model.pt to start from)")
        init_state = load_state(weights, "weights")
    schedule = make_schedule(cfg, kind, spec=spec, base=base, cap=cap, count_convention=count_convention)
    if launch:
        _check_nproc(nproc, device, schedule.batch_size, sync_bn)
    data = subset_train(load_dataset(tgt.data, data_dir, download=download), train_subset)
    if launch:
        del data, init_state  # found (and cached for the ranks); each rank loads its own
        _run_under_torchrun(nproc, click.get_current_context())
        return
    c = count(spec)
    wtag = f"-w{width:g}" if not spec_file else "-spec"
    out = Path(out_dir or f"runs/{target}-{kind}-{preset}{wtag}-s{seed}")
    extra = f" (x{schedule.budget_factor:.2f} of {schedule.base_epochs}, {schedule.count})" if kind == "scratch-b" else ""
    if main_rank:
        click.echo(f"{spec.name}-{tgt.data}: params {fmt_count(c.params_nonzero)}, {fmt_count(c.macs_nonzero)} MACs "
                   f"({fmt_count(c.flops)} FLOPs = 2xMACs) | {data.describe()}", err=True)
        click.echo(f"{kind} {preset}: {schedule.epochs} epochs{extra}, batch {schedule.batch_size}, lr {schedule.lr:g}, "
                   f"seed {seed} -> {out}", err=True)
    result = run_train(spec, data, schedule, seed=seed, device=device, out_dir=out, checkpoint_every=cfg.checkpoint_every,
                       init_state=init_state, compile=use_compile, sync_bn=sync_bn,
                       progress=EpochProgress(f"{spec.name}-{tgt.data} s{seed}"))
    if main_rank:
        click.echo(result.summary() + f" | {out}/result.json")


def _check_nproc(nproc: int, device: str, batch_size: int, sync_bn: bool) -> None:
    """What `--nproc` needs, checked before any process starts: a rank finds out only after the
    others have started (12 CPU ranks took 3.4 GB to fail on the batch), or not at all."""
    import torch

    from .train import resolve_device

    cuda = resolve_device(device).type == "cuda"
    if cuda and torch.cuda.device_count() < nproc:  # one GPU per process
        gpus = torch.cuda.device_count()
        hint = f"use --nproc {gpus} or --device cpu" if gpus else "use --device cpu"
        raise ArchsearchError(f"--nproc {nproc} needs {nproc} GPUs, one per process; this machine has {gpus}: {hint}")
    if batch_size % nproc:  # every process takes an equal slice of each global batch
        fits = max(k for k in range(1, nproc + 1) if batch_size % k == 0)
        raise ArchsearchError(f"--nproc {nproc}: the batch of {batch_size} does not split evenly over {nproc} "
                              f"processes; use an --nproc that divides {batch_size}"
                              + (f" (e.g. --nproc {fits})" if fits > 1 else ""))
    if sync_bn and not cuda:
        raise ArchsearchError("--sync-bn needs several processes on GPUs (torch's SyncBatchNorm has no CPU kernel)")


def _run_under_torchrun(nproc: int, ctx: click.Context) -> None:
    """Run this very command (its options as given, less --nproc) as `nproc` processes under
    torchrun on this machine; a failed process is one line and exit 2 (its own error line is
    above it)."""
    import logging
    import os

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from .distributed import torchrun_command

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
    argv = torchrun_command(nproc, args)[3:]  # torchrun's own arguments, run in this process
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its report is a traceback
    logging.getLogger("torch.distributed.run").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # torchrun's default is 1
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        rank, first = min(e.failures.items(), key=lambda kv: kv[1].timestamp)
        how = f"signal {-first.exitcode}" if first.exitcode < 0 else f"exit code {first.exitcode}"
        # exit 2 is a rank's own error line (above): most often the configuration, which a
        # resume cannot mend; a killed or crashed rank is the machine's, and a resume goes on
        then = ("fix what its error line above says, then run the same command again" if first.exitcode == 2
                else "run the same command again to resume from the last checkpoint")
        raise ArchsearchError(f"{len(e.failures)} of {nproc} training processes failed (first: rank {rank}, "
                              f"{how}); {then}") from None


def _bar(frac: float, width: int = 24) -> str:
    n = int(round(max(0.0, min(1.0, frac)) * width))
    return "█" * n + "·" * (width - n)


def _stage_table(pat: dict) -> str:
    stages, base = pat["stages"], pat["base_widths"]
    rows = []
    if pat["kind"] == "depth":
        rows.append(f"{'stage':>5} {'removable blocks':>16}  {'share kept':>15}")
        for k, (m, sd) in enumerate(zip(pat["stage"]["ratio_mean"], pat["stage"]["ratio_std"])):
            rows.append(f"{k + 1:>5} {sum(s == k for s in stages):>16}  {m:>7.3f} ± {sd:<5.3f} {_bar(m)}")
    elif pat["kind"] == "channels":
        rows.append(f"{'stage':>5} {'layers':>6} {'width':>6}  {'kept ratio':>15}")
        for k, (m, sd) in enumerate(zip(pat["stage"]["ratio_mean"], pat["stage"]["ratio_std"])):
            idx = [i for i, s in enumerate(stages) if s == k]
            rows.append(f"{k + 1:>5} {len(idx):>6} {base[idx[0]]:>6}  {m:>7.3f} ± {sd:<5.3f} {_bar(m)}")
    else:
        rows.append(f"{'stage':>5} {'layers':>6} {'width':>6}  {'density':>15}  3x3 keep probability (rows)")
        for k, (m, sd) in enumerate(zip(pat["stage"]["density_mean"], pat["stage"]["density_std"])):
            idx = [i for i, s in enumerate(stages) if s == k]
            km = pat["stage"]["kernel_keep_mean"][k]
            grid = "(1x1 convs only)" if km is None else " | ".join(" ".join(f"{v:.2f}" for v in row) for row in km)
            rows.append(f"{k + 1:>5} {len(idx):>6} {base[idx[0]]:>6}  {m:>7.3f} ± {sd:<5.3f}  {grid}")
    return "\n".join(rows)


@cli.command()
@click.option("--from", "source", required=True, help="Proposer spec METHOD-ARCH-DATA[.VARIANT], e.g. slimming-vgg16-c10, l1norm-resnet56-c10.A. Methods: slimming, magnitude, lamp, l1norm, thinet, regression, sfp, lottery, sss.")
@click.option("--ratio", type=RATIO, help="Prune ratio (default: the method's; slimming 0.6, magnitude and lamp 0.8, l1norm / thinet / regression 0.5 per group, sfp 0.3 per conv, lottery 0.2 per round, sss 0.3 of the removable blocks).")
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
@click.option("--train-subset", type=click.IntRange(1, 1 << 31), help="Train the base nets on this many training images (a fixed class-stratified subset; the test set stays whole; a number at or above the training set's size uses all of it): reduced scale.")
@click.option("--data-dir", type=click.Path(), help="Where CIFAR lives (see `archsearch train --help`).")
@click.option("--download/--no-download", default=True, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/proposals", show_default=True, help="Where the per-seed proposal runs live (reused and resumed).")
@click.option("--name", help="Library name of the pattern (default: the proposer spec).")
@click.option("--library", type=click.Path(file_okay=False), help="Library directory to write to (default: $ARCHSEARCH_PATTERNS's first entry, else the user library).")
@click.option("--device", default="auto", show_default=True)
def extract(source, ratio, seeds, preset, width, epochs, sparsity, floor, variant, stage_ratios, skip, rounds, rewind_epoch,
            train_subset, data_dir, download, workdir, name, library, device):
    """Run (or reuse) a pruner's proposals over seeds and write their pattern to the library.

    \b
    Examples:
      archsearch extract --from slimming-vgg16-digits --preset tiny --seeds 2
      archsearch extract --from slimming-vgg16-c10 --data-dir ../shared/data --preset fast
      archsearch extract --from magnitude-vgg16-c10 --ratio 0.8 --data-dir ../shared/data
      archsearch extract --from l1norm-resnet56-c10 --variant A --data-dir ../shared/data
      archsearch extract --from lamp-resnet20-digits --preset tiny
    """
    import shlex

    from . import patterns as P
    from .data import load_dataset, subset_train
    from .progress import EpochProgress, fmt_seconds
    from .propose import finished, propose, resolve_settings, run_dir
    from .train import estimate_seconds, resolve_device

    kw = dict(ratio=ratio, preset=preset, width=width, epochs=epochs, sparsity=sparsity, floor=floor,
              train_subset=train_subset, variant=variant, stage_ratios=stage_ratios, skip=skip, rounds=rounds,
              rewind_epoch=rewind_epoch)
    pn, prop, settings, schedule, base = resolve_settings(source, **kw)
    pat_name = check_name(str(pn) if name is None else name, "pattern name")  # a plain name: it becomes LIBRARY/NAME.json
    resolve_device(device)
    out_dir = make_dirs(Path(library) if library else P.default_write_dir())  # a bad library: now, not after training
    data = load_dataset(pn.target.data, data_dir, download=download)
    run_root = run_dir(pn, settings, workdir, 0).parent
    todo = [seed for seed in range(seeds) if finished(run_dir(pn, settings, workdir, seed), settings) is None]
    trained_on = subset_train(data, train_subset)
    click.echo(f"{pn}: {prop.about}; ratio {settings.ratio:g}, {settings.preset} preset, width {settings.width:g}, "
               f"{schedule.epochs} epochs, s={settings.sparsity:g} | {trained_on.describe()}", err=True)
    if todo:
        est = estimate_seconds(base, trained_on, schedule, device) * len(todo) * (settings.rounds or 1)
        click.echo(f"estimate: about {fmt_seconds(est)} to train {len(todo)} base net(s)"
                   f"{f' x {settings.rounds} rounds' if settings.rounds else ''} "
                   f"({seeds - len(todo)} reused) in {run_root}", err=True)
    else:
        click.echo(f"all {seeds} proposals are done; reusing them from {run_root}", err=True)
    props = []
    kw.pop("variant")  # now part of the name
    for seed in range(seeds):
        p = propose(str(pn), data, seed=seed, workdir=workdir, device=device,
                    progress=EpochProgress(f"{pn} seed {seed + 1}/{seeds}"), **kw)
        clamp = f", floor clamped layers {[c['layer'] for c in p.info['clamped']]}" if p.info.get("clamped") else ""
        click.echo(f"seed {seed}: base {100 * p.base_acc:.2f}% -> pruned {100 * p.pruned_acc:.2f}% "
                   f"(before fine-tuning){' [reused]' if p.reused else ''}{clamp}", err=True)
        props.append(p)
    command = "archsearch " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["extract"] else \
        f"archsearch extract --from {source}"
    pat = P.extract(props, name=pat_name, command=command)
    shadowed = [e for e in P.entries() if e.name == pat_name and e.path.resolve() != (out_dir / f"{pat_name}.json").resolve()]
    path = P.save_pattern(pat, out_dir / f"{pat_name}.json")
    P.record_last(path)
    click.echo(_stage_table(pat))
    acc = pat["accuracy"]
    click.echo(f"base {100 * acc['base']['mean']:.2f} ± {100 * acc['base']['std']:.2f}%, pruned (no fine-tune) "
               f"{100 * acc['pruned']['mean']:.2f} ± {100 * acc['pruned']['std']:.2f}% over {seeds} seed(s); "
               f"{pat['provenance']['scale']}")
    click.echo(f"wrote {path}")
    for e in shadowed:
        click.echo(f"note: {path} now shadows {e.path} ({e.origin})" if P.search_path()[0].path.resolve() == out_dir.resolve()
                   or e.origin != "user" else f"note: {e.path} ({e.origin}) comes first on the search path", err=True)


@cli.group()
def data():
    """Datasets by name: the built-in ones, and image folders of your own.

    \b
    Examples:
      archsearch data add flowers ~/data/flowers --size 64
      archsearch data list
      archsearch train vgg11-flowers --preset quick
      archsearch data remove flowers
    """


@data.command("add")
@click.argument("name")
@click.argument("path", type=click.Path())
@click.option("--size", type=click.IntRange(8, 1024), required=True,
              help="Image side in pixels the networks see (shorter side resized, centre crop).")
@click.option("--stream/--no-stream", default=None,
              help="Decode from disk while training (ImageNet's augmentation) instead of keeping the decoded set in "
                   "memory. Default: stream when the decoded set would pass 8 GiB.")
@click.option("--nets", type=click.Choice(["cifar", "imagenet"]), default=None,
              help="Which networks its arch names mean: the paper's CIFAR ones (3x3 stem) or its ImageNet ones "
                   "(torchvision's ResNets, the ImageNet VGGs). Default: imagenet from 128 px up.")
@click.option("--replace", is_flag=True, help="Point an already registered name at this folder.")
def data_add(name, path, size, stream, nets, replace):
    """Register the image folder (or .tar of one) at PATH as NAME: train/<class>/ and
    val/<class>/ (or test/<class>/). Targets then use it: vgg16-NAME, slimming-resnet20-NAME.

    In memory (small sets): each image is resized and centre-cropped to SIZE once, then
    trained with pad-and-crop and flips on the device, as CIFAR. Streamed (large sets, or
    --stream): images are decoded by parallel workers while training, with a random resized
    crop to SIZE and a flip (test: resize to SIZE*256/224, centre crop); a streamed .tar must be
    uncompressed. An undecodable image is an error naming the file, never skipped.

    \b
    Examples:
      archsearch data add flowers ~/data/flowers --size 64
      archsearch data add birds ~/data/birds.tar --size 224 --stream
    """
    from .data.folders import add, registry_path

    e = add(name, path, size, replace=replace, stream=stream, nets=nets)
    how = "streamed from disk" if e["stream"] else "in memory"
    click.echo(f"registered {e['name']}: {e['path']}, {len(e['classes'])} classes, {e['train_images']} train / "
               f"{e['test_images']} {e['test_split']} images, at {e['size']}x{e['size']}, {how}, {e['nets']} "
               f"networks (registry: {registry_path()})")


@data.command("list")
def data_list():
    """The built-in datasets and the registered folders."""
    from .data import DATASETS
    from .data.folders import read_registry, registry_path

    for name, info in DATASETS.items():
        click.echo(f"{name:<12} built in   {info.title} ({info.num_classes} classes, {info.input_size}px)")
    for name, e in read_registry().items():
        click.echo(f"{name:<12} registered {e['path']} ({len(e['classes'])} classes, {e['train_images']} train / "
                   f"{e['test_images']} {e['test_split']}, {e['size']}px, {'streamed' if e['stream'] else 'in memory'}, "
                   f"{e['nets']} networks)")
    click.echo(f"(registry: {registry_path()})")


@data.command("remove")
@click.argument("name")
def data_remove(name):
    """Forget a registered folder (its files are left alone)."""
    from .data.folders import remove

    e = remove(name)
    click.echo(f"removed {e['name']} (its files at {e['path']} are untouched)")


@cli.group()
def patterns():
    """The pattern library: list its entries or show one.

    \b
    Examples:
      archsearch patterns list
      archsearch patterns show slimming-vgg16-c10
    """


@patterns.command("list")
def patterns_list():
    """List every pattern on the search path ($ARCHSEARCH_PATTERNS, user, repo, installed).

    \b
    Example:
      archsearch patterns list
    """
    from . import patterns as P

    rows = []
    for e in P.entries():
        try:
            p = P.load_pattern(e.path)
            pv = p["provenance"]
            rows.append((e.name, p["kind"], f"{p['arch']}-{p['data']}", f"{p['ratio']:g}", str(len(pv["seeds"])),
                         f"w{pv['width']:g}/e{pv['epochs']}", f"{100 * p['accuracy']['base']['mean']:.1f}%",
                         f"{e.origin}: {e.path}"))
        except ArchsearchError as err:  # one bad file must not hide the good ones
            click.echo(f"warning: skipped {e.origin} pattern {e.name}: {err}", err=True)
    if not rows:
        click.echo("the library is empty; searched: " + ", ".join(str(d.path) for d in P.search_path()))
        return
    head = ("name", "kind", "target", "ratio", "seeds", "scale", "base acc", "where")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@patterns.command("show")
@click.argument("name")
def patterns_show(name):
    """Show one pattern: per-layer kept widths against the original, per-stage summary, provenance.

    \b
    Example:
      archsearch patterns show slimming-vgg16-c10
    """
    from . import patterns as P

    e = P.find(name)
    p = P.load_pattern(e.path)
    pv = p["provenance"]
    click.echo(f"{e.name} ({e.origin}: {e.path})")
    click.echo(f"{p['kind']} pattern of {pv['method']} on {p['arch']}-{p['data']} at ratio {p['ratio']:g}; "
               f"{len(pv['seeds'])} seed(s) {pv['seeds']}; {pv.get('scale', '')}")
    click.echo(f"base accuracy {100 * p['accuracy']['base']['mean']:.2f} ± {100 * p['accuracy']['base']['std']:.2f}%, "
               f"pruned (no fine-tune) {100 * p['accuracy']['pruned']['mean']:.2f}%")
    click.echo(f"made by: {pv['command']} (archsearch {pv['archsearch_version']}, torch {pv.get('torch_version', '?')}, "
               f"{pv.get('date', '?')})")
    click.echo("")
    if p["kind"] == "depth":
        names = p.get("layer_names") or [str(i + 1) for i in range(len(p["stages"]))]
        click.echo(f"{'block':>10} {'stage':>5} {'kept (share of seeds)':>22}")
        for n, s, m in zip(names, p["stages"], p["layers"]["ratio_mean"]):
            click.echo(f"{n:>10} {s + 1:>5} {m:>22.3f} {_bar(m)}")
    elif p["kind"] == "channels":
        click.echo(f"{'layer':>5} {'stage':>5} {'orig':>5} {'kept':>7} {'ratio':>15}")
        for i, (s, b, m, sd) in enumerate(zip(p["stages"], p["base_widths"], p["layers"]["ratio_mean"],
                                              p["layers"]["ratio_std"])):
            click.echo(f"{i + 1:>5} {s + 1:>5} {b:>5} {m * b:>7.1f} {m:>7.3f} ± {sd:<5.3f} {_bar(m)}")
    else:
        click.echo(f"{'layer':>5} {'stage':>5} {'orig':>5} {'density':>15}")
        for i, (s, b, m, sd) in enumerate(zip(p["stages"], p["base_widths"], p["layers"]["density_mean"],
                                              p["layers"]["density_std"])):
            click.echo(f"{i + 1:>5} {s + 1:>5} {b:>5} {m:>7.3f} ± {sd:<5.3f} {_bar(m)}")
    click.echo("")
    click.echo(_stage_table(p))


def _resolve_pattern(name: str | None) -> tuple[dict, str]:
    from . import patterns as P

    if name:
        e = P.find(name)
        return P.load_pattern(e.path), str(e.path)
    last = P.last_pattern()
    if last is not None:
        return P.load_pattern(last), str(last)
    names = ", ".join(e.name for e in P.entries()) or "none (run `archsearch extract` first)"
    raise ArchsearchError(f"no pattern given and none extracted yet: pass --from NAME (library: {names})")


@cli.command()
@click.option("--to", "target", required=True, help="Target ARCH-DATA, e.g. vgg19-c100.")
@click.option("--from", "source", help="Pattern name or file (default: the one `extract` wrote last).")
@click.option("--budget", "budgets", help="Budgets, e.g. 0.5M,1M,2M (params, or MACs with --by macs).")
@click.option("--fractions", help="Budgets as fractions of the full target [default: 0.05,0.1,0.2,0.4].")
@click.option("--by", default="params", show_default=True, help="params | macs.")
@click.option("--kind", help="channels | sparsity | depth (default: the pattern's kind).")
@click.option("--round", "round_to", type=click.IntRange(1, L.MAX_ROUND), default=1, show_default=True, help="Round widths to multiples of this (8 for tensor cores).")
@click.option("--floor", type=FRACTION, default=0.0, show_default=True, help="Per-layer floor as a fraction of the target width (always >= 1 channel).")
@click.option("--baselines", default="uniform", show_default=True, help="Comma list of uniform, random, erk (sparsity only: random masks at ERK densities), or 'none'.")
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
def transfer(target, source, budgets, fractions, by, kind, round_to, floor, baselines, width, seed, out_dir, do_train,
             kind_sched, seeds, preset, epochs, data_dir, train_subset, device):
    """Build guided or transferred architectures from a pattern, plus baselines, at matched budgets.

    Writes one ArchSpec JSON per (generator, budget) and a table (table.md/.csv/.json).

    \b
    Examples:
      archsearch transfer --from slimming-vgg16-c10 --to vgg19-c100
      archsearch transfer --from slimming-vgg16-c10 --to vgg16-c10 --budget 0.5M,1M --round 8
      archsearch transfer --from magnitude-vgg16-c10 --to vgg19-c100 --kind sparsity
      archsearch transfer --from slimming-vgg16-c10 --to vgg16-c10 --width 0.25 --train --preset fast
    """
    from .compare import (generate_all, markdown_table, parse_budgets, parse_fractions, spec_row, train_all,
                          trained_rows, write_tables)
    from .counting import count
    from .generate import BASELINES, BY, GENERATORS, KINDS
    from .names import parse_target

    tgt = parse_target(target)
    cfg = resolve_config(preset, width=width, epochs=epochs)  # the target's width and, with --train, how to train
    width = cfg.width
    if by not in BY:
        raise ArchsearchError(f"--by must be one of {', '.join(BY)}, got {by!r}")
    if budgets and fractions:
        raise ArchsearchError("give --budget or --fractions, not both")
    bl = [] if baselines.strip() in ("", "none") else [b.strip() for b in baselines.split(",")]
    for b in bl:
        if b not in BASELINES:
            raise ArchsearchError(f"unknown baseline {b!r}; use {', '.join(BASELINES)} or none")
    pattern, ppath = _resolve_pattern(source)
    kind = kind or pattern["kind"]
    if kind not in KINDS:
        raise ArchsearchError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    for b in bl:
        g = GENERATORS[b]
        if kind not in g.kinds:
            raise ArchsearchError(f"{b} is a {'/'.join(g.kinds)} baseline ({g.about}); use it with --kind {g.kinds[0]}")
    if kind != pattern["kind"]:
        raise ArchsearchError(f"pattern {pattern['name']} is a {pattern['kind']} pattern; it cannot generate "
                              f"{kind} (use --kind {pattern['kind']}, or another pattern)")
    full = tgt.base_spec(width)
    fc = count(full)
    full_cost = fc.params if by == "params" else fc.macs
    bs = parse_budgets(budgets) if budgets else [f * full_cost for f in parse_fractions(fractions or "0.05,0.1,0.2,0.4")]
    out = Path(out_dir or f"runs/transfer/{pattern['name']}-to-{target}")
    gens = generate_all(full, target, bs, pattern=pattern, baselines=bl, by=by, sparse=kind == "sparsity",
                        depth=kind == "depth",
                        floor=floor, round_to=round_to, seed=seed, out_dir=out)
    made = [g for g in gens if g.spec is not None]
    failed = [g for g in gens if g.spec is None]
    if not made:
        raise ArchsearchError(f"no architecture could be generated: {failed[0].failure}")
    first = made[0].spec.meta
    click.echo(f"pattern {pattern['name']} ({pattern['kind']}, {pattern['arch']}-{pattern['data']}) -> {target} "
               f"width {width:g}; stage map (target <- source): {first.get('stage_map', 'n/a')}; full target "
               f"{full_cost:,} {by}; {'sparse params count non-zero weights only' if kind == 'sparsity' else ''}",
               err=True)
    rows = [spec_row(g, by) for g in gens]
    cols = ["generator", "budget", "params", "macs", "stages", "error_pct", "spec"] + (["failure"] if failed else [])
    header = (f"# {pattern['name']} -> {target} (width {width:g}, by {by}, kind {kind})\n\n"
              f"pattern: {ppath}\nstage map (target stage <- source stage): {first.get('stage_map', 'identity')}\n"
              f"error_pct: (achieved - budget) / budget; stages: widths per stage "
              f"{'(mean density per stage)' if kind == 'sparsity' else ''}")
    write_tables(rows, cols, out / "table", header)
    click.echo(markdown_table(rows, [c for c in cols if c != "spec"]))
    click.echo(f"wrote {len(made)} specs and table.md/.csv/.json to {out}")

    def done() -> None:
        if failed:
            raise ArchsearchError(f"{len(failed)} of {len(gens)} (generator, budget) could not be generated "
                                  f"(see the table's failure column); first: {failed[0].generator} "
                                  f"{failed[0].budget:,.0f}: {failed[0].failure}")

    if not do_train:
        return done()
    from .data import load_dataset, subset_train
    from .progress import EpochProgress

    data = subset_train(load_dataset(tgt.data, data_dir), train_subset)
    results = train_all(made, data, config=cfg, schedule_kind=kind_sched, seeds=seeds, base=full,
                        out_dir=out / "train", device=device,
                        progress=lambda label: EpochProgress(label), log=lambda m: click.echo(m, err=True))
    trows = trained_rows(results)
    tcols = ["generator", "budget", "params", "macs", "epochs", "seeds", "best_acc", "final_acc"]
    write_tables(trows, tcols + ["best_acc_mean", "best_acc_std", "final_acc_mean", "final_acc_std", "stages"],
                 out / "results", f"# trained from scratch: {target}, {kind_sched}, preset {preset}, {seeds} seeds")
    from .plot import efficiency_figure, write_html

    caption = (f"{pattern['name']} -> {target} width {width:g}; {kind_sched}, preset {preset}, "
               f"{results[0].epochs if kind_sched == 'scratch-e' else 'scaled'} epochs, {seeds} seeds"
               + (f", {train_subset} training images" if train_subset else ""))
    write_html(efficiency_figure(trows, x=by, title=f"parameter efficiency on {target}", caption=caption),
               out / "efficiency.html")
    click.echo(markdown_table(trows, tcols))
    click.echo(f"wrote {out / 'results.md'} and {out / 'efficiency.html'}")
    done()


@cli.command("export")
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
def export_cmd(run_dir, spec_file, weights, out_dir, formats, atol):
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
    from .export import destination, export, parse_formats
    from .spec import ArchSpec
    from .train import load_result

    fmts = parse_formats(formats)
    if run_dir is None and spec_file is None:
        raise ArchsearchError("give RUN_DIR (a run directory with spec.json and model.pt) or --spec FILE")
    rd = Path(run_dir) if run_dir else None
    if rd is not None and not rd.is_dir():
        raise ArchsearchError(f"run directory {rd} does not exist")
    spec_path = Path(spec_file) if spec_file else rd / "spec.json"
    if not spec_path.is_file():
        runs = sorted(str(p.parent) for p in rd.glob("*/spec.json"))[:3] if rd is not None and not spec_file else []
        raise ArchsearchError(f"no spec at {spec_path}" + (f"; runs inside it: {', '.join(runs)}" if runs else
                                                            " (is it a finished run? or pass --spec FILE)"))
    spec = ArchSpec.load(spec_path)
    out = Path(out_dir) if out_dir else (rd / "export" if rd is not None else Path("exports") / spec.name)
    destination(out, rd)  # every check of --out before reading weights or building anything
    if weights is None and rd is not None:
        found = [rd / n for n in ("model.pt", "pruned_model.pt") if (rd / n).is_file()]
        if not found:
            raise ArchsearchError(f"no model.pt in {rd}: the run has not finished (or pass --weights FILE)")
        weights = str(found[0])
    state = load_state(weights, "weights") if weights else None
    about: dict = {"source": {"run_dir": str(rd) if rd else None, "spec": str(spec_path), "weights": weights},
                   "command": "archsearch export " + " ".join(sys.argv[2:])}
    if rd is not None and (rd / "result.json").is_file():
        res = load_result(rd / "result.json")
        about["preprocess"] = res.preprocess
        about["training"] = {"data": res.data, "best_acc": res.best_acc, "final_acc": res.final_acc,
                             "epochs": res.epochs, "seed": res.seed, "date": res.date}
    man = export(spec, state, out, fmts, atol=atol, about=about, run_dir=rd)
    for f, rec in man["formats"].items():
        click.echo(f"{f:12s} {out / rec['file']}  (outputs match, max diff {rec['max_abs_diff']:.2g})")
    if state is None:
        click.echo("note: no weights given: the exported network is untrained (random initialisation)", err=True)
    click.echo(f"wrote {out / 'export.json'}")


@cli.group()
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
@click.option("--x", "x", default="params", show_default=True, help="params | macs.")
@click.option("--png", is_flag=True, help="Also write a PNG next to the HTML (headless Chromium).")
@click.option("--scale", help="With a spec: its scale (e.g. reduced).")
@click.option("--storage", envvar=STORAGE_ENV, callback=storage_option, help=f"With a study name: its storage (default "
              f"${STORAGE_ENV}, else runs/sweeps/STUDY/optuna-journal.log).")
@click.option("--workdir", type=click.Path(file_okay=False), help="The sweep's work directory, if not the default.")
@click.option("--title", help="Title (default: the sweep's).")
def plot_efficiency(source, out_file, x, png, scale, storage, workdir, title):
    """Accuracy (mean ± std over seeds) against params or MACs, per generator, coloured as in
    the paper (uniform red, pruned blue, guided green, transferred brown, random grey).

    STUDY_OR_SPEC is a sweep spec (file or shipped name), a study name, or the directory (or
    results.json) that `archsearch transfer --train` writes.

    \b
    Examples:
      archsearch plot efficiency sweeps/quickstart.toml -o eff.html
      archsearch plot efficiency fig3-vgg16-c10 --scale reduced -o fig3.html --png
      archsearch plot efficiency runs/transfer/slimming-vgg16-c10-to-vgg16-c10 -o eff.html
    """
    from .plot import efficiency_figure, render_png, write_html

    if x not in ("params", "macs"):
        raise ArchsearchError(f"--x must be params or macs, got {x!r}")
    path = Path(source)
    if path.is_dir() and (path / "results.json").exists():
        path = path / "results.json"
    if path.suffix == ".json" and path.is_file():
        from ._io import read_json
        from .schemas import TransferRow, check

        rows = read_json(path, "results")
        if not isinstance(rows, list) or not rows:
            raise ArchsearchError(f"{path} is not a results table of `archsearch transfer --train` (a list of rows)")
        for i, r in enumerate(rows):
            check(TransferRow, r, f"{path} is not a results table of `archsearch transfer --train`: row {i}")
        write_html(efficiency_figure(rows, x=x, title=title or "parameter efficiency", caption=str(path)), out_file)
        if png:
            render_png(out_file, Path(out_file).with_suffix(".png"))
    else:
        from .sweep.cli import efficiency_from_sweep

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
    from . import patterns as P
    from .plot import pattern_figure, write_html

    e = P.find(name)
    out_file = out_file or f"{e.name}.html"
    write_html(pattern_figure(P.load_pattern(e.path)), out_file)
    click.echo(f"wrote {out_file}")


from .sweep.cli import register as _register_sweeps  # noqa: E402

_register_sweeps(cli)


def main() -> None:
    cli(prog_name="archsearch")


if __name__ == "__main__":
    main()
