"""Data-aware channel selection: the one helper that reads training activations, and the
reconstruction steps of ThiNet (Luo et al. 2017) and channel pruning by LASSO regression
(He et al. 2017).

Both judge a channel group by its *consumer*: the one module that reads the group's
channels (the next conv, or the classifier for the last group; `Family.wires`). With X the
consumer's input on sampled training images and W its weight, the consumer's output at one
position is the sum over input channels c of the contribution x_c = <W[o, c], patch_c>. A
channel is dispensable when removing it changes that sum little.

`consumer_inputs` runs the net over a fixed, seeded sample of training images (no
augmentation) and keeps consumers' inputs (one forward pre-hook each). Groups are pruned
one after another, in the family's order (input to output), as both papers do: each group
is judged on the activations of the net with the groups before it already pruned (their
readers' weights replaced, the removed channels read by nothing), so that errors do not
pile up unseen. He et al. reconstruct the *original* net's outputs from the partly pruned
net's inputs (their Sec. 3.3, "to avoid accumulated error"); ThiNet reconstructs each
layer's own current output. Neither fine-tunes between layers here (ThiNet does, a
little): the proposal is the architecture, which is what these runs propose.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..archs import build, get_family
from ..data import AnyDataset as Dataset
from ..errors import ArchsearchError
from ..spec import ArchSpec
from .allocation import PredefinedRatios, kept_count


def consumers(base: ArchSpec) -> list[str | None]:
    """For each channel group, the one module that reads its channels (its input dim's group);
    None where several read them (a residual stream: the block convs and the shortcut) or none."""
    fam = get_family(base.family)
    wires = fam.wires(base)
    out = []
    for g in fam.groups(base):
        # a BN (in and out the same group) carries the channels; it does not read them
        readers = [m for m, (cout, cin) in wires.items() if cin == g.name and cout != g.name]
        out.append(readers[0] if len(readers) == 1 else None)
    return out


def readable(base: ArchSpec) -> list[bool]:
    """Which channel groups a reconstruction method can select: those with one reader that
    reads one input per channel (a plain conv or a linear layer on the pooled vector). The
    others (residual streams, a flattened map) keep their width, as ThiNet and channel
    pruning leave a ResNet's residual stream alone."""
    with torch.device("meta"):  # shapes only: no weights are allocated or initialised
        modules = dict(build(base).named_modules())
    ok = []
    for w, reader in zip(base.widths, consumers(base)):
        layer = modules.get(reader) if reader is not None else None
        cin = layer.in_features if isinstance(layer, nn.Linear) else getattr(layer, "in_channels", None)
        ok.append(layer is not None and cin == w and getattr(layer, "groups", 1) == 1)
    return ok


def readable_only(method: str, base: ArchSpec, ratios: list[float]) -> list[float]:
    """The per-layer ratios of a reconstruction method: they apply to the groups with a single
    reader (`readable`); the rest keep every channel."""
    out = [r if ok else 0.0 for r, ok in zip(ratios, readable(base))]
    if not any(out):
        raise ArchsearchError(f"{method}: the groups these ratios prune have no single reader in {base.name}; "
                              "nothing would be pruned")
    return out


class ReaderAllocation:
    """Mixin of the reconstruction methods (ThiNet, regression): predefined ratios on the
    groups with a single reader, and no family without one."""

    allocation = PredefinedRatios(restrict=readable_only)

    def check_family(self, base: ArchSpec) -> None:
        super().check_family(base)  # type: ignore[misc]
        if not any(readable(base)):
            raise ArchsearchError(f"{self.name} does not apply to {base.name}: none of its channel groups has a "  # type: ignore[attr-defined]
                                  "single reader whose outputs could be reconstructed")


def check_reader(base: ArchSpec, group: str, reader: str, layer: nn.Module, width: int) -> None:
    """The reader's input channels are the group's channels, one to one."""
    cin = layer.in_features if isinstance(layer, nn.Linear) else getattr(layer, "in_channels", None)
    if cin != width:
        raise ArchsearchError(f"{base.name}: {reader} reads {cin} inputs for group {group} of {width} channels; "
                              "reconstruction-based selection needs one input per channel")


@torch.no_grad()
def sample_images(data: Dataset, n_images: int, seed: int = 0) -> torch.Tensor:
    """`n_images` training images drawn with `seed`, normalised, without augmentation (CPU)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(data.n_train, size=min(n_images, data.n_train), replace=False))
    loader = data.loader("train", 128, train=False, device=torch.device("cpu"), indices=idx)
    return torch.cat([xb for xb, _ in loader])


def consumer_inputs(model: nn.Module, base: ArchSpec, data: Dataset | torch.Tensor, n_images: int = 0,
                    seed: int = 0, names: set[str] | None = None) -> dict[str, torch.Tensor]:
    """Each consumer's input (or those in `names`) on `n_images` training images drawn with
    `seed`, or on the given images (eval mode, CPU)."""
    names = {n for n in consumers(base) if n is not None} if names is None else names
    modules = dict(model.named_modules())
    images = data if isinstance(data, torch.Tensor) else sample_images(data, n_images, seed)
    loader = images.split(128)
    grabbed: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [modules[n].register_forward_pre_hook(lambda m, inp, n=n: grabbed[n].append(inp[0].detach().clone()))
               for n in names]
    was_training = model.training
    model.eval()
    try:
        for xb in loader:
            model(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: torch.cat(v) for n, v in grabbed.items()}


def patches(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The consumer's receptive fields: (N, L, C, k*k) for a conv (L output positions), (N, 1, C, 1)
    for a linear layer."""
    if isinstance(layer, nn.Linear):
        return x.reshape(x.shape[0], 1, -1, 1)
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
        raise ArchsearchError(f"cannot read the receptive fields of {type(layer).__name__}")
    cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    n, _, L = cols.shape
    return cols.reshape(n, x.shape[1], -1, L).permute(0, 3, 1, 2)  # N, L, C, k*k


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The consumer's weight as (out, C, k*k)."""
    w = layer.weight.detach().float()
    return w.reshape(w.shape[0], w.shape[1], -1)


def _sample_fields(x: torch.Tensor, layer: nn.Module, per_image: int, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """`per_image` random receptive fields of each image, (S, C, k*k), the weight (out, C, k*k)
    and the generator (for drawing more with the same seed)."""
    p = patches(x.float(), layer)
    n, L = p.shape[:2]
    gen = torch.Generator().manual_seed(seed)
    img = torch.arange(n).repeat_interleave(per_image)
    pos = torch.randint(L, (n * per_image,), generator=gen)
    return p[img, pos], weight_matrix(layer), gen


def sampled_contributions(x: torch.Tensor, layer: nn.Module, per_image: int, seed: int) -> torch.Tensor:
    """ThiNet's samples: per image, `per_image` random (position, output channel) pairs; each
    row holds every input channel's contribution to that output value: (samples, C)."""
    fields, w, gen = _sample_fields(x, layer, per_image, seed)
    out = torch.randint(w.shape[0], (len(fields),), generator=gen)
    return (fields * w[out]).sum(-1)  # (S, C, k*k) -> (S, C)


def thinet_select(contrib: torch.Tensor, n_keep: int) -> tuple[np.ndarray, torch.Tensor]:
    """ThiNet's greedy step (Luo et al. 2017, Alg. 1): grow the removed set T one channel at a
    time, each time adding the channel that keeps ||sum_{c in T} x_c||^2 smallest; then the
    least-squares scales w minimising ||y - X_kept w||^2 with y the full sum (Eq. 6).
    Returns the keep mask and the scale of each kept channel (in channel order)."""
    s, c = contrib.shape
    removed = torch.zeros(c, dtype=torch.bool)
    acc = torch.zeros(s, dtype=contrib.dtype)
    for _ in range(c - n_keep):
        err = ((acc[:, None] + contrib) ** 2).sum(0)
        err[removed] = float("inf")
        j = int(torch.argmin(err))
        removed[j] = True
        acc += contrib[:, j]
    keep = ~removed
    y = contrib.sum(1, keepdim=True)
    scale = torch.linalg.lstsq(contrib[:, keep].double(), y.double()).solution.squeeze(1).float()
    return keep.numpy(), scale


def full_contributions(x: torch.Tensor, layer: nn.Module, per_image: int, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """He et al.'s samples: per image, `per_image` random positions; returns the receptive
    fields (S, C, k*k) and every channel's contribution to every output there (S, out, C)."""
    fields, w, _ = _sample_fields(x, layer, per_image, seed)
    return fields, torch.einsum("sck,ock->soc", fields, w)


# -- channel selection by LASSO (He et al. 2017, Eq. 3) -----------------------------------------
# Two rules, `lasso_select(rule=...)`. "original" is the authors' code (github.com/yihui-he/
# channel-pruning, commit 4e1c4cc, lib/decompose.py `dictionary`); "normalized" is the rule
# archsearch used before issue 29, kept as an option.
LASSO_RULES = ("original", "normalized")
ORIGINAL_ALPHA = 1e-3  # lib/cfgs.py line 18, `alpha=1e-3`: the first upper bound of the alpha search


def lasso_problem(z: torch.Tensor, rows: int = 4096, seed: int = 0, y: torch.Tensor | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The LASSO's design and target: one row per (sample, output) pair, one column per input
    channel (its contribution Z_c there), and the target Y, by default the full sum of the
    contributions. At most `rows` rows, drawn with `seed` (the original draws up to 400
    positions and takes every output there, decompose.py lines 425-437; a random subset of the
    pairs keeps the fit's cost bounded on a CPU)."""
    s, o, c = z.shape
    X = z.reshape(s * o, c).double().numpy()
    Y = X.sum(1) if y is None else y.reshape(s * o).double().numpy()
    if len(X) > rows:
        pick = np.sort(np.random.default_rng(seed).choice(len(X), rows, replace=False))
        X, Y = X[pick], Y[pick]
    return X, Y


def _largest(beta: np.ndarray, n_keep: int) -> np.ndarray:
    """The keep mask of the n_keep largest |beta| (ties, zeros among them, in channel order)."""
    keep = np.zeros(len(beta), dtype=bool)
    keep[np.argsort(-np.abs(beta), kind="stable")[:n_keep]] = True
    return keep


def original_lasso(X: np.ndarray, Y: np.ndarray, n_keep: int, start: float = ORIGINAL_ALPHA, seed: int = 0,
                   max_fits: int = 100) -> tuple[np.ndarray, float]:
    """The authors' selection (lib/decompose.py, `dictionary`, lines 449-524 at commit 4e1c4cc):
    one scikit-learn `Lasso(alpha, warm_start=True, selection='random')` at its defaults (an
    intercept, raw columns, max_iter 1000, tol 1e-4), refitted as alpha moves; alpha doubled
    from `start` until fewer than n_keep coefficients are non-zero, then bisected on [0, that
    alpha] (arithmetic midpoints) until the count is in the band, and the non-zero ones kept.
    The original's band is [n_keep, 1.1 n_keep] (`rank_tol = .1`, lib/cfgs.py line 75), so it
    may keep up to 10% more channels than asked; here the widths are the predefined ones, so
    the band is n_keep exactly (the original with `rank_tol = 0`). `seed` fixes the random
    coordinate order the original leaves unseeded. The original loops until the band is hit;
    after `max_fits` fits (a count that cannot be hit: dead or duplicate channels) this keeps
    the n_keep largest |beta| of the fit with the fewest non-zeros above n_keep, or of the one
    with the most below. Returns the keep mask and the alpha (the original starts the next
    layer's search there, line 627 `cfgs.alpha = alpha`)."""
    # start-up cost: scikit-learn's linear models take seconds to import, and only regression needs them
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    solver = Lasso(alpha=start, warm_start=True, selection="random", random_state=seed)
    fits: list[tuple[np.ndarray, float]] = []

    def solve(alpha: float) -> int:
        solver.alpha = alpha
        with warnings.catch_warnings():  # the original runs at the defaults and lets it warn
            warnings.simplefilter("ignore", ConvergenceWarning)
            solver.fit(X, Y)
        fits.append((solver.coef_.copy(), alpha))
        return int((solver.coef_ != 0).sum())

    left, right = 0.0, start
    while solve(right) >= n_keep and len(fits) < max_fits:
        right *= 2
    while len(fits) < max_fits:
        alpha = (left + right) / 2
        nnz = solve(alpha)
        if nnz == n_keep:
            return fits[-1][0] != 0, alpha
        left, right = (alpha, right) if nnz > n_keep else (left, alpha)
    counts = [int((b != 0).sum()) for b, _ in fits]
    above = [i for i, n in enumerate(counts) if n >= n_keep]
    best = min(above, key=lambda i: (counts[i], -i)) if above else max(range(len(fits)), key=lambda i: (counts[i], i))
    return _largest(fits[best][0], n_keep), fits[best][1]


def normalized_lasso(X: np.ndarray, Y: np.ndarray, n_keep: int, max_iter: int = 40) -> tuple[np.ndarray, float]:
    """archsearch's rule before issue 29: columns scaled to unit root-mean-square so that alpha
    treats channels alike, no intercept, alpha bisected on a log scale below the smallest
    alpha at which every beta is 0, until at most n_keep betas are non-zero; the n_keep
    largest |beta| are kept. Returns the keep mask and the alpha (on the scaled columns)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    scale = np.sqrt((X ** 2).mean(0)) + 1e-12
    Xs = X / scale
    hi = float(np.abs(Xs.T @ Y).max() / len(Y))  # every beta is 0 at and above this alpha
    lo = hi * 1e-6
    best = None
    for _ in range(max_iter):
        alpha = float(np.sqrt(lo * hi))
        with warnings.catch_warnings():  # the search's small alphas converge slowly; the top-k is what counts
            warnings.simplefilter("ignore", ConvergenceWarning)
            beta = Lasso(alpha=alpha, fit_intercept=False, max_iter=2000, tol=1e-5).fit(Xs, Y).coef_
        nnz = int((beta != 0).sum())
        if nnz <= n_keep:
            best, hi = beta, alpha
            if nnz == n_keep:
                break
        else:
            lo = alpha
        if hi / lo < 1.0001:
            break
    if best is None or (best != 0).sum() == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            best = Lasso(alpha=lo, fit_intercept=False, max_iter=2000, tol=1e-5).fit(Xs, Y).coef_
        hi = lo
    return _largest(best, n_keep), hi


def lasso_select(z: torch.Tensor, n_keep: int, rows: int = 4096, seed: int = 0, y: torch.Tensor | None = None,
                 rule: str = "original", start: float = ORIGINAL_ALPHA) -> tuple[np.ndarray, float]:
    """He et al. (2017, Eq. 3): beta = argmin ||Y - sum_c beta_c Z_c||^2 + alpha ||beta||_1 over
    (sample, output) rows (`lasso_problem`), alpha searched until n_keep betas are non-zero,
    by `rule`: "original" (the authors' code, `original_lasso`, starting at `start`) or
    "normalized" (`normalized_lasso`; `start` unused). Returns the keep mask and the alpha."""
    X, Y = lasso_problem(z, rows, seed, y)
    if rule == "original":
        return original_lasso(X, Y, n_keep, start=start, seed=seed)
    if rule == "normalized":
        return normalized_lasso(X, Y, n_keep)
    raise ArchsearchError(f"lasso must be one of {', '.join(LASSO_RULES)}, got {rule!r}")


def outputs(fields: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The consumer's outputs (bias excluded) on sampled fields: (S, out)."""
    return torch.einsum("sck,ock->so", fields, weight_matrix(layer))


def least_squares_weights(fields: torch.Tensor, layer: nn.Module, keep: np.ndarray,
                          target: torch.Tensor | None = None) -> torch.Tensor:
    """He et al.'s reconstruction (Eq. 4 with beta fixed): the consumer's weights on the kept
    input channels that best reproduce `target` (default: the full consumer's outputs on these
    fields, bias excluded) on the sampled fields, by least squares. Returns (out, kept C, k*k)."""
    w = weight_matrix(layer)
    y = (outputs(fields, layer) if target is None else target).double()
    kept = fields[:, torch.from_numpy(keep)]  # S, C', k*k
    a = kept.reshape(kept.shape[0], -1).double()
    sol = torch.linalg.lstsq(a, y).solution  # (C' k*k, out)
    return sol.T.reshape(w.shape[0], int(keep.sum()), w.shape[2]).float()


def relative_error(fields: torch.Tensor, layer: nn.Module, keep: np.ndarray, new_w: torch.Tensor,
                   target: torch.Tensor | None = None) -> float:
    """||Y - Y'|| / ||Y|| on the samples, Y the full consumer's outputs (or `target`), Y' the
    pruned one's."""
    y = outputs(fields, layer) if target is None else target
    y2 = torch.einsum("sck,ock->so", fields[:, torch.from_numpy(keep)], new_w)
    return float((y - y2).norm() / y.norm().clamp_min(1e-12))


class _Reached(Exception):
    pass


@torch.no_grad()
def _input_of(model: nn.Module, name: str, images: torch.Tensor) -> torch.Tensor:
    """One module's input on `images` (eval mode), each forward stopped once it is reached."""
    got: list[torch.Tensor] = []

    def grab(m, inp):
        got.append(inp[0].detach().clone())
        raise _Reached

    handle = model.get_submodule(name).register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    try:
        for xb in images.split(128):
            try:
                model(xb)
            except _Reached:
                pass
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(got)


@torch.no_grad()
def prune_by_readers(model: nn.Module, base: ArchSpec, data: Dataset, layer_ratios: list[float], n_images: int,
                     choose) -> tuple[list[np.ndarray], list]:
    """The loop both methods share, group after group (module docstring): the group's reader's
    input on the sampled images in the partly pruned net (`x`) and in the original one
    (`x_orig`), and its n_keep (`allocation.kept_count`); `choose(i, layer, x, x_orig, n_keep)`
    returns (keep mask, the reader's new weights on the kept channels as (out, kept, k*k), a
    fact to record). The reader's weights are replaced in place and its weights on the removed
    channels zeroed, so that the groups after it see the pruned net. Returns the keep masks
    and the facts."""
    modules = dict(model.named_modules())
    images = sample_images(data, n_images)
    readers = consumers(base)
    wanted = {rd for rd, r in zip(readers, layer_ratios) if rd is not None and r > 0}
    originals = consumer_inputs(model, base, images, names=wanted)  # the unpruned net's, in one pass
    keep, facts = [], []
    for i, (g, reader, r) in enumerate(zip(get_family(base.family).groups(base), readers, layer_ratios)):
        if r == 0:  # kept whole (a skipped group, or one without a single reader: `readable`)
            keep.append(np.ones(base.widths[i], dtype=bool))
            facts.append(None)
            continue
        if reader is None:
            raise ArchsearchError(f"{base.name}: group {g.name} is read by several modules (or none); "
                                  "reconstruction-based selection needs exactly one consumer")
        layer = modules[reader]
        check_reader(base, g.name, reader, layer, base.widths[i])
        x = originals[reader] if not any(r > 0 for r in layer_ratios[:i]) else _input_of(model, reader, images)
        x_orig = originals[reader]
        k, new_w, fact = choose(i, layer, x, x_orig, kept_count(base.widths[i], r))
        view = layer.weight.reshape(layer.weight.shape[0], layer.weight.shape[1], -1)
        kept = torch.from_numpy(k)
        view[:, kept.nonzero().squeeze(1)] = new_w.to(view.dtype)
        view[:, (~kept).nonzero().squeeze(1)] = 0
        keep.append(k)
        facts.append(fact)
    return keep, facts
