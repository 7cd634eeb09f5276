"""Channel pruning by LASSO regression and least-squares reconstruction (He et al., ICCV
2017) as an architecture proposer.

Train the base net plainly; then, for each channel group at its predefined ratio, sample
the inputs of the layer that reads the group (`reconstruct.consumer_inputs`: 256 training
images, 4 random positions each; at most 4,096 (position, output channel) rows for the LASSO),
choose the channels by LASSO on the channel coefficients beta (scikit-learn's `Lasso`, the
penalty searched until the wanted number survive; the paper's Eq. 3), and replace the
reading layer's weights on the kept channels by the least-squares fit of the full layer's
outputs (its Eq. 4 with beta fixed). Groups go one after another: the inputs are the partly
pruned net's, the target the original net's outputs (the paper's Sec. 3.3). Its
architecture is predefined (the paper's VGG-16 schedule prunes each layer to a set width):
`--ratio`, `--stage-ratios`, `--skip`.

The LASSO is the authors' by default (`--option lasso=original`: github.com/yihui-he/
channel-pruning, commit 4e1c4cc, lib/decompose.py lines 425-524: scikit-learn's `Lasso` at its
defaults, an intercept and the raw contribution columns, alpha doubled from 1e-3 and then
bisected, each layer's search starting at the alpha the one before ended at, line 627);
`lasso=normalized` is the rule archsearch used before issue 29 (columns scaled to unit
root-mean-square, no intercept, a log-scale bisection), which keeps other channels on some
problems (`reconstruct.original_lasso`, `reconstruct.normalized_lasso`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..data import Dataset
from ..errors import ArchsearchError
from ..spec import ArchSpec
from .base import Pruned, Proposer, Settings, channel_proposal, register_proposer
from .options import PerLayerOptions, option
from .reconstruct import (LASSO_RULES, ORIGINAL_ALPHA, ReaderAllocation, full_contributions, lasso_select,
                          least_squares_weights, outputs, prune_by_readers, relative_error)

IMAGES, PER_IMAGE = 256, 4


@dataclass(frozen=True)
class RegressionOptions(PerLayerOptions):
    # the predefined-ratio options at their defaults (ratio 0.5 per group; no named variants), and
    # the LASSO's rule: recorded in the settings, so a proposal made by one rule is not reused for the other
    lasso: str = option("original", "The LASSO's rule: original (the authors' lib/decompose.py: an intercept, raw "
                                    "columns, their alpha search) or normalized (archsearch's before issue 29: "
                                    "columns at unit RMS, no intercept).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lasso not in LASSO_RULES:
            raise ArchsearchError(f"lasso must be one of {', '.join(LASSO_RULES)}, got {self.lasso!r}")


@register_proposer
class Regression(ReaderAllocation, Proposer):
    name = "regression"
    imagenet_scratch_b_cap = 2.0  # imagenet/regression-pruning/main_B.py: 180 epochs when the FLOP ratio is >= 2
    kind = "channels"
    about = "channel pruning: LASSO channel selection, least-squares reconstruction (He et al. 2017)"
    options = RegressionOptions
    data_aware = True

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings, data: Dataset) -> Pruned:
        rule = settings.options["lasso"]
        alpha = [ORIGINAL_ALPHA]  # the original carries each group's final alpha over to the next search

        def choose(i, layer, x, x_orig, n_keep):
            # the same sampled positions in both nets (same seed, same shapes); the target is the
            # original net's output there, as He et al. reconstruct it
            fields, z = full_contributions(x, layer, PER_IMAGE, seed=i)
            target = outputs(full_contributions(x_orig, layer, PER_IMAGE, seed=i)[0], layer)  # not yet replaced
            k, alpha[0] = lasso_select(z, n_keep, seed=i, y=target, rule=rule, start=alpha[0])
            new_w = least_squares_weights(fields, layer, k, target)
            return k, new_w, round(relative_error(fields, layer, k, new_w, target), 6)

        keep, errors = prune_by_readers(model, base, data, settings.layer_ratios, IMAGES, choose)
        return channel_proposal(model, base, keep, layer_ratios=settings.layer_ratios, images=IMAGES,
                                samples_per_image=PER_IMAGE, reconstruction_error=errors)
