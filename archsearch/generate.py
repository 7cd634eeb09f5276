"""Generators: pattern + target + budget -> ArchSpec (Liu et al. 2019, Section 5).

- guided / transferred channels: width_i = target width_i x ratio(stage of i) x scale,
- guided / transferred sparsity: density_i = density(stage of i) x scale, masks sampled
  from the stage's 3x3 kernel-position keep map,
- uniform: the same ratio (or density) everywhere (the paper's red curves),
- random: per-stage ratios drawn from a Dirichlet around uniform, with a seed,
- shuffled: the pruned net's own per-layer densities, weights placed at random in each layer
  (a sanity check), reinit: the pruned net's own masks (its proposal's, from its run folder)
  with a fresh initialisation, erk: Erdos-Renyi-Kernel densities.
"Guided" is the transfer generator with source = target, labelled as such.

One budget solver (`archsearch.budget`) finds the scale so that params (or MACs) match the
budget; this module says which values each generator scales (the registry `GENERATORS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .archs import get_family
from .budget import Solved, as_budget, channel_spec, conv_stages, depth_spec, sparse_spec, verify_latency
from .errors import ArchsearchError
from .measures import Budget
from .names import parse_target
from .spec import ArchSpec


def stage_map(n_source: int, n_target: int) -> list[int]:
    """Target stage -> source stage. Equal counts map one to one (stages are feature-map
    sizes); otherwise each target stage takes the source stage at the same relative depth
    (the centre of the target stage, as a fraction of the network's stages)."""
    if n_source == n_target:
        return list(range(n_target))
    return [min(n_source - 1, int((k + 0.5) / n_target * n_source)) for k in range(n_target)]


# -- the generators ----------------------------------------------------------------------------
def pattern_stage_values(pattern: dict, target: ArchSpec) -> tuple[list[float], list[int], list | None]:
    """The pattern's per-stage values mapped onto the target's stages: (values, mapping, kernel maps)."""
    key = "density_mean" if pattern["kind"] == "sparsity" else "ratio_mean"
    src = pattern["stage"][key]
    if pattern["kind"] == "sparsity":
        mapping = stage_map(len(src), conv_stages(target))
    else:
        # conv stages onto conv stages; a classifier's channel stage (the ImageNet VGG-11's, past
        # its last conv) takes the source's classifier stage, or else the source's last conv stage
        n_src, n_tgt = _pattern_conv_stages(pattern, len(src)), conv_stages(target)
        mapping = stage_map(n_src, n_tgt) + [min(len(src) - 1, n_src + k) if n_src < len(src) else n_src - 1
                                             for k in range(target.num_stages - n_tgt)]
    vals = [float(src[m]) for m in mapping]
    maps = None
    if pattern["kind"] == "sparsity":
        maps = [pattern["stage"]["kernel_keep_mean"][m] for m in mapping]
    return vals, mapping, maps


def _pattern_conv_stages(pattern: dict, n: int) -> int:
    """How many of a channel pattern's `n` stages are its net's conv stages (the rest: classifier
    groups). Its arch and data name the net; a net this machine cannot name has no classifier stage."""
    try:
        return min(n, conv_stages(parse_target(f"{pattern['arch']}-{pattern['data']}").base_spec(0.25)))
    except (ArchsearchError, KeyError):
        return n


def pattern_layer_values(pattern: dict, target: ArchSpec) -> tuple[list[float], list | None]:
    """The pruned architecture itself, layer by layer (mean over the pattern's seeds): per-layer
    kept ratios, or per-layer densities and 3x3 keep maps. Only for the pattern's own arch."""
    convs = get_family(target.family).convs(target)
    if pattern["kind"] == "depth":
        blocks = [b for b in get_family(target.family).block_layout(target.depth) if b.removable]
        if pattern["arch"] != target.name or list(pattern.get("layer_names") or []) != [b.name for b in blocks]:
            raise ArchsearchError(f"the pruned generator rebuilds {pattern['name']}'s own {pattern['arch']}; "
                                  f"the target is {target.name} (use guided or transferred for other targets)")
        return [float(v) for v in pattern["layers"]["ratio_mean"]], None
    widths = target.widths if pattern["kind"] == "channels" else [c.cout for c in convs]
    if pattern["arch"] != target.name or list(pattern["base_widths"]) != list(widths):
        raise ArchsearchError(f"the pruned generator rebuilds {pattern['name']}'s own {pattern['arch']} "
                              f"(widths {pattern['base_widths']}); the target is {target.name} with widths "
                              f"{widths} (use guided or transferred for other targets, or match --width)")
    if pattern["kind"] == "channels":
        return [float(v) for v in pattern["layers"]["ratio_mean"]], None
    per_seed = [p.get("layer_kernel_keep") for p in pattern.get("proposals", [])]
    if per_seed and all(m is not None for m in per_seed):
        # per conv: the mean over seeds of its keep map (None for a 1x1 conv: density alone)
        maps = [None if any(m[i] is None for m in per_seed) else
                np.mean([np.asarray(m[i], dtype=float) for m in per_seed], axis=0).tolist()
                for i in range(len(per_seed[0]))]
    else:  # a pattern without per-layer maps: each layer takes its stage's map
        maps = [pattern["stage"]["kernel_keep_mean"][c.stage] for c in convs]
    return [float(v) for v in pattern["layers"]["density_mean"]], maps


def generator_label(pattern: dict, target_arch: str, target_data: str) -> str:
    """'guided' when the pattern comes from the target itself, else 'transferred'."""
    same = pattern["arch"] == target_arch and pattern["data"] == target_data
    return "guided" if same else "transferred"


def erk_scores(target: ArchSpec) -> list[float]:
    """Erdos-Renyi-Kernel (Evci et al. 2020, RigL): density of conv l proportional to
    (n_in + n_out + k_h + k_w) / (n_in x n_out x k_h x k_w). The scale is solved to the
    budget by `sparse_spec`, whose min(1, scale x score) caps dense layers and re-solves the
    scale for the rest, as RigL's ERK does."""
    return [(c.cin + c.cout + 2 * c.k) / (c.cin * c.cout * c.k * c.k) for c in get_family(target.family).convs(target)]


def random_stage_ratios(n: int, seed: int, concentration: float = 10.0) -> list[float]:
    """Per-stage ratios from a Dirichlet around uniform (mean 1 per stage); a stronger null
    than uniform, which the paper did not have. Larger concentration = closer to uniform."""
    rng = np.random.default_rng(seed)
    return list(rng.dirichlet([concentration] * n) * n)


# -- the generators: one registry entry each ---------------------------------------------------------
KINDS = ("channels", "sparsity", "depth")


@dataclass(frozen=True)
class Generator:
    """One way to build a net at a budget. `values(target, pattern, n, sparse, depth, seed)`
    gives per-stage (or, with `per_layer`, per-layer) values, keep maps for sparse nets and the
    meta it records; `generate` scales them to the budget. What callers need is here too: the
    plot colour (the paper's, where it has one), which pattern it reads (`role`: a sweep's
    patterns.own, proposed on the target, or patterns.transferred; None: no pattern), the kinds
    it builds, whether `transfer --baselines` offers it. The registry's order is the order of
    tables and legends."""

    name: str
    colour: str
    about: str
    values: Callable[..., tuple[list, list | None, bool, dict]]
    role: str | None = None         # "own" | "transferred": the pattern it builds from
    kinds: tuple[str, ...] = KINDS
    baseline: bool = False          # offered by `transfer --baselines` (no pattern of its own)
    sanity: bool = False            # a sanity-check arm of the pattern's own net: also offered by `--baselines`
    picks_blocks: bool = True       # in a depth pattern's nets: chooses blocks (uniform keeps every block)
    exact: bool = False             # channel widths solved exactly (one scale, no per-stage rounding drift)
    seeded: bool = False            # its values depend on the seed (sparse nets' masks always do)
    masks: Callable[..., tuple] | None = None  # (pattern, target, seed) -> (masks, record): masks kept, not drawn

    @property
    def needs_pattern(self) -> bool:
        return self.role is not None


def _pattern_layers(target, pattern, n, sparse, depth, seed):
    vals, maps = pattern_layer_values(pattern, target)
    return vals, maps, True, {"pattern": pattern["name"], "source": f"{pattern['arch']}-{pattern['data']}",
                              "layer_values": vals}


def _pattern_stages(target, pattern, n, sparse, depth, seed):
    vals, mapping, maps = pattern_stage_values(pattern, target)
    return vals, maps, False, {"pattern": pattern["name"], "stage_map": mapping,
                               "source": f"{pattern['arch']}-{pattern['data']}", "stage_values": vals}


def _uniform(target, pattern, n, sparse, depth, seed):
    return [1.0] * n, ([np.ones((3, 3)).tolist()] * n if sparse else None), False, {}


def _random(target, pattern, n, sparse, depth, seed):
    # blocks: a share kept per stage, uniform in [0, 1]; widths and densities: a Dirichlet around uniform
    vals = list(np.random.default_rng(seed).uniform(0.0, 1.0, n)) if depth else random_stage_ratios(n, seed)
    return vals, ([np.ones((3, 3)).tolist()] * n if sparse else None), False, {"stage_values": vals}


def _shuffled(target, pattern, n, sparse, depth, seed):
    vals, _ = pattern_layer_values(pattern, target)  # the pruned net's densities; its positions dropped
    return vals, [None] * len(vals), True, {"pattern": pattern["name"], "source": f"{pattern['arch']}-{pattern['data']}",
                                            "layer_values": vals}


def proposal_masks(pattern: dict, target: ArchSpec, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """The masks of the pattern's proposal for `seed` (its own seed where the pattern has it,
    else seed mod the proposals), read from the proposal's run folder (`spec.json`), and that
    proposal's record; refused in one line where the run folder is not on this machine or the
    masks do not fit `target`."""
    props = pattern.get("proposals") or []
    if not props:
        raise ArchsearchError(f"pattern {pattern['name']} records no proposals: reinit needs a proposal's own masks")
    prop = next((p for p in props if p.get("seed") == seed), props[seed % len(props)])
    path = Path(str(prop.get("run", ""))) / "spec.json"
    if not path.is_file():
        raise ArchsearchError(f"reinit keeps the masks of {pattern['name']}'s seed-{prop.get('seed')} proposal, but its "
                              f"run folder {prop.get('run')!r} is not on this machine (extract the pattern here, or "
                              "use shuffled: the same per-layer densities, weights placed at random)")
    spec = ArchSpec.load(path)
    shapes = {c.name: c.shape for c in get_family(target.family).convs(target)}
    masks = spec.masks or {}
    if spec.family != target.family or {k: tuple(m.shape) for k, m in masks.items()} != shapes:
        raise ArchsearchError(f"reinit keeps the masks of a proposal on {pattern['arch']}-{pattern['data']}: they do "
                              f"not fit {target.name} at these widths (reinit applies on the pattern's own target)")
    return masks, prop


def _reinit(target, pattern, n, sparse, depth, seed):
    masks, prop = proposal_masks(pattern, target, seed)
    names = [c.name for c in get_family(target.family).convs(target)]
    vals = [float(masks[k].mean()) for k in names]
    return vals, [None] * len(vals), True, {"pattern": pattern["name"], "source": f"{pattern['arch']}-{pattern['data']}",
                                            "masks_of": {"seed": prop.get("seed"), "run": prop.get("run")},
                                            "layer_values": vals}


def _erk(target, pattern, n, sparse, depth, seed):
    vals = erk_scores(target)
    return vals, [None] * len(vals), True, {}  # every kernel position alike: uniformly random within a layer


GENERATORS: dict[str, Generator] = {g.name: g for g in (
    Generator("pruned", "#1f77b4", "the pruner's own per-layer architecture, scaled to the budget",
              _pattern_layers, role="own"),
    Generator("guided", "#2ca02c", "the pattern's per-stage averages, from the target itself (Sec. 5)",
              _pattern_stages, role="own"),
    Generator("transferred", "#8c564b", "the pattern's per-stage averages, from another net or data set (Sec. 5)",
              _pattern_stages, role="transferred"),
    Generator("uniform", "#d62728", "every stage alike (uniform pruning)", _uniform, baseline=True,
              picks_blocks=False, exact=True),
    Generator("random", "#7f7f7f", "per-stage ratios from a Dirichlet around uniform", _random, baseline=True,
              seeded=True),
    Generator("shuffled", "#bcbd22", "the pruned net's own per-layer densities, each layer's weights placed at "
              "random (the layer-wise shuffle sanity check: Su et al. 2020, Frankle et al. 2021)", _shuffled,
              role="own", kinds=("sparsity",), sanity=True),
    Generator("reinit", "#17becf", "the pruned net's own masks with a fresh initialisation (the reinit sanity "
              "check: Su et al. 2020, Frankle et al. 2021; a table's Scratch-E); at another budget each layer's "
              "mask is thinned or grown at random to the solved density", _reinit, role="own", kinds=("sparsity",),
              seeded=True, sanity=True, masks=proposal_masks),
    Generator("erk", "#9467bd", "random masks at Erdos-Renyi-Kernel densities (RigL)", _erk, baseline=True,
              kinds=("sparsity",)),
)}
BASELINES = tuple(n for n, g in GENERATORS.items() if g.baseline)
OFFERED = tuple(n for n, g in GENERATORS.items() if g.baseline or g.sanity)  # what `transfer --baselines` takes


def split_arm(name: str) -> tuple[str, str | None]:
    """A sweep's arm: 'transferred:synflow-vgg16-c10' -> ('transferred', 'synflow-vgg16-c10'),
    a pattern-reading generator on one named pattern of the sweep's several of its kind; a bare
    generator name -> (name, None), on its kind's one pattern."""
    gen, sep, pattern = str(name).partition(":")
    return gen, (pattern if sep else None)


def arm_generator(name: str) -> Generator:
    """The generator of a sweep arm (`split_arm`); an arm naming a pattern needs a generator that reads one."""
    gen, pattern = split_arm(name)
    g = get_generator(gen)
    if pattern is not None and (not g.needs_pattern or not pattern):
        raise ArchsearchError(f"arm {name!r}: only a generator that reads a pattern names one "
                              f"({', '.join(n for n, x in GENERATORS.items() if x.needs_pattern)})")
    return g


def get_generator(name: str) -> Generator:
    try:
        return GENERATORS[name]
    except (KeyError, TypeError):
        raise ArchsearchError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}") from None


def generate(kind: str, target: ArchSpec, budget: float | Budget, *, pattern: dict | None = None,
             by: str = "params", sparse: bool = False, floor: float = 0.0, round_to: int = 1, seed: int = 0,
             tol: float = 0.01, target_name: str = "", depth: bool = False, table=None) -> Solved:
    """One architecture of generator `kind` (`GENERATORS`) at `budget` (a `Budget`, or a number
    bounding `by`). `depth`: a depth pattern's blocks (per stage share kept, or the pruned net's
    own blocks), then a uniform width to the budget; its uniform baseline keeps every block.
    `table`: the latency table a latency bound is estimated with (`archsearch.latency`); the
    estimate is the solver's, and `budget.verify_latency` checks it end to end."""
    gen = get_generator(kind)
    budget = as_budget(budget, by)
    if not 0 <= floor < 1:
        raise ArchsearchError(f"floor must be a fraction in [0, 1), got {floor}")
    want = "sparsity" if sparse else "depth" if depth else "channels"
    if want not in gen.kinds:
        raise ArchsearchError(f"{kind} is a {'/'.join(gen.kinds)} {'baseline' if gen.baseline else 'generator'} "
                              f"({gen.about}); use it with --kind {gen.kinds[0]}")
    if gen.needs_pattern:
        if pattern is None:
            raise ArchsearchError(f"the {kind} generator needs a pattern")
        if pattern["kind"] != want:
            raise ArchsearchError(f"pattern {pattern['name']} is a {pattern['kind']} pattern; "
                                  f"it cannot be used as {want} (use --kind {pattern['kind']})")
    n = conv_stages(target) if sparse else target.num_stages
    vals, maps, per_layer, extra = gen.values(target, pattern, n, sparse, depth, seed)
    one = budget.single
    meta: dict = {"origin": kind, "budget": one[1] if one else budget.to_dict(), "by": one[0] if one else
                  "+".join(budget.measures), "target": target_name, "seed": seed, **extra}
    if depth and gen.picks_blocks:
        return depth_spec(target, vals, budget, per_block=per_layer, floor=floor, round_to=round_to, tol=tol,
                          meta=meta, table=table)
    if sparse:
        own = gen.masks(pattern, target, seed)[0] if gen.masks else None
        return sparse_spec(target, vals, maps, budget, seed=seed, tol=tol, meta=meta, per_layer=per_layer,
                           table=table, masks=own)
    return channel_spec(target, vals, budget, floor=floor, round_to=round_to, tol=tol, meta=meta,
                        per_layer=per_layer, exact=gen.exact, table=table)


def generate_checked(kind: str, target: ArchSpec, budget: Budget, *, table=None, sparse: bool = False,
                     **kw) -> Solved:
    """`generate`, with a latency bound that shapes the net (not a sparse net's: it runs at its
    dense net's speed) checked end to end (`budget.verify_latency`, under `table.measure`)."""
    def make(b: Budget) -> Solved:
        return generate(kind, target, b, sparse=sparse, table=table, **kw)

    return verify_latency(make, budget, table) if "latency" in budget.measures and not sparse else make(budget)


__all__ = ["BASELINES", "GENERATORS", "KINDS", "OFFERED", "arm_generator", "split_arm", "Generator", "erk_scores", "generate", "generate_checked", "generator_label",
           "get_generator", "pattern_layer_values", "pattern_stage_values", "random_stage_ratios", "stage_map"]
