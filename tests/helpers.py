"""Shared test helpers (not fixtures)."""

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    """`archsearch ARGS` in this process (click's runner): its exit code and output."""
    from click.testing import CliRunner

    from archsearch.cli import cli

    return CliRunner().invoke(cli, list(args), prog_name="archsearch")


def load_script(name: str):
    """A script of benchmarks/ (not a package) loaded as a module, for its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def random_masks(spec, density=0.3, seed=0):
    from archsearch.archs import get_family

    rng = np.random.default_rng(seed)
    return {c.name: rng.random(c.shape) < density for c in get_family(spec.family).convs(spec)}


def make_pattern(kind="channels", arch="vgg16", data="c10", name=None):
    """A valid pattern dict (as `extract` writes) with a clear stage order."""
    from archsearch.archs import base_spec, get_family
    from archsearch.patterns import extract
    from archsearch.propose import Proposal
    from archsearch.spec import ArchSpec

    base = base_spec(arch, 10 if data != "c100" else 100, width=0.25)
    ratios = [0.9, 0.8, 0.5, 0.2, 0.3]
    widths = [max(1, int(w * ratios[s])) for w, s in zip(base.widths, base.stages)]
    masks = None
    if kind == "sparsity":
        rng = np.random.default_rng(0)
        dens = [0.6, 0.5, 0.3, 0.1, 0.1]
        masks = {c.name: rng.random(c.shape) < dens[c.stage] for c in get_family("vgg").convs(base)}
        widths = base.widths
    spec = ArchSpec(family="vgg", depth=base.depth, widths=widths, stages=base.stages, num_classes=base.num_classes,
                    base_widths=base.widths, masks=masks)
    method = "slimming" if kind == "channels" else "magnitude"
    run = "r"
    if masks is not None:  # the proposal's run folder, where `reinit` reads its masks
        import tempfile
        from pathlib import Path

        run = tempfile.mkdtemp(prefix="archsearch-test-proposal-")
        spec.save(Path(run) / "spec.json")
    settings = {"proposer": f"{method}-{arch}-{data}", "ratio": 0.5, "preset": "tiny", "width": 0.25, "floor": 0.0,
                "sparsity": 0.0, "schedule": {"epochs": 3, "batch_size": 64, "lr": 0.05}}
    p = Proposal(proposer=f"{method}-{arch}-{data}", method=method, kind=kind, seed=0, settings=settings, spec=spec,
                 base_spec=base, base_acc=0.9, base_final_acc=0.9, pruned_acc=0.5,
                 info={"threshold": 0.1, "clamped": [],
                       **({"kernel_keep": [m.reshape(-1, 3, 3).mean(0).tolist() for m in masks.values()]} if masks else {})},
                 run_dir=run, base_epochs=3, base_seconds=1.0,
                 device="cpu", torch_version="t", archsearch_version="v", date="2026-01-01")
    return extract([p], name=name, command="test")


def guided_diverges(monkeypatch):
    """Make every training of a `guided` net diverge (the others train for real)."""
    from archsearch import train as T

    real = T.train

    def diverge(spec, *a, **k):
        if spec.meta.get("generator") == "guided":
            raise T.Diverged("training diverged at epoch 1 (loss nan); try a lower lr")
        return real(spec, *a, **k)

    monkeypatch.setattr(T, "train", diverge)
    return real


def prepared_study(spec_path, wd, storage=None):
    """(spec, plan, study) of a sweep spec file, its study created in `storage` (default: wd's journal)."""
    from archsearch.sweep.plan import build_plan, create_or_load, open_run_storage, run_cfg_of
    from archsearch.sweep.spec import load_spec
    from archsearch.sweep.storage import default_storage

    spec = load_spec(spec_path)
    plan = build_plan(spec, wd, device="cpu", log=lambda m: None)
    study, plan = create_or_load(open_run_storage(storage or default_storage(wd), run_cfg_of(spec)), plan)
    return spec, plan, study


def narrowed_at_random(spec, seed=0):
    """The built `spec` in eval mode with non-trivial BN statistics and affine parameters (2d and
    1d), a random keep mask per channel group (about 60%, never empty) and the narrowed net
    built from it: (family, wide model, keep masks, narrowed spec, its state, narrowed model)."""
    import torch
    from torch import nn

    from archsearch.archs import build, get_family

    torch.manual_seed(seed)
    fam = get_family(spec.family)
    model = build(spec).eval()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.2, 1.0)
            m.bias.data.uniform_(-0.2, 0.2)
    rng = np.random.default_rng(seed)
    keep = [rng.random(w) < 0.6 for w in spec.widths]
    for k in keep:
        k[rng.integers(len(k))] = True
    small_spec, state = fam.narrow(model, spec, keep)
    small = build(small_spec).eval()
    small.load_state_dict(state)
    return fam, model, keep, small_spec, state, small


def check_generator_at_budget(name, target, kind, budget, pattern, where=()):
    """Generator `name` builds a `kind` net of `target` at `budget` (non-zero params for sparse
    nets) within 1%, recording its origin, or refuses a kind it does not build in one line.
    Returns the built spec, or None where nothing is built."""
    import pytest

    from archsearch.counting import count
    from archsearch.errors import ArchsearchError
    from archsearch.generate import GENERATORS, generate

    g = GENERATORS[name]
    kw = {"sparse": kind == "sparsity", "depth": kind == "depth", "seed": 1,
          "pattern": pattern if g.needs_pattern else None}
    if kind not in g.kinds:
        with pytest.raises(ArchsearchError, match=f"use it with --kind {g.kinds[0]}"):
            generate(name, target, budget, **kw)
        return None
    if name == "pruned" and kind == "depth":
        return None  # a depth pattern's own blocks: tested with a real proposal in test_propose
    s = generate(name, target, budget, **kw)
    c = count(s.spec)
    got = c.params_nonzero if kind == "sparsity" else c.params
    assert abs(got - budget) / budget <= 0.01, (*where, name, kind, got, budget)
    assert s.spec.meta["origin"] == name
    return s.spec
