"""A pattern as `archsearch extract` makes it: a pruner's proposals over seeds (run, reused or
resumed in the work folder), summarised into a pattern and saved to the library.

`prepare` checks every setting, the pattern's name, the device and the library folder, and
loads the data, before any training; `propose_seeds` trains; `save` writes the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import patterns as P
from .._io import check_name, make_dirs
from ..data import AnyDataset, load_dataset, subset_train
from ..progress import EpochProgress, fmt_seconds
from ..propose import Proposal, finished, propose, resolve_settings, run_dir
from ..train import estimate_seconds, resolve_device


@dataclass
class Extraction:
    source: str                     # the proposer spec as given, e.g. slimming-vgg16-c10
    seeds: int
    workdir: str
    device: str
    settings: dict                  # the proposer's keyword settings, as `propose` takes them
    pattern_name: str
    library: Path                   # the folder the pattern is written to
    data: AnyDataset
    header: list[str] = field(default_factory=list)  # what will be trained or reused, and how long it takes


def prepare(source: str, *, seeds: int = 3, workdir: str = "runs/proposals", name: str | None = None,
            library: str | None = None, data_dir: str | None = None, download: bool = True, device: str = "auto",
            **settings) -> Extraction:
    """`settings`: ratio, preset, width, epochs, sparsity, floor, train_subset, variant,
    stage_ratios, skip, rounds, rewind_epoch (None: the method's or the preset's)."""
    pn, prop, resolved, schedule, base = resolve_settings(source, **settings)
    pat_name = check_name(str(pn) if name is None else name, "pattern name")  # a plain name: it becomes LIBRARY/NAME.json
    resolve_device(device)
    out_dir = make_dirs(Path(library) if library else P.default_write_dir())  # a bad library: now, not after training
    data = load_dataset(pn.target.data, data_dir, download=download)
    run_root = run_dir(pn, resolved, workdir, 0).parent
    todo = [seed for seed in range(seeds) if finished(run_dir(pn, resolved, workdir, seed), resolved) is None]
    trained_on = subset_train(data, resolved.train_subset)
    training = (f"{schedule.epochs} epochs, s={resolved.sparsity:g}" if prop.trains
                else "scored at initialisation, no training")
    header = [f"{pn}: {prop.about}; ratio {resolved.ratio:g}, {resolved.preset} preset, width {resolved.width:g}, "
              f"{training} | {trained_on.describe()}"]
    if todo and not prop.trains:  # no estimate to make (it costs a timed training step)
        header.append(f"{len(todo)} seed(s) to score ({seeds - len(todo)} reused) in {run_root}")
    elif todo:
        est = estimate_seconds(base, trained_on, schedule, device) * len(todo) * (resolved.rounds or 1)
        header.append(f"estimate: about {fmt_seconds(est)} to train {len(todo)} base net(s)"
                      f"{f' x {resolved.rounds} rounds' if resolved.rounds else ''} "
                      f"({seeds - len(todo)} reused) in {run_root}")
    else:
        header.append(f"all {seeds} proposals are done; reusing them from {run_root}")
    settings.pop("variant")  # now part of the name
    return Extraction(str(pn), seeds, workdir, device, settings, pat_name, out_dir, data, header)


def propose_seeds(x: Extraction, log: Callable[[str], None]) -> list[Proposal]:
    """Each seed's proposal, trained, resumed or reused; `log` gets one line per seed."""
    props = []
    for seed in range(x.seeds):
        p = propose(x.source, x.data, seed=seed, workdir=x.workdir, device=x.device,
                    progress=EpochProgress(f"{x.source} seed {seed + 1}/{x.seeds}"), **x.settings)
        clamp = f", floor clamped layers {[c['layer'] for c in p.info['clamped']]}" if p.info.get("clamped") else ""
        tested = (f"base {100 * p.base_acc:.2f}% -> pruned {100 * p.pruned_acc:.2f}% (before fine-tuning)"
                  if p.pruned_acc is not None else "scored at initialisation (untrained: not tested)")
        log(f"seed {seed}: {tested}{' [reused]' if p.reused else ''}{clamp}")
        props.append(p)
    return props


@dataclass
class Saved:
    pattern: dict
    path: Path
    notes: list[str]                # where the new pattern shadows, or is shadowed by, another of its name


def save(x: Extraction, props: list[Proposal], command: str) -> Saved:
    """The proposals' pattern, written to the library and recorded as the last one extracted."""
    pat = P.extract(props, name=x.pattern_name, command=command)
    target = x.library / f"{x.pattern_name}.json"
    shadowed = [e for e in P.entries() if e.name == x.pattern_name and e.path.resolve() != target.resolve()]
    path = P.save_pattern(pat, target)
    P.record_last(path)
    first = P.search_path()[0].path.resolve() == x.library.resolve()
    notes = [f"note: {path} now shadows {e.path} ({e.origin})" if first or e.origin != "user" else
             f"note: {e.path} ({e.origin}) comes first on the search path" for e in shadowed]
    return Saved(pat, path, notes)
